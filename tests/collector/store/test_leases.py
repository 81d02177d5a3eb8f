"""The lease in the store (collector/store/leases.py): the pure decision on hand-made claims, a takeover and a
release on a real store, and two Store objects racing for it round after round on a DuckLake on PostgreSQL
(and on an embedded file, where the two share one DuckDB)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.store.api import Store
from collector.store.leases import Claim, Lease, Standing, next_claim, standing
from tests.collector.store.backends import store_url

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def claim(holder: str, acquired_s: float, expires_s: float) -> Claim:
    return Claim(holder, at(acquired_s), at(expires_s))


# ---------------------------------------------------------------- the decision, pure


@pytest.mark.parametrize(
    ("claims", "now_s", "expected"),
    [
        ([], 10, Standing.lost),  # our claim is not there (it expired before we read)
        ([claim("a", 0, 30)], 10, Standing.holds),  # alone, claimed an earlier round
        ([claim("a", 10, 40)], 10, Standing.waits),  # alone, but claimed this round
        ([claim("a", 0, 30), claim("b", 5, 35)], 10, Standing.holds),
        ([claim("b", 0, 30), claim("a", 5, 35)], 10, Standing.lost),  # b claimed first
        ([claim("b", 0, 10), claim("a", 5, 40)], 10, Standing.holds),  # b's claim expired at 10: not live
        ([claim("b", 0, 30), claim("a", 0, 30)], 10, Standing.holds),  # same instant: the holder's name decides
        ([claim("a", 0, 30), claim("0", 0, 30)], 10, Standing.lost),  # "0" < "a"
        ([claim("a", 0, 10)], 10, Standing.lost),  # only our own claim, expired
    ],
)
def test_the_earliest_live_claim_leads_and_holds_once_it_is_older_than_the_round(
    claims: list[Claim], now_s: float, expected: Standing
) -> None:
    assert standing(claims, "a", at(now_s)) is expected


def test_a_renewal_keeps_acquired_at_while_the_claim_is_live_and_starts_afresh_after() -> None:
    assert next_claim(None, "a", at(10), TTL) == claim("a", 10, 40)
    assert next_claim(claim("a", 0, 30), "a", at(10), TTL) == claim("a", 0, 40)  # renewed
    assert next_claim(claim("a", 0, 30), "a", at(29.9), TTL) == claim("a", 0, 59.9)
    assert next_claim(claim("a", 0, 30), "a", at(30), TTL) == claim("a", 30, 60)  # it had expired: fresh


# ---------------------------------------------------------------- on a real store


def rows(store: Store) -> list[tuple[str, datetime, datetime]]:
    table = store.query("SELECT holder, acquired_at, expires_at FROM leases ORDER BY holder").to_pylist()
    return [(r["holder"], r["acquired_at"], r["expires_at"]) for r in table]


def test_the_other_takes_over_a_ttl_after_the_holder_stops_renewing(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        a, b = Lease(store, "alerts", "a", ttl_s=30), Lease(store, "alerts", "b", ttl_s=30)
        # a every 10 s from 0, b every 10 s from 5; a is killed after its round at 20 (its claim expires at 50)
        got = [("a", 0, a.acquire_or_renew(at(0)))]
        got += [("b", 5, b.acquire_or_renew(at(5))), ("a", 10, a.acquire_or_renew(at(10)))]
        got += [("b", 15, b.acquire_or_renew(at(15))), ("a", 20, a.acquire_or_renew(at(20)))]
        got += [("b", s, b.acquire_or_renew(at(s))) for s in (25, 35, 45, 55, 65)]
        assert got == [
            ("a", 0, False),  # claimed this round: waits
            ("b", 5, False), ("a", 10, True), ("b", 15, False), ("a", 20, True),
            ("b", 25, False), ("b", 35, False), ("b", 45, False),  # a's claim lives until 50
            ("b", 55, False),  # a's claim expired: b deletes it and claims, and waits one round
            ("b", 65, True),
        ]  # fmt: skip
        assert rows(store) == [("b", at(55), at(95))]
        # a comes back: its claim expired long ago, so it claims afresh, later than b, and loses
        assert a.acquire_or_renew(at(70)) is False and b.acquire_or_renew(at(75)) is True
        assert rows(store) == [("b", at(55), at(105))]  # the loser deleted its claim


def test_a_released_lease_passes_on_without_waiting_for_its_ttl(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        a, b = Lease(store, "alerts", "a", ttl_s=30), Lease(store, "alerts", "b", ttl_s=30)
        assert [a.acquire_or_renew(at(0)), a.acquire_or_renew(at(10)), b.acquire_or_renew(at(11))] == [
            False, True, False,
        ]  # fmt: skip
        a.release()  # a clean stop
        assert a.holds is False and rows(store) == []
        assert [b.acquire_or_renew(at(21)), b.acquire_or_renew(at(31))] == [False, True]
        other = Lease(store, "drift-watch", "a", ttl_s=30)  # another name is another lease
        assert [other.acquire_or_renew(at(31)), other.acquire_or_renew(at(41))] == [False, True]


@pytest.mark.parametrize("backend", ["ducklake-postgres", "embedded"])
def test_two_stores_racing_for_the_lease_never_both_hold_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres = request.getfixturevalue("postgres") if backend == "ducklake-postgres" else None
    url = store_url(backend, tmp_path, postgres)
    Store(url).close()  # created and migrated before the two open it
    stores = [Store(url), Store(url)]  # two connections, as two gateways have
    try:
        leases = [Lease(stores[0], "alerts", "a", ttl_s=30), Lease(stores[1], "alerts", "b", ttl_s=30)]
        start = threading.Barrier(2)

        def round_of(lease: Lease, now: datetime) -> bool:
            start.wait()  # both begin the round together
            return lease.acquire_or_renew(now)

        holders: list[list[str]] = []
        with ThreadPoolExecutor(2) as pool:
            for k in range(50):
                held = list(pool.map(round_of, leases, [at(10 * k)] * 2))
                holders.append([lease.holder for lease, holds in zip(leases, held, strict=True) if holds])
                if k % 5 == 4:
                    for lease in leases:
                        lease.release()  # a clean restart of both every fifth round: both claim afresh next
    finally:
        for store in stores:
            store.close()
    # after each restart both claims are fresh and nobody holds; from the next round on both read the same
    # leader, "a" (both claimed at the same instant: the name decides), who holds until it releases
    assert holders == [[] if k % 5 == 0 else ["a"] for k in range(50)]
