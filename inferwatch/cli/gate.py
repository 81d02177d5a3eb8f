"""`inferwatch gate`: judge a candidate pool against its baseline over a window of the store.

The judgement reads the store read-only; only its verdict is then appended to the `gates` table (for /metrics,
the alerts and the dashboard). Exit 0 pass, 1 fail, 2 marginal or no data, 3 bad usage or input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from inferwatch.cli.options import HOME, SLO, STORE, bad_input, parse_duration, reader, settings, writer
from inferwatch.settings import Settings

if TYPE_CHECKING:
    from gate.judge import GateResult


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gate = commands.add_parser(
        "gate", parents=[HOME, STORE, SLO],
        help="judge a candidate pool against its baseline (exit 0 pass, 1 fail, 2 marginal)",
    )  # fmt: skip
    gate.add_argument("--baseline", required=True, help="the pool (revision) in production")
    gate.add_argument("--candidate", required=True, help="the pool (revision) to roll out")
    gate.add_argument("--window", type=parse_duration, default=900.0, help="how far back (default 15m)")
    gate.add_argument("--config", type=Path, help="judge config laid over data/gate.yaml")
    gate.add_argument("--format", choices=["table", "md", "json", "junit"], default="table")
    gate.add_argument("--output", type=Path, help="write the md/json/junit report here (a CI artifact)")
    gate.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from collector.fleet.slo import DEFAULT_SLO_PATH, load_slo
    from gate.config import load_gate_config
    from gate.data import Span
    from gate.judge import run_gate

    current = settings(args)
    config = load_gate_config(args.config)
    slo = load_slo(args.slo or DEFAULT_SLO_PATH)
    end = datetime.now(UTC)
    with reader(current) as store, bad_input("inferwatch gate"):
        span = Span(end - timedelta(seconds=args.window), end)
        result = run_gate(store, args.baseline, args.candidate, span, config, slo)
    record(current, result)
    show(args, result)
    return result.exit_code


def record(settings: Settings, result: GateResult) -> None:
    """The verdict as a row of the `gates` table."""
    from gate.judge import gate_row

    with writer(settings) as store:
        store.append("gates", [gate_row(result)])


def show(args: argparse.Namespace, result: GateResult) -> None:
    from gate import report
    from inferwatch.report import print_table

    if args.format == "table":
        print_table(report.table_rows(result), title=f"gate {result.gate_id}: {result.candidate} against "
                    f"{result.baseline} over the last {args.window:g}s (! critical)")  # fmt: skip
        print("\n".join(report.reason_lines(result)))
        print(report.headline(result))
        return
    text = {"md": report.markdown, "json": report.as_json, "junit": report.junit}[args.format](result)
    if args.output:
        args.output.write_text(text)
        print(report.headline(result))
    else:
        print(text, end="")
