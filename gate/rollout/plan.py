"""What a rollout is asked to do (RolloutPlan), which requests its judgement measures (MEASURED_ALIKE), and
when a verdict lets it promote (may_promote). Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from collector.loadgen.job import Dataset
from collector.vocabulary import GateVerdict, Source
from gate.judge import GateResult

# latency and cost are judged on the eval requests: the same items, the same concurrency, at the same time on
# both pools. Not the load (the split gives the candidate a smaller share) nor the canary (its A/A calibration
# sends the baseline twice the probes): a request's cost is its pool's busy time shared among the requests in
# flight, so a pool with more concurrent work looks cheaper per token (measured: bf16 +48 % "dearer" than ref
# with a fresh calibration in the window, -8 % without)
MEASURED_ALIKE = (Source.eval.value,)


@dataclass(frozen=True)
class RolloutPlan:
    baseline: str
    candidate: str
    weight: float = 0.2  # the candidate's share of the baseline's traffic during the rollout
    requests: int = 250  # the load burst, addressed to the baseline
    rate: float = 20.0
    max_concurrency: int = 16
    dataset: Dataset = "mixed"
    probes: tuple[str, ...] = ("arith-v1", "text-v1", "prefix-v1")
    samples: int = 8
    suite: str = "arith-v1"
    eval_limit: int | None = 300
    gate_config: Path | None = None
    promote_marginal: bool = False
    lease_s: float = 60.0  # the split lapses this long after the last renewal
    seed: int = 0
    rollout_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def __post_init__(self) -> None:
        if self.baseline == self.candidate:
            raise ValueError(f"--baseline and --candidate are both {self.baseline!r}; roll out another pool")
        if not 0.0 < self.weight < 1.0:
            raise ValueError(f"--weight: the candidate's share must be between 0 and 1 (exclusive), got {self.weight}")
        if self.requests < 1 or not self.rate > 0 or self.lease_s < 3:
            raise ValueError("--requests must be >= 1, --rate > 0 and the lease >= 3 s")


def may_promote(plan: RolloutPlan, gate: GateResult) -> bool:
    """Promote on pass; on marginal only when the plan says so; never on fail or no data."""
    return gate.verdict is GateVerdict.passed or (plan.promote_marginal and gate.verdict is GateVerdict.marginal)
