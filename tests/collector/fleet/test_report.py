"""Per-pool figures from a real DuckDB store seeded with known rows; every expected value computed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.fleet.report import Window, fleet_report, pools_rows, table_rows
from collector.store.api import Store
from engine.specs import load_pools

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(i: str, pool: str, start: float, **values: Any) -> dict[str, Any]:
    return {"id": i, "pool": pool, "revision": "r1", "hardware": "cpu", "source": "load", "started_at": at(start),
            "status": "ok", **values}  # fmt: skip


def ok(i: str, pool: str, start: float, ttft: float, tpot: float, e2e: float, cached: int, **values: Any) -> Any:
    row = {"ttft_s": ttft, "tpot_s": tpot, "e2e_s": e2e, "prompt_tokens": 100, "cached_tokens": cached,
           "completion_tokens": 10, "cost_usd": 0.01}  # fmt: skip
    return request(i, pool, start, **{**row, **values})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.duckdb") as s:
        pool = {"hardware": "cpu", "accelerator": "cpu", "model": "m@a", "dtype": "float32", "spec_json": "{}"}
        s.append("pools", [
            # an older price for a, then the current one: the latest wins
            {**pool, "pool": "a", "revision": "r1", "replicas": 1, "price_per_hour": 99.0, "recorded_at": at(-500)},
            {**pool, "pool": "a", "revision": "r1", "replicas": 2, "price_per_hour": 3.6, "recorded_at": at(-10)},
            {**pool, "pool": "b", "revision": "r1", "replicas": 1, "price_per_hour": 0.36, "recorded_at": at(-10)},
        ])  # fmt: skip
        s.append("requests", [
            ok("a1", "a", 1, 0.1, 0.01, 1.0, 50), ok("a2", "a", 2, 0.4, 0.04, 4.0, 50),
            ok("a3", "a", 3, 0.2, 0.02, 2.0, 0), ok("a4", "a", 4, 0.3, 0.03, 3.0, 0),
            request("a5", "a", 5, status="error", error="pool a: HTTP 500", e2e_s=0.5),
            request("a6", "a", 6, status="cancelled", ttft_s=9.0, prompt_tokens=100, completion_tokens=3),
            ok("late", "a", 150, 5.0, 0.5, 50.0, 0),  # after the window
            ok("b1", "b", 10, 0.1, 0.01, 2.0, 0, run_id="x", completion_tokens=5),
            ok("b2", "b", 20, 0.1, 0.01, 5.0, 0, run_id="x", completion_tokens=5),
            ok("b3", "b", 30, 0.1, 0.01, 1.0, 0, run_id="y"),
        ])  # fmt: skip
        s.append("pool_samples", [
            {"pool": "a", "sampled_at": at(t), "metric": m, "value": v}
            for t, q, h in ((1, 1000, 100), (50, 3000, 600), (90, 5000, 1100), (200, 99999, 0))
            for m, v in (("prefix_cache_queries_total", q), ("prefix_cache_hits_total", h))
        ] + [
            {"pool": "b", "sampled_at": at(t), "metric": m, "value": v}
            for t, q, h in ((5, 100, 0), (15, 200, 50), (30, 500, 300), (60, 900, 300))
            for m, v in (("prefix_cache_queries_total", q), ("prefix_cache_hits_total", h))
        ] + [{"pool": "b", "sampled_at": at(70), "metric": "prefix_cache_queries_total", "value": 1e6}])  # fmt: skip
        yield s


def test_a_window_of_100_s_by_hand(store: Store) -> None:
    reports = {r.stats.pool: r for r in fleet_report(store, Window(T0, at(100)))}
    a = reports["a"]
    assert (a.stats.requests, a.stats.errors, a.stats.cancelled, a.ok) == (6, 1, 1, 4)
    assert a.error_rate == pytest.approx(1 / 6)
    # ok TTFTs 0.1 0.2 0.3 0.4: p50 halfway between 0.2 and 0.3; p90 at rank 2.7; p99 at rank 2.97
    assert a.stats.ttft_s == pytest.approx((0.25, 0.37, 0.397))
    assert a.stats.tpot_s == pytest.approx((0.025, 0.037, 0.0397))
    # 3.6 $/h x 2 replicas x 100 s = 0.2 $; 40 output tokens, 440 tokens, 4 ok requests
    assert a.window_cost_usd == pytest.approx(0.2)
    assert a.usd_per_m_output_tokens == pytest.approx(0.2 / 40 * 1e6)
    assert a.usd_per_m_total_tokens == pytest.approx(0.2 / 440 * 1e6)
    assert a.usd_per_request == pytest.approx(0.05)
    assert a.request_cache_hit_ratio == pytest.approx(100 / 400)
    # counters at the first and last scrape inside the window: (1100 - 100) / (5000 - 1000)
    assert a.server_cache_hit_ratio == pytest.approx(0.25)
    b = reports["b"]
    # b: first scrape inside (5 s) to the last whole one inside (60 s; 70 s has no hit counter): 300 / 800
    assert b.stats.requests == 3 and b.server_cache_hit_ratio == pytest.approx(0.375)
    assert b.window_cost_usd == pytest.approx(0.36 * 100 / 3600)


def test_a_run_is_costed_over_its_own_span(store: Store) -> None:
    (b,) = fleet_report(store, Window(run_ids=("x",)))
    # b1 starts at 10 s, b2 ends at 20 + 5 = 25 s: 15 s of a 0.36 $/h pool, 10 output tokens
    assert b.window_s == pytest.approx(15.0)
    assert b.window_cost_usd == pytest.approx(0.0015)
    assert b.usd_per_m_output_tokens == pytest.approx(150.0)
    assert b.stats.attributed_usd == pytest.approx(0.02)
    # the scrapes that bracket the run (5 s before, 30 s after): (300 - 0) / (500 - 100)
    assert b.server_cache_hit_ratio == pytest.approx(0.75)


def test_nothing_in_the_window_gives_no_rows(store: Store) -> None:
    assert fleet_report(store, Window(at(1000), at(2000))) == []
    assert fleet_report(store, Window(run_ids=("no-such-run",))) == []


def _errors_only(tmp_path: Path, price: float | None) -> Any:
    """Pool c: two errors at 1 s and 2 s, priced `price` $/h at 0 s (None: no price)."""
    with Store(tmp_path / "errors.duckdb") as s:
        if price is not None:
            s.append("pools", [{"pool": "c", "revision": "r1", "hardware": "cpu", "accelerator": "cpu", "model": "m@c",
                                "dtype": "float32", "spec_json": "{}", "replicas": 1, "price_per_hour": price,
                                "recorded_at": T0}])  # fmt: skip
        s.append("requests", [request("e1", "c", 1, status="error"), request("e2", "c", 2, status="error")])
        (r,) = fleet_report(s, Window(T0, at(60)))
        return r


def test_a_pool_without_a_price_has_no_cost_and_errors_only_have_no_latency(tmp_path: Path) -> None:
    r = _errors_only(tmp_path, None)
    assert r.window_cost_usd is None and r.usd_per_m_output_tokens is None
    assert r.figures is not None and r.figures.reason("usd_per_mtok") == (
        f"no price recorded for pool c at or before {at(60).isoformat()}"
    )
    row = table_rows([r])[0]
    assert row["ttft_p50_ms"] is None and row["errors"] == 2 and row["hit req"] is None


def test_zero_price_is_free_and_not_missing(tmp_path: Path) -> None:
    r = _errors_only(tmp_path, 0.0)
    assert r.window_cost_usd == 0.0 and r.usd_per_request is None  # no ok request: no unit cost


def test_pools_snapshot_of_the_default_spec() -> None:
    pools = load_pools(ROOT / "data" / "pools.yaml", ROOT / "data" / "prices.yaml")
    rows = {r["pool"]: r for r in pools_rows(pools.pools, T0)}
    assert set(rows) == {"ref", "bf16", "boost", "noisy"}
    assert rows["bf16"]["price_per_hour"] == 0.0893 and rows["bf16"]["replicas"] == 1
    assert (rows["bf16"]["revision"], rows["bf16"]["dtype"], rows["bf16"]["model"]) == (
        "r1-bf16",
        "bfloat16",
        "arith@bf16",
    )
