"""Two collectors with the same alert rules on one store (a DuckLake on PostgreSQL): one of them holds the alert
lease and evaluates, so a firing alert is notified once, not twice; when that one stops, the other takes over."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector import daemon
from collector.alerts.receiver import WebhookReceiver
from collector.state import health
from collector.store.door import open_store
from collector.store.postgres import PostgresServer
from tests.collector.alerts.test_collector_alerts import SECRET, attempts, rules_file, wait_for
from tests.collector.faulty_upstream import FaultyUpstream, start_gateway
from tests.collector.store.backends import store_url
from tests.conftest import flush_collector


def evaluating(urls: list[str]) -> list[str]:
    """The gateways whose /healthz says they hold the alert lease."""
    return [url for url in urls if (health(url) or {}).get("alerts", {}).get("evaluating")]


def test_two_gateways_with_alert_rules_notify_a_firing_alert_once(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERWATCH_TEST_ALERT_SECRET", SECRET)  # the collector processes inherit it
    url = store_url("ducklake-postgres", tmp_path, postgres)
    open_store(url).close()  # created once, before the two gateways race to migrate it
    config: dict[str, Any] = {"alert_interval_s": 1.0, "commit_interval_s": 0.2}
    with FaultyUpstream() as upstream, WebhookReceiver() as hook:
        config["alert_rules"] = str(rules_file(tmp_path, hook.url))
        homes = [tmp_path / "a", tmp_path / "b"]
        states = [start_gateway(home, upstream, url, **config) for home in homes]
        urls = [s.url for s in states]
        try:
            one = wait_for("one gateway holding the alert lease", lambda: evaluating(urls), timeout_s=30)
            for i in range(4):  # errors through both gateways: 4 of 4 requests of err500 fail
                body = {"model": "arith@err500", "prompt": "1+2=", "max_tokens": 3}
                httpx.post(f"{urls[i % 2]}/v1/completions", json=body, headers={"x-request-id": f"e-{i}"},
                           timeout=30)  # fmt: skip
            for gateway in urls:
                flush_collector(gateway)
            wait_for("the notification", hook.delivered)
            time.sleep(3.0)  # three more rounds on each gateway: nobody notifies the firing alert again
            assert evaluating(urls) == one  # the same single holder throughout
            (got,) = hook.received
            assert [(a["labels"]["pool"], a["status"]) for a in got.json()["alerts"]] == [("err500", "firing")]
            assert [r["status"] for r in attempts(url)] == ["delivered"]
            # the holder stops cleanly (it releases the lease): the other takes over within a few rounds
            daemon.down(homes[urls.index(one[0])] / "collector.json")
            rest = [u for u in urls if u != one[0]]
            assert wait_for("the other gateway taking the lease over", lambda: evaluating(rest), timeout_s=30) == rest
            time.sleep(2.0)  # it evaluates: the alert is still firing, already notified
            assert len(hook.received) == 1
        finally:
            for home in homes:
                daemon.down(home / "collector.json")
