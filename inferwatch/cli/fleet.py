"""`inferwatch fleet`: per-pool latency, cost per token and cache hits, read from the store (read-only)."""

from __future__ import annotations

import argparse

from inferwatch.cli.options import HOME, SLO, STORE, parse_duration, reader, settings


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = commands.add_parser(
        "fleet",
        parents=[HOME, STORE, SLO],
        help="per-pool latency, goodput, cost per token and cache hits from the store",
    )
    fleet.add_argument("--window", type=parse_duration, default=900.0, help="how far back (default 15m)")
    fleet.add_argument("--run", help="one load run instead of a window")
    fleet.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collector.fleet.report import Window, cost_rows, fleet_report, latency_rows
    from collector.fleet.slo import DEFAULT_SLO_PATH, load_slo
    from inferwatch.report import print_table

    current = settings(args)
    slo = load_slo(args.slo or DEFAULT_SLO_PATH)
    window = Window(run_ids=(args.run,)) if args.run else Window.last(args.window)
    with reader(current) as store:
        reports = fleet_report(store, window, slo=slo)
    what = f"run {args.run}" if args.run else f"the last {args.window:g}s"
    print_table(latency_rows(reports), title=f"pools over {what}, ms; goodput: {slo.describe()} ({current.store_url})")
    print_table(cost_rows(reports), title=f"cost and cache over {what} ($ = price x replicas x window)")
    return 0
