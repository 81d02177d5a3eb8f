"""`inferwatch fleet`: per-pool latency, cost per token and cache hits, read from the store (read-only)."""

from __future__ import annotations

import argparse

from inferwatch.cli.options import HOME, STORE, parse_duration, reader, settings


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = commands.add_parser(
        "fleet", parents=[HOME, STORE], help="per-pool latency, cost per token and cache hits from the store"
    )
    fleet.add_argument("--window", type=parse_duration, default=900.0, help="how far back (default 15m)")
    fleet.add_argument("--run", help="one load run instead of a window")
    fleet.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collector.fleet.report import Window, fleet_report, table_rows
    from inferwatch.report import print_table

    current = settings(args)
    window = Window(run_id=args.run) if args.run else Window.last(args.window)
    with reader(current) as store:
        reports = fleet_report(store, window)
    what = f"run {args.run}" if args.run else f"the last {args.window:g}s"
    print_table(table_rows(reports), title=f"pools over {what} ({current.store_url})")
    return 0
