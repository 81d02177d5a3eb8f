"""`inferwatch canary run`: probe every pool against a reference and report per-hardware output drift."""

from __future__ import annotations

import argparse

from inferwatch.cli.options import EXIT_FAILURE, HOME, bad_input, log, name_list, running_collector, settings


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    canary = commands.add_parser(
        "canary", parents=[HOME], help="probe every pool against a reference: per-hardware output drift"
    )
    canary.add_argument("action", choices=["run"])
    canary.add_argument("--reference", required=True, help="the pool the others are compared with")
    canary.add_argument("--pools", type=name_list, help="default: all the others")
    canary.add_argument("--probes", type=name_list, default=["arith-v1", "text-v1", "prefix-v1"],
                        help="probe sets (names or .jsonl files)")  # fmt: skip
    canary.add_argument("--samples", type=int, default=16, help="samples per sampled probe")
    canary.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="batch sweep of greedy probes")
    canary.add_argument("--alpha", type=float, default=0.05, help="false-alarm level of every test")
    canary.add_argument("--seed", type=int, default=0)
    canary.add_argument("--recalibrate", action="store_true", help="run the A/A calibration again")
    canary.add_argument("--in-process", action="store_true", help="collect in this process, not as Ray tasks")
    canary.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from canary.job import CanaryJob, run_canary_job
    from canary.runner import table_rows
    from engine.state import EngineState
    from inferwatch.report import print_table

    current = settings(args)
    collector = running_collector(current)
    job = CanaryJob(
        reference=args.reference, pools=tuple(args.pools or ()), probes=tuple(args.probes), samples=args.samples,
        concurrencies=tuple(args.concurrency), alpha=args.alpha, seed=args.seed, recalibrate=args.recalibrate,
        in_process=args.in_process,
    )  # fmt: skip
    with bad_input("inferwatch canary run"):
        run, path = run_canary_job(
            job, EngineState.load(current.engine_state), collector, current.home, current.prices, log=log
        )
    print_table(table_rows(run), title=f"canary {run.run_id}: each pool against {run.reference} (* critical)")
    drifting = [r.pool for r in run.reports if r.drifting]
    print(f"drifting: {', '.join(drifting) or 'none'}    calibration: {path}    store: {collector.store}")
    return EXIT_FAILURE if drifting else 0
