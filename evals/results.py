"""Eval results as store rows (`eval_items`, `eval_runs`) and back: what the runner, the lm-eval import and
`inferwatch eval report` share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from collector.store.protocols import Queryable
from evals.compare import CompareConfig, Outcomes, PoolSummary, compare_run
from evals.runner import ItemResult


def item_rows(run_id: str, pool: str, suite: str, results: Sequence[ItemResult], now: datetime) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "pool": pool, "suite": suite, "item_id": r.item_id, "correct": r.correct,
         "score": r.score, "output": r.output, "error": r.error, "attempts": r.attempts, "recorded_at": now}
        for r in results
    ]  # fmt: skip


def run_rows(
    run_id: str, suite: str, reference: str, origin: str, summaries: Sequence[PoolSummary],
    retries: Mapping[str, int], now: datetime,
) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for s in summaries:
        paired = s.paired
        rows.append({
            "run_id": run_id, "suite": suite, "pool": s.pool, "reference_pool": reference, "origin": origin,
            "items": s.items, "scored": s.scored, "errors": s.errors, "correct": s.correct, "accuracy": s.accuracy,
            "ci_low": s.ci_low, "ci_high": s.ci_high, "paired": paired.n if paired else None,
            "reference_only": paired.b if paired else None, "pool_only": paired.c if paired else None,
            "delta": s.delta, "delta_low": s.delta_low, "delta_high": s.delta_high, "p_value": s.p_value,
            "verdict": s.verdict.value, "reason": s.reason, "items_needed": s.items_needed,
            "retries": retries.get(s.pool), "recorded_at": now,
        })  # fmt: skip
    return rows


def outcomes_from_store(store: Queryable, run_id: str) -> dict[str, dict[str, dict[str, bool | None]]]:
    """suite -> pool -> item id -> correct, for every item of the run (the latest row of an item wins)."""
    rows = store.query(
        "SELECT suite, pool, item_id, arg_max(correct, recorded_at) AS correct FROM eval_items "
        "WHERE run_id = ? GROUP BY suite, pool, item_id ORDER BY suite, pool, item_id",
        [run_id],
    ).to_pylist()
    outcomes: dict[str, dict[str, dict[str, bool | None]]] = {}
    for row in rows:
        outcomes.setdefault(row["suite"], {}).setdefault(row["pool"], {})[row["item_id"]] = row["correct"]
    return outcomes


def compare_stored(
    store: Queryable, run_id: str, reference: str, config: CompareConfig
) -> dict[str, list[PoolSummary]]:
    """suite -> summaries, recomputed from the stored items of a run."""
    by_suite = outcomes_from_store(store, run_id)
    if not by_suite:
        raise ValueError(f"--run: no eval items with run id {run_id!r} in the store")
    return {suite: compare_run(pools, reference, config) for suite, pools in by_suite.items()}


def table_rows(summaries: Sequence[PoolSummary]) -> list[dict[str, object]]:
    """For print_table: percentages and the verdict with its reason."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def pts(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:+.1f}"

    return [
        {"pool": s.pool, "items": s.items, "errors": s.errors, "accuracy": pct(s.accuracy),
         "CI": f"{pct(s.ci_low)}–{pct(s.ci_high)}", "Δ vs ref (pts)": pts(s.delta),
         "Δ interval": "-" if s.delta_low is None else f"[{pts(s.delta_low)}, {pts(s.delta_high)}]",
         "p": "-" if s.p_value is None else f"{s.p_value:.2g}", "verdict": s.verdict.value}
        for s in summaries
    ]  # fmt: skip


def reason_lines(summaries: Sequence[PoolSummary]) -> list[str]:
    """Why each pool got its verdict, one line each (too long for a table cell)."""
    return [f"  {s.pool}: {s.verdict.value} — {s.reason}" for s in summaries]


def outcomes_of(results: Sequence[ItemResult]) -> Outcomes:
    return {r.item_id: r.correct for r in results}
