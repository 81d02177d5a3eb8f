"""The demo's closing summary from known results: each cell as computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime

from canary.analysis import DriftResult
from canary.runner import Calibration, CanaryRun, PoolDrift
from collector.fleet.report import PoolReport, PoolStats
from collector.vocabulary import DriftVerdict, EvalVerdict, GateVerdict
from evals.compare import PoolSummary
from gate.data import Span
from gate.judge import GateResult
from inferwatch.summary import closing_rows

T = datetime(2026, 11, 23, tzinfo=UTC)


def report(pool: str, ttft: tuple[float, float, float] | None, usd: float | None, hit: float | None) -> PoolReport:
    stats = PoolStats(pool, "r1", "cpu", 40, 2, 0, ttft, (0.01, 0.012, 0.02), None, 1000, 250, 200, 0.5, T, T)
    return PoolReport(stats, 60.0, 0.5, None, usd, None, 0.25, hit)


def drift(metric: str, verdict: str, critical: bool) -> DriftResult:
    return DriftResult(metric, 1.0, 0.0, 0.01, DriftVerdict(verdict), critical, "p1", "by hand")


def summary(pool: str, accuracy: float, delta: float | None, verdict: str) -> PoolSummary:
    return PoolSummary(pool, 100, 100, 0, round(accuracy * 100), accuracy, 0.0, 1.0, EvalVerdict(verdict), "",
                       delta=delta)  # fmt: skip


def test_one_row_per_pool_with_what_every_part_found() -> None:
    run = CanaryRun("c1", "ref", Calibration("ref", "r1", (), {}, ""), [
        PoolDrift("boost", [drift("unexpected_chars", "drift", True), drift("tf_mean_kl", "drift", False)]),
        PoolDrift("bf16", [drift("unexpected_chars", "ok", True)]),
    ], [], [])  # fmt: skip
    gate = GateResult("g1", "ref", "boost", Span(T, T), GateVerdict.fail, 61.0, "critical", [])
    rows = closing_rows(
        [report("ref", (0.1, 0.2, 0.3004), 0.123456, None), report("bf16", None, None, 0.5),
         report("boost", None, 1.0, 0.0)],
        run,
        [summary("ref", 0.997, None, "reference"), summary("boost", 0.824, -0.173, "regressed")],
        [gate],
    )  # fmt: skip
    assert rows[0] == {
        "pool": "ref", "hardware": "cpu", "ttft p50 ms": 100.0, "ttft p99 ms": 300.4, "tpot p50 ms": 10.0,
        "errors": 2, "$/1M tok": 0.1235, "cache hit": 0.25, "drift": "reference",
        "eval accuracy": "99.7% reference", "gate": "reference",
    }  # fmt: skip
    assert (rows[1]["ttft p50 ms"], rows[1]["$/1M tok"], rows[1]["cache hit"]) == (None, None, 0.5)
    assert (rows[1]["drift"], rows[1]["eval accuracy"], rows[1]["gate"]) == ("ok", "-", "-")
    assert rows[2]["drift"] == "DRIFT: unexpected_chars*, tf_mean_kl"
    assert rows[2]["eval accuracy"] == "82.4% (-17.3) regressed"
    assert rows[2]["gate"] == "FAIL (exit 1)"
    assert rows[2]["cache hit"] == 0.0  # the server's ratio, even when 0
