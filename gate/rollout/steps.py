"""What a rollout records: each step printed, kept for its result and appended to the `rollouts` table; the
result itself, and its steps as table rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.store.protocols import StoreLike
from gate.judge import GateResult
from gate.rollout.plan import RolloutPlan

Log = Callable[[str], None]
# the steps of a rollout in the order they run; `abort` may follow any of them
STEPS = ("start", "shift", "load", "canary", "eval", "judge", "promote")


@dataclass
class RolloutResult:
    rollout_id: str
    outcome: str  # promoted | aborted
    gate: GateResult | None
    steps: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        """As the gate: 0 promoted, 1 failed, 2 marginal or no data (aborted), 1 when a step failed."""
        return self.gate.exit_code if self.gate is not None else 1


class StepLog:
    """Each step: printed, kept for the result, and appended to the `rollouts` table (flushed at once).
    `underway` is the step after the last one recorded: the one that failed when an exception escapes."""

    def __init__(self, store: StoreLike, plan: RolloutPlan, log: Log) -> None:
        self.store, self.plan, self.log = store, plan, log
        self.steps: list[dict[str, Any]] = []
        self.underway = STEPS[0]

    def __call__(self, step: str, status: str, **detail: Any) -> None:
        row = {
            "rollout_id": self.plan.rollout_id, "step": step, "status": status, "baseline": self.plan.baseline,
            "candidate": self.plan.candidate, "weight": self.plan.weight,
            "detail_json": json.dumps(detail, default=str), "recorded_at": datetime.now(UTC),
        }  # fmt: skip
        self.store.append("rollouts", [row])  # stored before it is shown: a line printed is a step recorded
        self.steps.append({"step": step, "status": status, **detail})
        shown = ", ".join(f"{k} {v}" for k, v in detail.items())
        self.log(f"rollout {self.plan.rollout_id}: {step} {status}{': ' + shown if shown else ''}")
        if step in STEPS[:-1]:
            self.underway = STEPS[STEPS.index(step) + 1]


def step_rows(result: RolloutResult) -> list[dict[str, object]]:
    """For print_table."""
    return [
        {"step": s["step"], "status": s["status"],
         "detail": ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("step", "status"))}
        for s in result.steps
    ]  # fmt: skip
