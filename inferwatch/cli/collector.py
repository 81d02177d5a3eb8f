"""`inferwatch collector up|status|down`: the gateway, store and metrics scraper in front of the pools."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inferwatch.cli.options import EXIT_FAILURE, EXPOSE, HOME, STORE, log, parse_duration, positive_int, settings
from inferwatch.settings import Settings, SettingsError

if TYPE_CHECKING:
    from collector.service import CollectorConfig


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser(
        "collector", parents=[HOME, STORE, EXPOSE], help="the gateway, store and metrics scraper in front of the pools"
    )
    collector.add_argument("action", choices=["up", "status", "down"])
    collector.add_argument("--collector-port", type=int, help="the collector's HTTP port (default 8090)")
    collector.add_argument(
        "--host", help="the address to listen on (default 127.0.0.1; beyond loopback needs INFERWATCH_ADMIN_TOKEN)"
    )
    collector.add_argument(
        "--api-keys", type=Path, help="client API keys file: /v1 needs a key, its tenant is in every row"
    )
    collector.add_argument(
        "--split", action="append", metavar="BASELINE=CANDIDATE:WEIGHT",
        help="send a share of one pool's traffic to another, e.g. ref=bf16:0.1 (repeatable)",
    )  # fmt: skip
    collector.add_argument(
        "--alert-rules", type=Path,
        help="evaluate these alert rules (data/alerts.yaml): one gateway at a time, by a lease in the store",
    )  # fmt: skip
    collector.add_argument("--alert-interval", type=parse_duration, default=15.0, help="how often (default 15s)")
    collector.add_argument(
        "--replicas", type=positive_int, default=1,
        help="gateways to run, each on its own port (from --collector-port up) and journal, one store (default 1)",
    )  # fmt: skip
    collector.add_argument("--fsync", help="journal fsync policy: none (default), group:<ms> or always")
    collector.add_argument("--overflow", choices=["fail-open", "fail-closed"], help="at the high-water mark")
    collector.add_argument("--high-water-rows", type=positive_int, help="journal backlog that counts as trouble")
    collector.set_defaults(func=run)


def collector_config(
    settings: Settings,
    splits: Sequence[str] = (),
    alert_rules: Path | None = None,
    alert_interval_s: float = 15.0,
    replica: int = 0,
) -> CollectorConfig:
    """The config of gateway number `replica` (0: the first, on --collector-port). Every one gets the alert rules;
    the one holding the store's alert lease evaluates them."""
    from collector.service import CollectorConfig

    port = settings.collector_port + replica
    return CollectorConfig(
        store_url=settings.store_url, engine_state=str(settings.engine_state), prices=str(settings.prices),
        host=settings.host, port=port, splits=tuple(splits), scrape_interval_s=settings.scrape_interval_s,
        alert_rules=str(alert_rules) if alert_rules else None, alert_interval_s=alert_interval_s,
        journal_dir=str(settings.journal_root / f"gw-{port}"), fsync=settings.fsync, overflow=settings.overflow,
        high_water_rows=settings.high_water_rows, api_keys=str(settings.api_keys) if settings.api_keys else None,
        allowed_hosts=settings.allowed_host_names, metrics_public=settings.metrics_public,
        insecure_bind=settings.insecure_bind,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    current = settings(args)
    if args.action == "up":
        configs = [
            collector_config(current, args.split or (), args.alert_rules, args.alert_interval, replica)
            for replica in range(args.replicas)
        ]
        return up(current, configs)
    return {"status": status, "down": down}[args.action](current)


def up(settings: Settings, configs: Sequence[CollectorConfig]) -> int:
    from collector import daemon
    from collector.alerts.rules import AlertConfigError
    from collector.auth import AuthConfigError, ExposedBind, check_collector_auth
    from collector.gateway.routes import SplitError
    from collector.ingest import IngestConfig
    from collector.store.door import open_store
    from collector.store.errors import StoreBusy, StoreError

    config = configs[0]
    try:
        check_collector_auth(config.host, config.api_keys, config.insecure_bind)  # the child would exit on these
    except (AuthConfigError, ExposedBind) as exc:
        raise SettingsError(f"collector: {exc}") from None
    try:
        IngestConfig(config.journal_dir, config.fsync, config.high_water_rows, config.overflow).check()
        open_store(config.store_url).close()  # created and migrated once, before the gateways race to do it
    except ValueError as exc:
        raise SettingsError(f"collector: {exc}") from None
    except StoreError as exc:
        if isinstance(exc, StoreBusy):
            raise
        raise SettingsError(str(exc)) from None
    try:
        states = [daemon.up(c, daemon.state_file(settings.collector_state, i), log=log) for i, c in enumerate(configs)]
    except SplitError as exc:
        raise SettingsError(f"--split: {exc}") from None
    except AlertConfigError as exc:
        raise SettingsError(f"--alert-rules: {exc}") from None
    for state in states:
        print(f"collector (gateway, journal, scraper) at {state.url}    log: {state.log}")
    print(f"  OpenAI API: {states[0].url}/v1 (model <model>@<pool>)    metrics: {states[0].url}/metrics")
    if config.alert_rules:
        print(f"  alerts: {config.alert_rules}, evaluated every {config.alert_interval_s:g}s by one gateway at a time "
              "(the holder of the store's alert lease; /healthz `alerts`)")  # fmt: skip
    print(f"  store: {config.store_url}    journal fsync: {config.fsync}    stop with: inferwatch collector down")
    return 0


def status(settings: Settings) -> int:
    from collector import daemon
    from inferwatch.report import print_table

    rows, silent, stores = [], 0, set()
    for path in daemon.state_files(settings.collector_state) or [settings.collector_state]:
        state, health = daemon.status(path)
        stores.add(state.store)
        if health is None:
            print(f"the collector recorded in {path} (pid {state.pid}) does not answer at {state.url}")
            silent += 1
            continue
        keep = ("status", "problem", "backlog_rows", "committed_rows", "torn_records", "fsync", "overflow")
        rows.append({"url": state.url, "pid": state.pid, **{k: health.get(k) for k in keep}})
    if rows:
        print_table(rows, title=f"collectors (store {', '.join(sorted(stores))})")  # as each was started
    return EXIT_FAILURE if silent else 0


def down(settings: Settings) -> int:
    from collector import daemon

    stopped = [path for path in daemon.state_files(settings.collector_state) if daemon.down(path, log=log)]
    if stopped:
        print(f"{len(stopped)} collector(s) down (journals committed)")
    else:
        print(f"nothing to stop ({settings.collector_state} does not exist)")
    return 0
