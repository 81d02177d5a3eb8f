"""check_once as the CLI and the demo use it: what it returns, the tables it prints, re-sending firing alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from collector.alerts.job import active_rows, change_rows, check_once, delivery_rows
from collector.alerts.receiver import WebhookReceiver, received_rows
from collector.alerts.rules import AlertConfig, Receiver
from collector.store.api import Store

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
RULES = {"rules": [{"name": "Drift", "metric": "drift", "condition": "> 0", "severity": "critical",
                    "annotations": {"summary": "{{ $labels.pool }} drifts on {{ $value }} metric(s)"}},
                   {"name": "Errors", "metric": "error_rate", "window": "10m", "condition": "> 0.5", "for": "5m"}],
         "delivery": {"initial_backoff": "20ms", "poll": "50ms"}}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    now = datetime.now(UTC)
    with Store(tmp_path / "s.duckdb") as s:
        s.append("drift", [{"run_id": "c1", "pool": "boost", "metric": m, "value": 1.0, "verdict": v,
                            "recorded_at": now - timedelta(minutes=1)}
                           for m, v in (("greedy_hard_mismatch", "drift"), ("unexpected_chars", "drift"),
                                        ("tf_mean_kl", "ok"))])  # fmt: skip
        s.append("requests", [{"id": "e1", "pool": "noisy", "revision": "r2", "source": "load", "status": "error",
                               "started_at": now - timedelta(minutes=1)}])  # fmt: skip
        yield s


def test_a_check_fires_delivers_and_tabulates(store: Store) -> None:
    with WebhookReceiver() as hook:
        config = AlertConfig.model_validate(RULES).with_receivers(
            (Receiver(name="demo", url=hook.url, secret=SecretStr(SECRET)),)
        )
        first = check_once(store, config, external_url="http://127.0.0.1:8090")
        rows = change_rows(first.evaluation.changes)
        assert [(r["alert"], r["subject"], r["was"], r["now"], r["notify"]) for r in rows] == [
            ("Drift", "pool=boost", "-", "firing", "yes"), ("Errors", "pool=noisy revision=r2", "-", "pending", ""),
        ]  # fmt: skip
        assert rows[0]["reason"] == "drift 2 > 0 (drift on greedy_hard_mismatch, unexpected_chars)"
        assert [(r["receiver"], r["attempt"], r["outcome"], r["http"]) for r in delivery_rows(first.attempts)] == [
            ("demo", 1, "delivered", 200),
        ]  # fmt: skip
        assert [(r["alert"], r["state"]) for r in active_rows(first.active)] == [
            ("Drift", "firing"),
            ("Errors", "pending"),
        ]
        assert check_once(store, config).attempts == []  # already notified
        again = check_once(store, config, repeat_interval_s=0)  # the demo's way to show a firing alert each run
        assert [a.outcome for a in again.attempts] == ["delivered"]
    table = received_rows(hook.received, config.receivers[0].key())
    assert [(r["status"], r["alerts"], r["group"], r["signature"]) for r in table] == [
        ("firing", 1, '{}:{alertname="Drift"}', "ok"), ("firing", 1, '{}:{alertname="Drift"}', "ok"),
    ]  # fmt: skip
    assert table[0]["webhook-id"] != table[1]["webhook-id"]
    summary = hook.received[0].json()["alerts"][0]["annotations"]["summary"]
    assert summary == "boost drifts on 2 metric(s)"
