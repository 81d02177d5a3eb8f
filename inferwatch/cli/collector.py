"""`inferwatch collector up|status|down`: the gateway, store and metrics scraper in front of the pools."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inferwatch.cli.options import EXIT_FAILURE, HOME, STORE, log, parse_duration, settings
from inferwatch.settings import Settings, SettingsError

if TYPE_CHECKING:
    from collector.service import CollectorConfig


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser(
        "collector", parents=[HOME, STORE], help="the gateway, store and metrics scraper in front of the pools"
    )
    collector.add_argument("action", choices=["up", "status", "down"])
    collector.add_argument("--collector-port", type=int, help="the collector's HTTP port (default 8090)")
    collector.add_argument(
        "--split", action="append", metavar="BASELINE=CANDIDATE:WEIGHT",
        help="send a share of one pool's traffic to another, e.g. ref=bf16:0.1 (repeatable)",
    )  # fmt: skip
    collector.add_argument("--alert-rules", type=Path, help="evaluate these alert rules (data/alerts.yaml) here")
    collector.add_argument("--alert-interval", type=parse_duration, default=15.0, help="how often (default 15s)")
    collector.set_defaults(func=run)


def collector_config(
    settings: Settings, splits: Sequence[str] = (), alert_rules: Path | None = None, alert_interval_s: float = 15.0
) -> CollectorConfig:
    from collector.service import CollectorConfig

    return CollectorConfig(
        store_path=str(settings.store_path), engine_state=str(settings.engine_state), prices=str(settings.prices),
        host=settings.host, port=settings.collector_port, splits=tuple(splits),
        scrape_interval_s=settings.scrape_interval_s, alert_rules=str(alert_rules) if alert_rules else None,
        alert_interval_s=alert_interval_s,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    current = settings(args)
    if args.action == "up":
        return up(current, collector_config(current, args.split or (), args.alert_rules, args.alert_interval))
    return {"status": status, "down": down}[args.action](current)


def up(settings: Settings, config: CollectorConfig) -> int:
    from collector import daemon
    from collector.alerts.rules import AlertConfigError
    from collector.gateway.routes import SplitError

    try:
        state = daemon.up(config, settings.collector_state, log=log)
    except SplitError as exc:
        raise SettingsError(f"--split: {exc}") from None
    except AlertConfigError as exc:
        raise SettingsError(f"--alert-rules: {exc}") from None
    print(f"collector (gateway, store, scraper) at {state.url}")
    print(f"  OpenAI API: {state.url}/v1 (model <model>@<pool>)    metrics: {state.url}/metrics")
    if config.alert_rules:
        print(f"  alerts: {config.alert_rules}, evaluated every {config.alert_interval_s:g}s")
    print(f"  store: {state.store}    log: {state.log}    stop with: inferwatch collector down")
    return 0


def status(settings: Settings) -> int:
    from collector import daemon
    from inferwatch.report import print_table

    state, health = daemon.status(settings.collector_state)
    if health is None:
        print(f"the collector recorded in {settings.collector_state} (pid {state.pid}) does not answer at {state.url}")
        return EXIT_FAILURE
    print_table([{"url": state.url, "pid": state.pid, **health}], title="collector")
    return 0


def down(settings: Settings) -> int:
    from collector import daemon

    if daemon.down(settings.collector_state, log=log):
        print("collector is down (store flushed)")
    else:
        print(f"nothing to stop ({settings.collector_state} does not exist)")
    return 0
