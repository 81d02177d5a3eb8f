"""`inferwatch demo` (`make demo`): pools, load, canary, evals, gates and alerts, then the dashboard until Ctrl-C."""

from __future__ import annotations

import argparse

from inferwatch.cli.collector import collector_config
from inferwatch.cli.engine import engine_config
from inferwatch.cli.options import ENGINE, EXIT_INTERRUPTED, EXPOSE, HOME, log, positive_int, settings
from inferwatch.settings import SettingsError


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", parents=[ENGINE, HOME, EXPOSE],
        help="the whole job: pools, load, canary, evals, gates, alerts, then the dashboard until Ctrl-C",
    )  # fmt: skip
    demo.add_argument("--dashboard-port", type=int, default=8501, help="the dashboard's port (default 8501)")
    demo.add_argument(
        "--fleet", type=positive_int, metavar="N",
        help="fleet mode: N gateways writing one DuckLake store whose catalog is in a PostgreSQL the demo starts "
        "(and stops at the end) instead of the embedded file",
    )  # fmt: skip
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collector.store.postgres import PostgresError
    from inferwatch.demo import FleetStore, interrupt_on_sigterm, run_demo, serve_until_interrupted, shut_down

    current = settings(args)
    cfg = engine_config(current)
    interrupt_on_sigterm()
    fleet = None
    try:
        if args.fleet:
            try:
                fleet = FleetStore(current, log)
            except PostgresError as exc:
                raise SettingsError(f"demo --fleet: {exc}") from None
            current = current.model_copy(update={"store": fleet.url})
        collectors = [collector_config(current, replica=i) for i in range(args.fleet or 1)]
        demo = run_demo(current, cfg, collectors, log=log, dashboard_port=args.dashboard_port)
    except KeyboardInterrupt:
        log("interrupted: stopping the collector and the pools")
        shut_down(None, current, cfg, log, fleet)
        return EXIT_INTERRUPTED
    return serve_until_interrupted(demo, current, cfg, log=log, fleet=fleet)
