"""`inferwatch canary run` as a library call: the running engine's pools, through the running collector's
gateway, results into its store. The CLI and the demo both call `run_canary_job`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from canary.distributed import ray_collector
from canary.probes import load_probe_sets
from canary.runner import Calibration, CanaryConfig, CanaryRun, Log, collect_in_process, run_canary
from collector.client.targets import PoolTarget
from collector.loadgen.job import served_models
from collector.state import CollectorState
from collector.store.door import open_store
from engine.specs import load_pools
from engine.state import EngineState

DEFAULT_PROBES = ("arith-v1", "text-v1", "prefix-v1")


@dataclass(frozen=True)
class CanaryJob:
    reference: str
    pools: tuple[str, ...] = ()  # empty: every other pool of the engine
    probes: tuple[str, ...] = DEFAULT_PROBES
    samples: int = 16
    concurrencies: tuple[int, ...] = (1, 4, 16)
    alpha: float = 0.05
    seed: int = 0
    recalibrate: bool = False
    in_process: bool = False  # collect in this process instead of Ray tasks


def run_canary_job(
    job: CanaryJob, engine: EngineState, collector: CollectorState, home: Path, prices: Path, log: Log = print
) -> tuple[CanaryRun, Path]:
    """Runs the canary and stores its rows; returns the run and where its calibration is kept.
    ValueError (ProbeError included) for a job that cannot run as given: the message names the option."""
    models = {p.name: p.model_id for p in engine.pools}
    pools = job.pools or tuple(name for name in models if name != job.reference)
    unknown = [p for p in (job.reference, *pools) if p not in models]
    if unknown:
        raise ValueError(f"--reference/--pools: no pool {', '.join(map(repr, unknown))}; pools are {', '.join(models)}")
    served_models(collector.url, (job.reference, *pools))  # the gateway routes to every one of them
    config = CanaryConfig(
        reference=job.reference, pools=pools, samples=job.samples, alpha=job.alpha, seed=job.seed,
        concurrencies=job.concurrencies,
    )  # fmt: skip
    probe_sets = load_probe_sets(job.probes)
    run_id = uuid.uuid4().hex[:16]
    targets = {p: PoolTarget(f"{collector.url}/v1", models[p], p, run_id) for p in (job.reference, *pools)}
    revision = load_pools(Path(engine.spec), prices).get(job.reference).revision
    path = Calibration.path(home, job.reference, revision, [s.name for s in probe_sets])
    run = run_canary(
        targets, probe_sets, config, reference_revision=revision, calibration_path=path,
        collect_all=collect_in_process if job.in_process else ray_collector(engine.ray_address),
        recalibrate=job.recalibrate, log=log,
    )  # fmt: skip
    with open_store(collector.store) as store:
        store.append("probes", run.probe_rows)
        store.append("drift", run.drift_rows)
    return run, path


def verdict_rows(run: CanaryRun) -> list[dict[str, object]]:
    """One line per pool: the verdict and, when it drifts, what shows it."""
    rows: list[dict[str, object]] = []
    for report in run.reports:
        drifting = report.drifting
        worst = next((r for r in drifting if r.critical), drifting[0] if drifting else None)
        rows.append({
            "pool": report.pool, "drift": "DRIFT" if drifting else "ok",
            "metrics": ", ".join(r.metric + ("*" if r.critical else "") for r in drifting) or "-",
            "evidence": f"{worst.probe}: {worst.evidence}" if worst else "-",
        })  # fmt: skip
    return rows
