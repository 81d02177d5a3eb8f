"""Alerts inside a real collector process: requests through its gateway to a failing pool fire an alert, the
receiver is down, the collector is stopped and started again, and the stored outbox is delivered after."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from collector import daemon
from collector.alerts.job import check_once
from collector.alerts.outbox import load_pending
from collector.alerts.receiver import WebhookReceiver
from collector.alerts.rules import AlertConfig, AlertConfigError
from collector.state import health
from collector.store.api import Store
from collector.store.door import open_reader, open_store
from tests.collector.alerts.reference import reference_verify
from tests.collector.faulty_upstream import FaultyUpstream, start_collector
from tests.conftest import flush_collector, free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def rules_file(home: Path, url: str) -> Path:
    path = home / "alerts.yaml"
    path.write_text(yaml.safe_dump({
        "rules": [{"name": "ErrorsHigh", "metric": "error_rate", "window": "1h", "min_requests": 3,
                   "condition": "> 0.05", "severity": "critical"}],
        "receivers": [{"name": "oncall", "url": url, "secret_env": "INFERWATCH_TEST_ALERT_SECRET"}],
        "delivery": {"timeout": "20s", "initial_backoff": "50ms", "max_backoff": "200ms", "poll": "100ms"},
    }))  # fmt: skip
    return path


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def load_pending_rows(store: Store) -> list[dict[str, Any]]:
    return [{"status": p.notification.status.value, "attempts": p.attempts} for p in load_pending(store)]


def attempts(store_url: str) -> list[dict[str, Any]]:
    """The delivery attempts the collector's alert job has stored (it appends them at once)."""
    with open_reader(store_url) as store:
        rows: list[dict[str, Any]] = store.query(
            "SELECT notification_id, attempt, status, http_status FROM alerts WHERE notification_id IS NOT NULL "
            "ORDER BY attempt"
        ).to_pylist()
    return rows


def test_a_receiver_down_across_a_collector_restart_gets_the_alert_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERWATCH_TEST_ALERT_SECRET", SECRET)  # the collector process inherits it
    port = free_port()
    rules = rules_file(tmp_path, f"http://127.0.0.1:{port}/hook")
    config = {"alert_rules": str(rules), "alert_interval_s": 0.2, "commit_interval_s": 0.2}
    with FaultyUpstream() as upstream:
        state = start_collector(tmp_path, upstream, **config)
        try:
            assert health(state.url)["alerts"]["rules"] == str(rules)  # type: ignore[index]
            for i in range(4):  # the fault pool answers 500 (the gateway records errors); the ok pool answers
                for pool in ("err500", "ok"):
                    body = {"model": f"arith@{pool}", "prompt": "1+2=", "max_tokens": 3}
                    httpx.post(f"{state.url}/v1/completions", json=body, headers={"x-request-id": f"{pool}-{i}"},
                               timeout=30)  # fmt: skip
            wait_for("failed attempts while the receiver is down", lambda: len(attempts(state.store)) >= 3)
        finally:
            daemon.down(tmp_path / "collector.json")
        log = (tmp_path / "collector.log").read_text()
        assert "attempt 1 retrying (ConnectError" in log and SECRET.removeprefix("whsec_") not in log
        with open_reader(state.store) as store:  # the collector is down: the file itself
            before = store.query("SELECT count(*) AS n FROM alerts WHERE status = 'retrying'").column("n")[0].as_py()
            assert [r["status"] for r in load_pending_rows(store)] == ["firing"]
        with WebhookReceiver(port=port) as hook:
            state = start_collector(tmp_path, upstream, **config)
            try:
                wait_for("the delivery after the restart", hook.delivered)
                time.sleep(1.0)  # a few more evaluation rounds: the firing alert must not be notified again
                rows = attempts(state.store)
            finally:
                daemon.down(tmp_path / "collector.json")
    (got,) = hook.received
    body = got.json()
    assert [(a["labels"]["alertname"], a["labels"]["pool"], a["status"]) for a in body["alerts"]] == [
        ("ErrorsHigh", "err500", "firing"),
    ]
    assert body["externalURL"].startswith("http://127.0.0.1:")
    assert reference_verify(SECRET, got.headers, got.body)
    assert len({r["notification_id"] for r in rows}) == 1  # one notification, resumed from the store
    assert [r["status"] for r in rows] == ["retrying"] * (len(rows) - 1) + ["delivered"]
    assert {r["http_status"] for r in rows[:-1]} == {None} and rows[-1]["http_status"] == 200
    assert len(rows) == before + 1  # the attempts before the restart, then the one after it


def test_bad_alert_rules_stop_the_collector_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text("rules: [{name: X, metric: nope, condition: '> 1'}]\n")
    message = r"alerts.yaml: rules\[0\] 'X': field 'metric'"
    with FaultyUpstream() as upstream, pytest.raises(AlertConfigError, match=message):
        start_collector(tmp_path, upstream, alert_rules=str(tmp_path / "alerts.yaml"))
    assert not (tmp_path / "collector.json").exists()


def test_check_once_through_a_running_collector_as_the_cli_and_the_demo_do(tmp_path: Path) -> None:
    with FaultyUpstream() as upstream, WebhookReceiver() as hook:
        state = start_collector(tmp_path, upstream)  # no alert rules: it does not evaluate
        try:
            assert health(state.url)["alerts"] is None  # type: ignore[index]
            for i in range(3):
                body = {"model": "arith@err500", "prompt": "1+2=", "max_tokens": 3}
                httpx.post(f"{state.url}/v1/completions", json=body, headers={"x-request-id": f"e-{i}"}, timeout=30)
            config = AlertConfig.model_validate({
                "rules": [{"name": "ErrorsHigh", "metric": "error_rate", "window": "1h", "condition": "> 0.05"}],
                "receivers": [{"name": "local", "url": hook.url, "secret": SECRET}],
            })  # fmt: skip
            flush_collector(state.url)  # the gateway's rows are in the store once it commits its journal
            with open_store(state.store) as store:
                done = check_once(store, config, external_url=state.url)
                assert [(c.alert.labels["pool"], c.alert.status.value) for c in done.evaluation.changes] == [
                    ("err500", "firing"),
                ]
                assert [a.outcome for a in done.attempts] == ["delivered"] and done.undelivered == 0
                assert attempts(state.store)[0]["status"] == "delivered"
        finally:
            daemon.down(tmp_path / "collector.json")
    (got,) = hook.received
    assert got.json()["alerts"][0]["labels"]["pool"] == "err500" and reference_verify(SECRET, got.headers, got.body)
