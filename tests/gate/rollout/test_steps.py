"""Each rollout step is printed, kept and appended to the `rollouts` table of a real DuckDB store; the step
under way is the one after the last recorded."""

from __future__ import annotations

import json
from pathlib import Path

from collector.store.api import Store
from gate.rollout.plan import RolloutPlan
from gate.rollout.steps import RolloutResult, StepLog, step_rows


def test_steps_are_logged_stored_and_tabled(tmp_path: Path) -> None:
    plan = RolloutPlan("ref", "bf16", weight=0.25, rollout_id="r" * 16)
    printed: list[str] = []
    with Store(tmp_path / "s.duckdb") as store:
        step = StepLog(store, plan, printed.append)
        assert step.underway == "start"
        step("start", "ok", pools="ref -> bf16")
        assert step.underway == "shift"
        step("shift", "ok", split="ref=bf16:0.25", lease_s=60.0)
        step("load", "ok", served={"ref": 3, "bf16": 1}, errors=0)
        assert step.underway == "canary"
        step("abort", "error", failed_step=step.underway, why="ValueError: no pool")
        assert step.underway == "canary"  # an abort is not a step of the run's order
        rows = store.query(
            "SELECT rollout_id, step, status, baseline, candidate, weight, detail_json FROM rollouts "
            "ORDER BY recorded_at"
        ).to_pylist()
    assert [(r["step"], r["status"]) for r in rows] == [
        ("start", "ok"), ("shift", "ok"), ("load", "ok"), ("abort", "error")
    ]  # fmt: skip
    plans = {(r["rollout_id"], r["baseline"], r["candidate"], r["weight"]) for r in rows}
    assert plans == {("r" * 16, "ref", "bf16", 0.25)}
    assert json.loads(rows[2]["detail_json"]) == {"served": {"ref": 3, "bf16": 1}, "errors": 0}
    assert json.loads(rows[3]["detail_json"]) == {"failed_step": "canary", "why": "ValueError: no pool"}
    assert printed[0] == f"rollout {'r' * 16}: start ok: pools ref -> bf16"
    assert printed[1] == f"rollout {'r' * 16}: shift ok: split ref=bf16:0.25, lease_s 60.0"
    result = RolloutResult(plan.rollout_id, "aborted", None, step.steps)
    assert result.exit_code == 1  # a failed step: no verdict
    assert step_rows(result)[2] == {"step": "load", "status": "ok", "detail": "served {'ref': 3, 'bf16': 1}, errors 0"}
    assert step_rows(result)[0] == {"step": "start", "status": "ok", "detail": "pools ref -> bf16"}
