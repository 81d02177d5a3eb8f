"""`inferwatch alerts check`: evaluate the alert rules over the store once and deliver what fires."""

from __future__ import annotations

import argparse
from pathlib import Path

from inferwatch.cli.options import EXIT_FAILURE, HOME, STORE, parse_duration, settings, writer
from inferwatch.settings import Settings


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alerts = commands.add_parser(
        "alerts", parents=[HOME, STORE], help="evaluate the alert rules over the store once and deliver"
    )
    alerts.add_argument("action", choices=["check"])
    alerts.add_argument("--rules", type=Path, help="alert rules file (default data/alerts.yaml)")
    alerts.add_argument(
        "--deliver-within", type=parse_duration, default=30.0, help="keep retrying deliveries this long (default 30s)"
    )
    alerts.set_defaults(func=check)


def evaluating_collector(settings: Settings) -> str:
    """The URL of the collector of this home when it answers ("" otherwise); CollectorError when it evaluates
    alert rules on this store itself (a second evaluator would notify twice)."""
    from collector.state import CollectorError, CollectorState, health
    from collector.store.url import same_store

    state = CollectorState.load(settings.collector_state)
    answer = health(state.url) if state else None
    if state and answer and answer.get("alerts") and same_store(state.store, settings.store_url):
        raise CollectorError(
            f"the collector at {state.url} evaluates the alert rules {answer['alerts']['rules']} on this store "
            "already; a second evaluator would notify twice. Read its `alerts` table, or restart it without "
            "--alert-rules"
        )
    return state.url if state and answer else ""


def check(args: argparse.Namespace) -> int:
    from collector.alerts.job import active_rows, change_rows, check_once, delivery_rows
    from collector.alerts.rules import DEFAULT_RULES, load_alert_config
    from inferwatch.report import print_table

    current = settings(args)
    config = load_alert_config(args.rules or DEFAULT_RULES)
    external_url = evaluating_collector(current)
    with writer(current) as store:
        result = check_once(store, config, deliver_within_s=args.deliver_within, external_url=external_url)
    print_table(change_rows(result.evaluation.changes), title="what changed in this evaluation")
    print_table(active_rows(result.active), title="pending and firing alerts")
    if result.attempts:
        print_table(delivery_rows(result.attempts), title="deliveries")
    if not config.receivers:
        print(f"no receivers in {args.rules or DEFAULT_RULES}: nothing is delivered (see docs/ALERTS.md)")
    if result.undelivered:
        print(f"{result.undelivered} notification(s) not delivered yet; they stay in the store's outbox and the "
              "next `inferwatch alerts check` (or a collector with --alert-rules) retries them")  # fmt: skip
        return EXIT_FAILURE
    return 0
