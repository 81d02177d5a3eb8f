"""The figures every surface reads (collector/fleet/figures.py): the engine's split of TTFT, which TPOT is judged
when a pool coalesces its stream, goodput against an SLO, and why a figure is missing. Rows through the same SQL
as the store (figures.in_memory); every expected value computed by hand in the comments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.fleet.figures import Figures, Window, bucketed, in_memory, pool_figures, request_values
from collector.fleet.slo import Slo

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(seconds=100))
SLO = Slo(ttft_ms=250, tpot_ms=35, e2el_ms=2000)


def row(i: str, pool: str, start: float, status: str = "ok", **values: Any) -> dict[str, Any]:
    return {"id": i, "pool": pool, "revision": "r1", "hardware": "cpu", "source": "load", "run_id": "run",
            "status": status, "started_at": T0 + timedelta(seconds=start), "prompt_tokens": 10,
            "completion_tokens": 4, **values}  # fmt: skip


def coalesced(i: str, start: float, ttft: float, queue: float, engine_tpot: float, e2e: float) -> dict[str, Any]:
    """Pool c: 4 tokens in one read (client TPOT 0), the engine's timings with it; 50 ms prefill."""
    return row(i, "c", start, ttft_s=ttft, tpot_s=0.0, e2e_s=e2e, engine_queue_s=queue, engine_prefill_s=0.05,
               engine_tpot_s=engine_tpot, token_events=4, chunk_arrivals=1)  # fmt: skip


ROWS = [
    coalesced("c1", 1, 0.1, 0.01, 0.02, 0.2),
    coalesced("c2", 2, 0.2, 0.02, 0.04, 0.3),
    coalesced("c3", 3, 0.3, 0.03, 0.03, 3.0),
    row("c4", "c", 4, "error", e2e_s=0.5, completion_tokens=None),
    row("c5", "c", 5, "cancelled", ttft_s=0.01, completion_tokens=None),
    # pool s: every token on its own read; no engine timings
    row("s1", "s", 1, ttft_s=0.1, tpot_s=0.01, e2e_s=0.2, token_events=4, chunk_arrivals=4, gateway_s=0.001),
    row("s2", "s", 2, ttft_s=0.1, tpot_s=0.03, e2e_s=0.2, token_events=4, chunk_arrivals=4, gateway_s=0.003),
    # pool x: coalesced and no engine timings
    row("x1", "x", 1, ttft_s=0.1, tpot_s=0.0, e2e_s=0.1, token_events=4, chunk_arrivals=1),
    row("late", "s", 150, ttft_s=9.0, tpot_s=9.0, e2e_s=9.0),  # after the window
]


@pytest.fixture(scope="module")
def figures() -> dict[str, Figures]:
    return {f.key.pool: f for f in pool_figures(in_memory(ROWS), WINDOW, slo=SLO)}


def test_a_coalesced_pool_is_judged_on_the_engines_tpot(figures: dict[str, Figures]) -> None:
    c = figures["c"]
    assert (c.counts.requests, c.counts.ok, c.counts.errors, c.counts.cancelled) == (5, 3, 1, 1)
    assert c.tpot_basis == "engine"  # 3 of 3 multi-token ok rows arrived in one read
    # the client's TPOT is 0 for all three; the engine's 0.02 0.04 0.03: p50 0.03
    assert c.value("tpot_p50") == 0.0
    assert c.value("judged_tpot_p50") == pytest.approx(0.03)
    assert c.value("engine_tpot_p50") == pytest.approx(0.03)
    assert c.engine.coalesced == 3 and c.engine.multi_token == 3 and c.engine.rows == 3
    # a coalesced stream has no ITL to speak of: not in these rows, and the reason says which column
    assert c.value("itl_p50") is None
    assert c.reason("itl_p50") == "no ok request of pool c in the window has itl_p50_s"


def test_ttfts_split_into_queue_prefill_and_transport(figures: dict[str, Figures]) -> None:
    c = figures["c"]
    # queue 0.01 0.02 0.03 (p50 0.02); prefill 0.05 each; transport = TTFT - queue - prefill per row:
    # 0.1 - 0.06 = 0.04, 0.2 - 0.07 = 0.13, 0.3 - 0.08 = 0.22 (p50 0.13)
    assert c.value("queue_p50") == pytest.approx(0.02)
    assert c.value("prefill_p50") == pytest.approx(0.05)
    assert c.value("transport_p50") == pytest.approx(0.13)
    assert c.value("ttft_p50") == pytest.approx(0.2)


