"""The demo's closing summary: one row per pool with what every part of inferwatch found (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from canary.runner import CanaryRun
from collector.fleet.report import PoolReport, ms_at
from evals.compare import PoolSummary
from gate.judge import GateResult


def _drift(run: CanaryRun, pool: str) -> str:
    if pool == run.reference:
        return "reference"
    report = next((r for r in run.reports if r.pool == pool), None)
    if report is None:
        return "-"
    drifting = report.drifting
    return "DRIFT: " + ", ".join(r.metric + ("*" if r.critical else "") for r in drifting) if drifting else "ok"


def _accuracy(summary: PoolSummary | None) -> str:
    if summary is None or summary.accuracy is None:
        return "-"
    delta = "" if summary.delta is None else f" ({summary.delta * 100:+.1f})"
    return f"{summary.accuracy * 100:.1f}%{delta} {summary.verdict.value}"


def _gate(gate: GateResult | None, pool: str, reference: str) -> str:
    if pool == reference:
        return "reference"
    return "-" if gate is None else f"{gate.verdict.value.upper()} (exit {gate.exit_code})"


def closing_rows(
    reports: Sequence[PoolReport], canary: CanaryRun, evals: Sequence[PoolSummary], gates: Sequence[GateResult],
) -> list[dict[str, object]]:  # fmt: skip
    """Per pool of the load burst: latency, cost and cache from the burst, the canary's drift verdict (* a
    critical metric), eval accuracy (its difference from the reference in points) and the gate's verdict."""
    by_eval = {s.pool: s for s in evals}
    by_gate = {g.candidate: g for g in gates}
    return [
        {
            "pool": r.stats.pool, "hardware": r.stats.hardware,
            "ttft p50 ms": ms_at(r.stats.ttft_s, 0), "ttft p99 ms": ms_at(r.stats.ttft_s, 2),
            "tpot p50 ms": ms_at(r.stats.tpot_s, 0), "errors": r.stats.errors,
            "$/1M tok": None if r.usd_per_m_total_tokens is None else round(r.usd_per_m_total_tokens, 4),
            "cache hit": r.server_cache_hit_ratio if r.server_cache_hit_ratio is not None else
            r.request_cache_hit_ratio,
            "drift": _drift(canary, r.stats.pool),
            "eval accuracy": _accuracy(by_eval.get(r.stats.pool)),
            "gate": _gate(by_gate.get(r.stats.pool), r.stats.pool, canary.reference),
        }
        for r in reports
    ]  # fmt: skip
