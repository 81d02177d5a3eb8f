"""`inferwatch rollout`: a canary rollout through the collector's gateway, step by step.

    start   -> check both pools are behind the gateway and no other split holds the baseline
    shift   -> send `weight` of the baseline's traffic to the candidate (a split with a lease, renewed while
               the rollout runs: if this process dies, the split lapses and traffic is on the baseline again)
    load    -> a load burst addressed to the baseline, which the split divides
    canary  -> the candidate probed against the baseline (canary and eval requests are never split)
    eval    -> an eval suite on both pools, item by item
    judge   -> the gate over the rollout's span (canary/judge/); latency and cost from the eval requests,
               which both pools got alike (MEASURED_ALIKE)
    promote -> pass: every request for the baseline goes to the candidate (a split of weight 1, no lease)
    abort   -> fail, marginal (unless promote_marginal), any error or an interrupt: the split is cleared

Every step is logged and stored in the `rollouts` table with what it did or why it failed.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from canary.job import CanaryJob, run_canary_job
from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.loadgen.job import Dataset, WorkloadSpec, build_workload, gateway_pools, run_through_gateway
from collector.loadgen.runner import LoadConfig
from collector.state import CollectorState
from collector.store.protocols import StoreLike
from engine.lifecycle import EngineState
from evals.job import EvalJob, run_eval_job
from gate.config import load_gate_config
from gate.data import Span
from gate.judge import GateResult, GateVerdict, judge_and_record

Log = Callable[[str], None]
# latency and cost are judged on the eval requests: the same items, the same concurrency, at the same time on
# both pools. Not the load (the split gives the candidate a smaller share) nor the canary (its A/A calibration
# sends the baseline twice the probes): a request's cost is its pool's busy time shared among the requests in
# flight, so a pool with more concurrent work looks cheaper per token (measured: bf16 +48 % "dearer" than ref
# with a fresh calibration in the window, -8 % without)
MEASURED_ALIKE = ("eval",)


class RolloutError(RuntimeError):
    """A rollout that cannot start or whose step failed; traffic is back on the baseline when it is raised."""


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
    """Each step: printed, kept for the result, and appended to the `rollouts` table (flushed at once)."""

    def __init__(self, store: StoreLike, plan: RolloutPlan, log: Log) -> None:
        self.store, self.plan, self.log = store, plan, log
        self.steps: list[dict[str, Any]] = []

    def __call__(self, step: str, status: str, **detail: Any) -> None:
        row = {
            "rollout_id": self.plan.rollout_id, "step": step, "status": status, "baseline": self.plan.baseline,
            "candidate": self.plan.candidate, "weight": self.plan.weight,
            "detail_json": json.dumps(detail, default=str), "recorded_at": datetime.now(UTC),
        }  # fmt: skip
        self.steps.append({"step": step, "status": status, **detail})
        shown = ", ".join(f"{k} {v}" for k, v in detail.items())
        self.log(f"rollout {self.plan.rollout_id}: {step} {status}{': ' + shown if shown else ''}")
        self.store.append("rollouts", [row])
        self.store.flush()


class LeasedSplit:
    """The split in force while the block runs, renewed every lease/3, and cleared when the block ends however
    it ends, unless `keep` replaced it first. Were the process killed, the lease runs out and the collector
    drops the split by itself: traffic is on the baseline again."""

    def __init__(self, client: SplitClient, split: Split, lease_s: float, log: Log) -> None:
        self.client, self.split, self.lease_s, self.log = client, split, lease_s, log
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="rollout-lease", daemon=True)
        self._kept = False

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.client.set(self.split, ttl_s=self.lease_s)
            except RuntimeError as exc:  # the next renewal may get through; the lease covers two misses
                self.log(f"could not renew the split {self.split}: {exc}")

    def __enter__(self) -> LeasedSplit:
        self.client.set(self.split, ttl_s=self.lease_s)
        self._renewer.start()
        return self

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join()

    def keep(self, final: Split) -> None:
        """Replace the leased split with `final`, without a lease: it stays after the block."""
        self._stop_renewing()
        self.client.set(final)
        self._kept = True

    def __exit__(self, *exc: object) -> None:
        self._stop_renewing()
        if not self._kept:
            self.client.clear(self.split.baseline)


def decide(plan: RolloutPlan, gate: GateResult) -> bool:
    """Promote on pass; on marginal (or no data) only when the plan says so; never on fail."""
    return gate.verdict is GateVerdict.passed or (plan.promote_marginal and gate.verdict is GateVerdict.marginal)


def run_rollout(
    plan: RolloutPlan, engine: EngineState, collector: CollectorState, store: StoreLike, home: Path, prices: Path,
    log: Log = print,
) -> RolloutResult:  # fmt: skip
    step = StepLog(store, plan, log)
    client = SplitClient(collector.url)
    config = load_gate_config(plan.gate_config)  # a bad config fails before anything moves (GateConfigError)
    pools = gateway_pools(collector.url)
    missing = [p for p in (plan.baseline, plan.candidate) if p not in pools]
    if missing:
        named = ", ".join(map(repr, missing))
        raise ValueError(f"--baseline/--candidate: no pool {named}; pools are {', '.join(pools)}")
    held = [s for s in client.list() if s["baseline"] == plan.baseline]
    if held:
        raise RolloutError(
            f"pool {plan.baseline} already has a split ({held[0]['baseline']}={held[0]['candidate']}:"
            f"{held[0]['weight']}): another rollout runs, or a split from `collector up --split`; clear it with "
            f"`curl -X DELETE {collector.url}/admin/splits/{plan.baseline}` when it is yours"
        )
    started = datetime.now(UTC)
    step("start", "ok", pools=f"{plan.baseline} -> {plan.candidate}", store=collector.store)
    split = Split(plan.baseline, plan.candidate, plan.weight)
    current = "shift"
    try:
        with LeasedSplit(client, split, plan.lease_s, log) as lease:
            step("shift", "ok", split=str(split), lease_s=plan.lease_s)
            current = "load"
            served = _load(plan, collector, pools[plan.baseline], store)
            step("load", "ok", **served)
            current = "canary"
            job = CanaryJob(reference=plan.baseline, pools=(plan.candidate,), probes=plan.probes,
                            samples=plan.samples, seed=plan.seed)  # fmt: skip
            run, _ = run_canary_job(job, engine, collector, home, prices, log=log)
            drifting = [r.pool for r in run.reports if r.drifting]
            step("canary", "ok", run=run.run_id, drifting=",".join(drifting) or "none")
            current = "eval"
            evals = EvalJob(suite=plan.suite, reference=plan.baseline, pools=(plan.baseline, plan.candidate),
                            limit=plan.eval_limit)  # fmt: skip
            checked = run_eval_job(evals, collector.url, engine.ray_address, log=log)
            verdicts = {s.pool: s.verdict.value for s in checked.summaries}
            step("eval", "ok", run=checked.run_id, verdict=verdicts.get(plan.candidate))
            current = "judge"
            alike = Span(started, datetime.now(UTC), value_sources=MEASURED_ALIKE)
            gate = judge_and_record(store, plan.baseline, plan.candidate, alike, config)
            step("judge", gate.verdict.value, gate=gate.gate_id, score=gate.score, exit_code=gate.exit_code,
                 reason=gate.reason)  # fmt: skip
            current = "promote"
            promote = decide(plan, gate)
            if promote:
                lease.keep(Split(plan.baseline, plan.candidate, 1.0))
    except BaseException as exc:  # KeyboardInterrupt included: the split is already cleared
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):  # the store may be what failed; the error below says what did
            step("abort", "error", failed_step=current, why=why, traffic=f"all on {plan.baseline}")
        raise
    if promote:
        step("promote", "ok", traffic=f"every request for {plan.baseline} goes to {plan.candidate}",
             make_it_permanent=f"collector up --split {plan.baseline}={plan.candidate}:1")  # fmt: skip
        return RolloutResult(plan.rollout_id, "promoted", gate, step.steps)
    step("abort", "ok", traffic=f"all on {plan.baseline}", because=f"gate {gate.verdict.value}")
    return RolloutResult(plan.rollout_id, "aborted", gate, step.steps)


def _load(plan: RolloutPlan, collector: CollectorState, baseline_model: str, store: StoreLike) -> dict[str, Any]:
    """The burst, addressed to the baseline only; how many requests each pool served."""
    items = build_workload(WorkloadSpec(dataset=plan.dataset, count=plan.requests, seed=plan.seed))
    config = LoadConfig(f"{collector.url}/v1", (baseline_model,), num_requests=plan.requests, rate=plan.rate,
                        max_concurrency=plan.max_concurrency, seed=plan.seed, progress=True)  # fmt: skip
    result, _ = run_through_gateway(config, items, store)
    served = store.query(
        "SELECT pool, count(*) AS n, count(*) FILTER (WHERE status <> 'ok') AS errors FROM requests "
        "WHERE run_id = ? GROUP BY pool ORDER BY pool",
        [config.run_id],
    ).to_pylist()
    return {"run": result.run_id, "served": {r["pool"]: r["n"] for r in served},
            "errors": sum(r["errors"] for r in served)}  # fmt: skip


def step_rows(result: RolloutResult) -> list[dict[str, object]]:
    """For print_table."""
    return [
        {"step": s["step"], "status": s["status"],
         "detail": ", ".join(f"{k} {v}" for k, v in s.items() if k not in ("step", "status"))}
        for s in result.steps
    ]  # fmt: skip
