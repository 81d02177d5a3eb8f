"""One holder among N gateways, by a lease in the store: table `leases` (name, holder, expires_at, acquired_at).

The store has no primary keys (DuckLake has none) and no compare-and-swap, so a lease is decided by claims.
Every contender, once a round (`Lease.acquire_or_renew(now)`; the alert job: every interval, ttl 3 intervals):

1. in one transaction deletes the name's expired claims and its own, and inserts its claim: expires_at
   now + ttl, acquired_at carried over from its previous claim while that one is live, else now;
2. after the commit reads the live claims (`standing`, pure): the earliest by (acquired_at, holder) leads.
   The leader holds the lease once its claim is older than this round; a claim made this round waits one round.
   Every other contender has lost: it deletes its claim, and claims afresh (later than the leader) next round.

A renewal keeps acquired_at and replaces the claim in one transaction, so every snapshot holds exactly one
live claim of a renewing holder and no newcomer ever reads an earlier one: while the holder renews, nobody
else leads. Why a fresh claim waits: two newcomers A < B on a free lease; B commits and reads before A
commits, sees itself alone; A then sees both and leads. Were a fresh claim enough, both would hold until B's
next round. Waiting, both claims are committed when either can hold, so both read the same leader.

The race that remains: two gateways both believe they hold the lease, for at most one round, when
- a holder stalls past its ttl (a paused process, a store outage longer than ttl): the others delete its claim
  as expired and one of them takes over while the stalled one still believes, until its next round (which
  fails, or reads the new leader's claim and loses);
- a newcomer's round stalls longer than a round interval between taking `now` and its commit;
- clocks disagree: expires_at is written by the claimant's clock and judged by the readers'; skew beyond
  ttl minus the interval makes a live claim look expired (run NTP on every gateway).
What the lease guards must tolerate that: the alert outbox is read afresh each delivery round, and a webhook
delivered twice carries the same webhook-id, which receivers deduplicate.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import pyarrow as pa


class Standing(enum.Enum):
    holds = "holds"  # the earliest live claim, made before this round
    waits = "waits"  # the earliest, but claimed this round: it holds from the next round on
    lost = "lost"  # another live claim is earlier (or this contender's is not among the live ones)


@dataclass(frozen=True)
class Claim:
    holder: str
    acquired_at: datetime
    expires_at: datetime


def standing(claims: Iterable[Claim], holder: str, now: datetime) -> Standing:
    """Where `holder` stands among the claims it read after committing its own."""
    live = [c for c in claims if c.expires_at > now]
    if not any(c.holder == holder for c in live):
        return Standing.lost
    first = min(live, key=lambda c: (c.acquired_at, c.holder))
    if first.holder != holder:
        return Standing.lost
    return Standing.holds if first.acquired_at < now else Standing.waits


def next_claim(previous: Claim | None, holder: str, now: datetime, ttl: timedelta) -> Claim:
    """This round's claim: the previous one's acquired_at while it is live (a renewal), else now (fresh)."""
    renewing = previous is not None and now < previous.expires_at
    return Claim(holder, previous.acquired_at if previous is not None and renewing else now, now + ttl)


class LeaseStore(Protocol):
    """What a lease needs of the store (collector/store/api.py Store)."""

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table: ...

    def execute_in_transaction(self, what: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> None: ...


class Lease:
    """`name` held by at most one `holder` (unique per gateway: its journal's writer id) at a time.
    StoreError passes on from a round that could not reach the store; `holds` is then False."""

    def __init__(self, store: LeaseStore, name: str, holder: str, ttl_s: float) -> None:
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self.store, self.name, self.holder, self.ttl = store, name, holder, timedelta(seconds=ttl_s)
        self.holds = False
        self._claim: Claim | None = None  # this holder's claim in the store after the last round

    def acquire_or_renew(self, now: datetime) -> bool:
        """One round (see the module docstring); whether this holder holds the lease until the next one."""
        claim = next_claim(self._claim, self.holder, now, self.ttl)
        self.holds, self._claim = False, None  # unknown until the round is through
        self.store.execute_in_transaction(f"claim the lease {self.name!r}", [
            ("DELETE FROM leases WHERE name = ? AND (expires_at <= ? OR holder = ?)", [self.name, now, self.holder]),
            ("INSERT INTO leases (name, holder, expires_at, acquired_at) VALUES (?, ?, ?, ?)",
             [self.name, self.holder, claim.expires_at, claim.acquired_at]),
        ])  # fmt: skip
        found = standing(self.claims(now), self.holder, now)
        if found is Standing.lost:
            self._delete_own(f"give up the claim on the lease {self.name!r}")
        else:
            self._claim = claim
        self.holds = found is Standing.holds
        return self.holds

    def claims(self, now: datetime) -> list[Claim]:
        """The live claims on this lease, as the store holds them now."""
        rows = self.store.query(
            "SELECT holder, acquired_at, expires_at FROM leases WHERE name = ? AND expires_at > ?", [self.name, now]
        ).to_pylist()
        return [Claim(r["holder"], r["acquired_at"], r["expires_at"]) for r in rows]

    def release(self) -> None:
        """Give the lease up now (at a clean stop), so that another contender leads from its next round."""
        self.holds, self._claim = False, None
        self._delete_own(f"release the lease {self.name!r}")

    def _delete_own(self, what: str) -> None:
        self.store.execute_in_transaction(what, [("DELETE FROM leases WHERE name = ? AND holder = ?",
                                                   [self.name, self.holder])])  # fmt: skip
