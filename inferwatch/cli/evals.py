"""`inferwatch eval run|report|import`: eval suites on pools, compared item by item with a reference."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inferwatch.cli.options import (
    EXIT_FAILURE,
    EXIT_INCONCLUSIVE,
    HOME,
    STORE,
    bad_input,
    log,
    name_list,
    reader,
    running_collector,
    settings,
    writer,
)  # fmt: skip
from inferwatch.settings import Settings, SettingsError

if TYPE_CHECKING:
    from evals.compare import CompareConfig, PoolSummary

COMPARE = argparse.ArgumentParser(add_help=False)
COMPARE.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
COMPARE.add_argument("--margin", type=float, default=0.02, help="non-inferiority margin (default 0.02)")


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evals = commands.add_parser("eval", help="eval suites on pools, compared item by item with a reference")
    actions = evals.add_subparsers(dest="action", required=True)
    common = [HOME, STORE, COMPARE]
    run = actions.add_parser("run", parents=common, help="run a suite on pools through the gateway")
    run.add_argument("--suite", required=True, help="built-in suite (arith-v1, format-v1) or a .jsonl file")
    run.add_argument("--reference", required=True, help="the pool the others are compared with")
    run.add_argument("--pools", type=name_list, help="default: every pool")
    run.add_argument("--limit", type=int, help="only the first N items")
    run.add_argument("--concurrency", type=int, default=8, help="requests in flight per pool (default 8)")
    run.add_argument("--retries", type=int, default=2, help="retries of a transient failure (default 2)")
    run.add_argument("--in-process", action="store_true", help="ask from this process, not as Ray tasks")
    run.set_defaults(func=run_suite)
    report = actions.add_parser("report", parents=common, help="the comparison of a stored run, again")
    report.add_argument("--run", required=True, help="eval run id")
    report.add_argument("--reference", required=True, help="the pool the others are compared with")
    report.set_defaults(func=report_run)
    imports = actions.add_parser("import", parents=common, help="import lm-evaluation-harness --log_samples output")
    imports.add_argument("sources", nargs="+", metavar="POOL=PATH", help="a samples_*.jsonl file or lm-eval output dir")
    imports.add_argument("--run", help="run id (default: a new one)")
    imports.add_argument("--reference", help="compare the imported pools with this one")
    imports.add_argument("--metric", help="the 0/1 metric to read (default: the line's only metric, acc, exact_match)")
    imports.add_argument("--filter", help="which lm-eval filter's lines to read, when a file has several")
    imports.set_defaults(func=import_samples)


def eval_exit(summaries: Sequence[PoolSummary]) -> int:
    """1 when a pool regressed; 2 (as the gate) when one is inconclusive or has no data, never a pass; else 0."""
    from collector.vocabulary import EvalVerdict

    verdicts = {s.verdict for s in summaries}
    if EvalVerdict.regressed in verdicts:
        return EXIT_FAILURE
    return EXIT_INCONCLUSIVE if verdicts & {EvalVerdict.inconclusive, EvalVerdict.nodata} else 0


def compare_config(args: argparse.Namespace) -> CompareConfig:
    from evals.compare import CompareConfig

    with bad_input("--alpha/--margin"):
        return CompareConfig(alpha=args.alpha, margin=args.margin)


def run_suite(args: argparse.Namespace) -> int:
    from evals.job import EvalJob, failure_rows, run_eval_job
    from evals.runner import AskConfig
    from inferwatch.report import print_eval, print_table

    current = settings(args)
    collector = running_collector(current)
    config = compare_config(args)
    if args.concurrency < 1 or args.retries < 0:
        raise SettingsError("--concurrency must be >= 1 and --retries >= 0")
    job = EvalJob(
        suite=args.suite, reference=args.reference, pools=tuple(args.pools or ()), limit=args.limit,
        ask=AskConfig(concurrency=args.concurrency, retries=args.retries), compare=config,
        in_process=args.in_process,
    )  # fmt: skip
    with bad_input("inferwatch eval run"):
        run = run_eval_job(job, collector, engine_ray_address(current), log=log)
    print_eval(run.run_id, run.suite, run.reference, run.summaries)
    if failures := failure_rows(run):
        print_table(failures, title="failed items (recorded in eval_items with their error)")
    retried = ", ".join(f"{p} {n}" for p, n in run.retries.items() if n)
    print(f"retries: {retried or 'none'}    store: {collector.store}")
    return eval_exit(run.summaries)


def engine_ray_address(settings: Settings) -> str | None:
    from engine.state import EngineError, EngineState

    try:
        return EngineState.load(settings.engine_state).ray_address
    except EngineError:
        return None  # no engine of ours: RAY_ADDRESS or a local Ray


def report_run(args: argparse.Namespace) -> int:
    from evals.results import compare_stored

    config = compare_config(args)
    with reader(settings(args)) as store, bad_input("inferwatch eval report"):
        by_suite = compare_stored(store, args.run, args.reference, config)
    return show(args.run, args.reference, by_suite)


def import_samples(args: argparse.Namespace) -> int:
    from evals.job import import_lm_eval

    config = compare_config(args)
    sources = dict(pool_source(text) for text in args.sources)
    with writer(settings(args), create=True) as store, bad_input("inferwatch eval import"):
        run_id, by_suite = import_lm_eval(
            store, sources, run_id=args.run, reference=args.reference, metric=args.metric,
            filter_name=args.filter, compare=config,
        )  # fmt: skip
    print(f"imported {', '.join(f'{p}={s}' for p, s in sources.items())} as eval run {run_id}")
    return show(run_id, args.reference, by_suite)


def show(run_id: str, reference: str, by_suite: dict[str, list[PoolSummary]]) -> int:
    from inferwatch.report import print_eval

    for suite, summaries in by_suite.items():
        print_eval(run_id, suite, reference, summaries)
    return eval_exit([s for summaries in by_suite.values() for s in summaries]) if by_suite else 0


def pool_source(text: str) -> tuple[str, Path]:
    pool, sep, path = text.partition("=")
    if not sep or not pool or not path:
        raise SettingsError(f"{text!r}: write POOL=PATH, e.g. ref=lm-eval-out/ (a samples file or lm-eval's output)")
    return pool, Path(path)