def test_goodput_counts_errors_as_misses_and_leaves_cancelled_out(figures: dict[str, Figures]) -> None:
    c = figures["c"]
    # SLO ttft <= 250 ms, tpot <= 35 ms, e2e <= 2 s on the engine's TPOT: c1 meets all; c2's 40 ms misses;
    # c3's 300 ms TTFT misses; c4 (error) misses; c5 (cancelled) is not counted: 1 of 4
    assert c.goodput is not None and (c.goodput.met, c.goodput.counted) == (1, 4)
    assert c.value("goodput") == pytest.approx(0.25)
    assert c.value("goodput_rps") == pytest.approx(1 / 100)  # one good request in the 100 s window
    s = figures["s"]
    # s on the client's TPOT: 10 ms and 30 ms both within 35 ms, TTFT 100 ms, e2e 200 ms: 2 of 2
    assert s.tpot_basis == "client" and s.value("goodput") == 1.0


def test_a_pool_streaming_token_by_token_keeps_the_clients_tpot(figures: dict[str, Figures]) -> None:
    s = figures["s"]
    assert s.counts.requests == 2  # the late row starts after the window
    assert s.value("judged_tpot_p50") == pytest.approx(0.02)  # of 0.01 and 0.03
    assert s.value("gateway_p50") == pytest.approx(0.002)
    assert s.value("engine_tpot_p50") is None
    assert s.reason("engine_tpot_p50") == (
        "pool s sent no per-request metrics in the window (vLLM --enable-per-request-metrics)"
    )


def test_a_coalesced_pool_without_engine_timings_has_no_tpot_to_judge(figures: dict[str, Figures]) -> None:
    x = figures["x"]
    assert x.tpot_basis is None and x.value("judged_tpot_p50") is None
    assert x.reason("judged_tpot_p50") == (
        "pool x coalesces its stream and sends no per-request metrics (vLLM --enable-per-request-metrics)"
    )
    assert x.value("usd_per_mtok") is None
    assert x.reason("usd_per_mtok") == f"no price recorded for pool x at or before {WINDOW.end.isoformat()}"  # type: ignore[union-attr]


def test_without_an_slo_goodput_is_missing_and_says_why() -> None:
    (s,) = pool_figures(in_memory(ROWS), Window(pools=("s",)))
    assert s.goodput is None and s.reason("goodput") == "no SLO given"
    assert s.counts.requests == 3  # no time bounds: the late row too


def test_an_unknown_figure_names_the_figures() -> None:
    (s,) = pool_figures(in_memory(ROWS[5:7]), WINDOW)
    with pytest.raises(KeyError, match="unknown figure 'ttft_p95'; the figures are requests, ok"):
        s.value("ttft_p95")


def test_request_values_are_the_ok_rows_values_sampled_with_a_seed() -> None:
    store = in_memory(ROWS)
    values = request_values(store, WINDOW, "engine_tpot", max_samples=10)
    assert {k.pool: v for k, v in values.items()} == {"c": [0.02, 0.04, 0.03]}
    sampled = request_values(store, WINDOW, "ttft", max_samples=2)
    c = next(k for k in sampled if k.pool == "c")
    assert len(sampled[c]) == 2 and set(sampled[c]) < {0.1, 0.2, 0.3}  # two of c's three TTFTs
    assert request_values(store, WINDOW, "ttft", max_samples=2) == sampled  # the same seed, the same sample
    with pytest.raises(ValueError, match="unknown request metric 'itl'; one of ttft, tpot, e2e, engine_tpot"):
        request_values(store, WINDOW, "itl", max_samples=2)


def test_buckets_are_bounded_windows() -> None:
    # 0-2 s: c1 (1 s) and s1 (1 s), x1 (1 s); 2-4 s: c2, c3, s2
    got = [
        (at.second, f.key.pool, f.counts.requests)
        for at, f in bucketed(in_memory(ROWS[:8]), Window(T0, T0 + timedelta(seconds=4)), 2)
    ]
    assert got == [(0, "c", 1), (0, "s", 1), (0, "x", 1), (2, "c", 2), (2, "s", 1)]
