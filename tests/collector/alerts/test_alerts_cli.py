"""`inferwatch alerts check` as a user runs it (a subprocess) on a store file, with a receiver on loopback."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from collector.alerts.receiver import Reply, WebhookReceiver
from collector.alerts.rules import Receiver
from collector.alerts.signing import verify
from collector.store.api import Store
from tests.conftest import inferwatch

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def seed(home: Path) -> None:
    now = datetime.now(UTC)
    with Store(home / "inferwatch.duckdb") as s:
        s.append("drift", [{"run_id": "c1", "pool": "boost", "metric": m, "value": 1.0, "verdict": v,
                            "recorded_at": now - timedelta(minutes=1)}
                           for m, v in (("unexpected_chars", "drift"), ("tf_mean_kl", "ok"))])  # fmt: skip


def rules(path: Path, url: str, **delivery: str) -> Path:
    path.write_text(yaml.safe_dump({
        "receivers": [{"name": "oncall", "url": url, "secret_env": "ONCALL_SECRET"}],
        "delivery": {"initial_backoff": "100ms", "poll": "100ms", **delivery},
        "rules": [{"name": "Drift", "metric": "drift", "condition": "> 0", "severity": "critical"}],
    }))  # fmt: skip
    return path


def test_a_check_fires_the_drift_alert_and_delivers_it_signed(tmp_path: Path) -> None:
    seed(tmp_path)
    with WebhookReceiver() as hook:
        path = rules(tmp_path / "r.yaml", hook.url)
        done = inferwatch("alerts", "check", "--home", str(tmp_path), "--rules", str(path),
                          env={"ONCALL_SECRET": SECRET})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Drift" in done.stdout and "pool=boost" in done.stdout and "delivered" in done.stdout
    assert SECRET not in done.stdout + done.stderr  # secrets are never printed
    [got] = hook.received
    body = json.loads(got.body)
    assert (body["version"], body["status"], len(body["alerts"])) == ("4", "firing", 1)
    assert body["alerts"][0]["labels"] == {"alertname": "Drift", "pool": "boost", "severity": "critical"}
    key = Receiver(name="k", url="http://x/", secret=SECRET).key()  # type: ignore[arg-type]
    assert key is not None
    verify(key, got.headers, got.body, now_s=time.time())
    # a second check: the alert is still firing, already notified within the repeat interval: nothing sent
    with WebhookReceiver(port=hook.port) as again:
        done = inferwatch("alerts", "check", "--home", str(tmp_path), "--rules", str(tmp_path / "r.yaml"),
                          env={"ONCALL_SECRET": SECRET})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert again.received == []


def test_an_undelivered_notification_exits_1_and_stays_in_the_outbox(tmp_path: Path) -> None:
    seed(tmp_path)
    with WebhookReceiver(lambda n: Reply(503)) as hook:
        path = rules(tmp_path / "r.yaml", hook.url)
        done = inferwatch("alerts", "check", "--home", str(tmp_path), "--rules", str(path),
                          "--deliver-within", "3s", env={"ONCALL_SECRET": SECRET})  # fmt: skip
        tries = len(hook.received)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 notification(s) not delivered yet" in done.stdout
    assert tries >= 2  # retried within the 3 s, with backoff (1 s was too short on a busy machine)
    # the receiver is back: the next check delivers what the outbox kept, exactly once
    with WebhookReceiver(port=hook.port) as back:
        done = inferwatch("alerts", "check", "--home", str(tmp_path), "--rules", str(tmp_path / "r.yaml"),
                          env={"ONCALL_SECRET": SECRET})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert [json.loads(r.body)["status"] for r in back.received] == ["firing"]


def test_bad_rules_and_a_missing_secret_exit_3_naming_the_field(tmp_path: Path) -> None:
    seed(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: Drift, metric: drift, condition: 'bigger than 0'}\n")
    done = inferwatch("alerts", "check", "--home", str(tmp_path), "--rules", str(bad))
    assert done.returncode == 3
    assert str(bad) in done.stderr and "condition" in done.stderr
    done = inferwatch(
        "alerts", "check", "--home", str(tmp_path), "--rules", str(rules(tmp_path / "r.yaml", "http://127.0.0.1:9/"))
    )
    assert done.returncode == 3
    assert "secret_env" in done.stderr and "ONCALL_SECRET is not set" in done.stderr


def test_no_store_exits_3(tmp_path: Path) -> None:
    done = inferwatch("alerts", "check", "--home", str(tmp_path / "nothing"))
    assert done.returncode == 3 and "no store there yet" in done.stderr
