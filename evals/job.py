"""`inferwatch eval run` as a library call: a suite to pools through the running collector's gateway, per-item
rows into its store as each chunk finishes, then the per-pool summary against the reference (also stored, in
`eval_runs`, which /metrics and the dashboards read)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from collector.client.targets import PoolTarget
from collector.loadgen.job import gateway_pools
from collector.state import CollectorState
from collector.store.door import open_store
from collector.store.protocols import StoreLike
from engine.ray_tasks import RayTasks, ThreadTasks, ray_session
from evals.compare import CompareConfig, PoolSummary, compare_run
from evals.fanout import Tasks, fan_out
from evals.lm_eval_import import read_samples, sample_files
from evals.results import compare_stored, item_rows, outcomes_of, run_rows
from evals.runner import AskConfig, ChunkResult, ItemResult, run_chunk
from evals.suites import Suite, load_suite

Log = Callable[[str], None]


@dataclass(frozen=True)
class EvalJob:
    suite: str
    reference: str
    pools: tuple[str, ...] = ()  # empty: every pool behind the gateway (the reference included)
    limit: int | None = None  # only the first N items of the suite
    ask: AskConfig = field(default_factory=AskConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    chunk_size: int = 50
    in_process: bool = False  # threads in this process instead of Ray tasks
    progress: bool = True


@dataclass
class EvalRun:
    run_id: str
    suite: str
    reference: str
    summaries: list[PoolSummary]
    results: dict[str, list[ItemResult]] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)


def _targets(job: EvalJob, gateway_url: str, run_id: str) -> dict[str, PoolTarget]:
    models = gateway_pools(gateway_url)
    pools = job.pools or tuple(models)
    if job.reference not in pools:
        pools = (job.reference, *pools)
    unknown = [p for p in pools if p not in models]
    if unknown:
        raise ValueError(f"--reference/--pools: no pool {', '.join(map(repr, unknown))}; pools are {', '.join(models)}")
    return {p: PoolTarget(f"{gateway_url}/v1", models[p], p, run_id) for p in pools}


def _items(suite: Suite, limit: int | None) -> Suite:
    if limit is None:
        return suite
    if limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    return Suite(name=suite.name, items=suite.items[:limit])


def run_eval_job(
    job: EvalJob, collector: CollectorState, engine_ray_address: str | None = None, log: Log = print
) -> EvalRun:
    """ValueError (SuiteError included) for a job that cannot run as given; the message names the option."""
    suite = _items(load_suite(job.suite), job.limit)
    run_id = uuid.uuid4().hex[:16]
    targets = _targets(job, collector.url, run_id)
    log(f"eval {run_id}: suite {suite.name} ({len(suite.items)} items) on {', '.join(targets)}, "
        f"reference {job.reference}, {job.ask.concurrency} requests in flight per pool")  # fmt: skip
    results: dict[str, list[ItemResult]] = {pool: [] for pool in targets}
    with (
        open_store(collector.store) as store,
        tqdm(
            total=len(suite.items) * len(targets), unit="item", desc=f"eval {suite.name}", disable=not job.progress
        ) as bar,
    ):

        def on_chunk(chunk: ChunkResult) -> None:
            store.append("eval_items", item_rows(run_id, chunk.pool, suite.name, chunk.results, datetime.now(UTC)))
            results[chunk.pool].extend(chunk.results)
            bar.update(len(chunk.results))
            failed = sum(r.error is not None for rs in results.values() for r in rs)
            bar.set_postfix(failed=failed, refresh=False)

        _run(targets, suite, job, on_chunk, engine_ray_address)
        summaries = compare_run({p: outcomes_of(rs) for p, rs in results.items()}, job.reference, job.compare)
        retries = {p: sum(max(r.attempts - 1, 0) for r in rs) for p, rs in results.items()}
        store.append("eval_runs", run_rows(run_id, suite.name, job.reference, "inferwatch", summaries, retries,
                                           datetime.now(UTC)))  # fmt: skip
    return EvalRun(run_id, suite.name, job.reference, summaries, results, retries)


def _run(
    targets: dict[str, PoolTarget], suite: Suite, job: EvalJob, on_chunk: Callable[[ChunkResult], None],
    engine_ray_address: str | None,
) -> None:  # fmt: skip
    def go(tasks: Tasks) -> None:
        fan_out(targets, suite.items, job.ask, tasks, on_chunk, job.chunk_size)

    if job.in_process:
        threads = ThreadTasks(run_chunk, max_workers=len(targets))
        try:
            go(threads)
        finally:
            threads.close()
        return
    with ray_session(engine_ray_address, "inferwatch-evals"):
        go(RayTasks(run_chunk))


def failure_rows(run: EvalRun) -> list[dict[str, Any]]:
    """Per pool, the kinds of error its failed items had (by the first 60 characters) and how many items each."""
    counts: dict[tuple[str, str], int] = {}
    for pool, results in run.results.items():
        for r in results:
            if r.error is not None:
                key = (pool, r.error[:60])
                counts[key] = counts.get(key, 0) + 1
    return [{"pool": p, "items": n, "error": e} for (p, e), n in sorted(counts.items())]


def import_lm_eval(
    store: StoreLike,
    sources: Mapping[str, Path],
    *,
    run_id: str | None = None,
    reference: str | None = None,
    metric: str | None = None,
    filter_name: str | None = None,
    compare: CompareConfig | None = None,
) -> tuple[str, dict[str, list[PoolSummary]]]:
    """lm-eval per-sample files (pool -> file or output directory) as the eval items of one run; with a reference,
    the per-suite comparison of the run's pools (also stored). Every file is read before anything is stored."""
    run_id = run_id or uuid.uuid4().hex[:16]
    now = datetime.now(UTC)
    rows = [
        {"run_id": run_id, "pool": pool, "suite": item.suite, "item_id": item.item_id, "correct": item.correct,
         "score": item.score, "output": item.output, "error": None, "attempts": None, "recorded_at": now}
        for pool, path in sources.items()
        for file in sample_files(path)
        for item in read_samples(file, metric, filter_name)
    ]  # fmt: skip
    store.append("eval_items", rows)
    if reference is None:
        return run_id, {}
    summaries = compare_stored(store, run_id, reference, compare or CompareConfig())
    for suite, per_pool in summaries.items():
        store.append("eval_runs", run_rows(run_id, suite, reference, "lm-eval", per_pool, {}, now))
    return run_id, summaries
