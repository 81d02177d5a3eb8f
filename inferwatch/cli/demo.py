"""`inferwatch demo` (`make demo`): pools, load, canary, evals, gates and alerts, then the dashboard until Ctrl-C."""

from __future__ import annotations

import argparse

from inferwatch.cli.collector import collector_config
from inferwatch.cli.engine import engine_config
from inferwatch.cli.options import ENGINE, EXIT_INTERRUPTED, HOME, log, settings


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", parents=[ENGINE, HOME],
        help="the whole job: pools, load, canary, evals, gates, alerts, then the dashboard until Ctrl-C",
    )  # fmt: skip
    demo.add_argument("--dashboard-port", type=int, default=8501, help="the dashboard's port (default 8501)")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from inferwatch.demo import interrupt_on_sigterm, run_demo, serve_until_interrupted, shut_down

    current = settings(args)
    cfg = engine_config(current)
    interrupt_on_sigterm()
    try:
        demo = run_demo(current, cfg, collector_config(current), log=log, dashboard_port=args.dashboard_port)
    except KeyboardInterrupt:
        log("interrupted: stopping the collector and the pools")
        shut_down(None, current, cfg, log)
        return EXIT_INTERRUPTED
    return serve_until_interrupted(demo, current, cfg, log=log)
