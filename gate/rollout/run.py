"""A rollout's run: check it may start, hold the split (lease.py) while the load, the canary and the evals run,
judge, then promote or abort; each step recorded (steps.py). The steps are in gate/rollout/__init__.py."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from canary.job import CanaryJob, run_canary_job
from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.loadgen.job import WorkloadSpec, build_workload, gateway_pools, run_through_gateway
from collector.loadgen.runner import LoadConfig
from collector.state import CollectorState
from collector.store.protocols import StoreLike
from engine.state import EngineState
from evals.job import EvalJob, run_eval_job
from gate.config import load_gate_config
from gate.data import Span, served_by_run
from gate.judge import GateResult, judge_and_record
from gate.rollout.lease import LeasedSplit
from gate.rollout.plan import MEASURED_ALIKE, RolloutPlan, may_promote
from gate.rollout.steps import Log, RolloutResult, StepLog


class RolloutError(RuntimeError):
    """A rollout that cannot start or whose step failed; traffic is back on the baseline when it is raised."""


def run_rollout(
    plan: RolloutPlan, engine: EngineState, collector: CollectorState, store: StoreLike, home: Path, prices: Path,
    log: Log = print, gateways: Sequence[str] = (),
) -> RolloutResult:  # fmt: skip
    """`gateways`: the URLs whose traffic the split moves and the burst goes through (default: the collector's)."""
    step = StepLog(store, plan, log)
    urls = tuple(gateways) or (collector.url,)
    clients = [SplitClient(url) for url in urls]
    config = load_gate_config(plan.gate_config)  # a bad config fails before anything moves (GateConfigError)
    pools = check_start(plan, clients)
    started = datetime.now(UTC)
    step("start", "ok", pools=f"{plan.baseline} -> {plan.candidate}", store=collector.store, gateways=len(urls))
    split = Split(plan.baseline, plan.candidate, plan.weight)
    try:
        with LeasedSplit(clients, split, plan.lease_s, log) as lease:
            step("shift", "ok", split=str(split), lease_s=plan.lease_s, gateways=",".join(urls))
            step("load", "ok", **_load(plan, urls, pools[plan.baseline], store))
            step("canary", "ok", **_canary(plan, engine, collector, home, prices, log))
            step("eval", "ok", **_eval(plan, engine, collector, log))
            alike = Span(started, datetime.now(UTC), value_sources=MEASURED_ALIKE)
            gate = judge_and_record(store, plan.baseline, plan.candidate, alike, config)
            step("judge", gate.verdict.value, gate=gate.gate_id, score=gate.score, exit_code=gate.exit_code,
                 reason=gate.reason)  # fmt: skip
            promote = may_promote(plan, gate)
            if promote:
                lease.keep(Split(plan.baseline, plan.candidate, 1.0))
    except BaseException as exc:  # KeyboardInterrupt included: the split is already cleared
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):  # the store may be what failed; the error below says what did
            step("abort", "error", failed_step=step.underway, why=why, traffic=f"all on {plan.baseline}")
        raise
    return _finish(plan, step, gate, promote)


def check_start(plan: RolloutPlan, clients: Sequence[SplitClient]) -> dict[str, str]:
    """The first gateway's pools (pool -> model id), once both pools of the plan are behind every gateway and no
    split holds the baseline on any."""
    found = [gateway_pools(client.url) for client in clients]
    for client, pools in zip(clients, found, strict=True):
        missing = [p for p in (plan.baseline, plan.candidate) if p not in pools]
        if missing:
            named = ", ".join(map(repr, missing))
            where = f" at {client.url}" if len(clients) > 1 else ""
            raise ValueError(f"--baseline/--candidate: no pool {named}{where}; pools are {', '.join(pools)}")
    for client in clients:
        held = [s for s in client.list() if s["baseline"] == plan.baseline]
        if held:
            raise RolloutError(
                f"pool {plan.baseline} already has a split ({held[0]['baseline']}={held[0]['candidate']}:"
                f"{held[0]['weight']}) at {client.url}: another rollout runs, or a split from `collector up --split`; "
                f"clear it with `curl -X DELETE -H 'Content-Type: application/json' -H \"Authorization: Bearer "
                f'$INFERWATCH_ADMIN_TOKEN" {client.url}/admin/splits/{plan.baseline}` when it is yours'
            )
    return found[0]


def _load(plan: RolloutPlan, urls: Sequence[str], baseline_model: str, store: StoreLike) -> dict[str, Any]:
    """The burst, addressed to the baseline only, spread over the gateways; how many requests each pool served."""
    items = build_workload(WorkloadSpec(dataset=plan.dataset, count=plan.requests, seed=plan.seed))
    config = LoadConfig(f"{urls[0]}/v1", (baseline_model,), num_requests=plan.requests, rate=plan.rate,
                        max_concurrency=plan.max_concurrency, seed=plan.seed, progress=True,
                        spread_over=tuple(f"{url}/v1" for url in urls[1:]))  # fmt: skip
    result, _ = run_through_gateway(config, items, store)
    served = served_by_run(store, config.run_id)
    return {"run": result.run_id, "served": served.by_pool, "errors": served.errors}


def _canary(
    plan: RolloutPlan, engine: EngineState, collector: CollectorState, home: Path, prices: Path, log: Log
) -> dict[str, Any]:
    """The candidate probed against the baseline; which pools drift."""
    job = CanaryJob(reference=plan.baseline, pools=(plan.candidate,), probes=plan.probes, samples=plan.samples,
                    seed=plan.seed)  # fmt: skip
    run, _ = run_canary_job(job, engine, collector, home, prices, log=log)
    drifting = [r.pool for r in run.reports if r.drifting]
    return {"run": run.run_id, "drifting": ",".join(drifting) or "none"}


def _eval(plan: RolloutPlan, engine: EngineState, collector: CollectorState, log: Log) -> dict[str, Any]:
    """The suite on both pools; the candidate's verdict."""
    job = EvalJob(suite=plan.suite, reference=plan.baseline, pools=(plan.baseline, plan.candidate),
                  limit=plan.eval_limit)  # fmt: skip
    checked = run_eval_job(job, collector, engine.ray_address, log=log)
    verdicts = {s.pool: s.verdict.value for s in checked.summaries}
    return {"run": checked.run_id, "verdict": verdicts.get(plan.candidate)}


def _finish(plan: RolloutPlan, step: StepLog, gate: GateResult, promoted: bool) -> RolloutResult:
    """The last step recorded, promote or abort, and the result."""
    if promoted:
        step("promote", "ok", traffic=f"every request for {plan.baseline} goes to {plan.candidate}",
             make_it_permanent=f"collector up --split {plan.baseline}={plan.candidate}:1")  # fmt: skip
        return RolloutResult(plan.rollout_id, "promoted", gate, step.steps)
    step("abort", "ok", traffic=f"all on {plan.baseline}", because=f"gate {gate.verdict.value}")
    return RolloutResult(plan.rollout_id, "aborted", gate, step.steps)
