"""Delivery against real HTTP receivers on loopback: retries, refusals, Retry-After, timeouts, an outage, a burst.

The store is a real DuckDB file; `check_once` evaluates and delivers as `inferwatch alerts check` does. Backoff
is short here (tens of milliseconds); no assertion depends on how long anything took, only on order.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.alerts.delivery import Answer, Outcome, backoff_s, outcome_of, retry_after_s
from collector.alerts.job import check_once
from collector.alerts.outbox import Pending, load_pending
from collector.alerts.payload import Notification
from collector.alerts.receiver import Reply, WebhookReceiver
from collector.alerts.rules import AlertConfig, DeliveryPolicy
from collector.store.api import Store
from tests.collector.alerts.reference import reference_verify
from tests.conftest import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# short waits between attempts; a generous timeout, so that a loaded machine does not turn answers into timeouts
FAST = {"timeout": "20s", "initial_backoff": "20ms", "max_backoff": "100ms", "poll": "50ms"}


def alert_config(*receivers: dict[str, Any], **delivery: Any) -> AlertConfig:
    return AlertConfig.model_validate({
        "rules": [{"name": "ErrorsHigh", "metric": "error_rate", "window": "1h", "condition": "> 0.05",
                   "severity": "critical", "annotations": {"summary": "{{ $labels.pool }} fails"}}],
        "receivers": list(receivers), "delivery": {**FAST, **delivery},
    })  # fmt: skip


def receiver(url: str, **over: Any) -> dict[str, Any]:
    return {"name": "oncall", "url": url, "secret": SECRET, **over}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def add_requests(store: Store, pool: str, ok: int, errors: int) -> None:
    start = datetime.now(UTC) - timedelta(seconds=30)
    rows = [
        {"id": f"{pool}-{i}-{start.timestamp()}", "pool": pool, "revision": "r1", "source": "load",
         "started_at": start, "status": "ok" if i < ok else "error", "e2e_s": 0.1}
        for i in range(ok + errors)
    ]  # fmt: skip
    store.append("requests", rows)


def attempts(store: Store) -> list[tuple[str, int, str, int | None]]:
    rows = store.query(
        "SELECT notification_id, attempt, status, http_status FROM alerts WHERE notification_id IS NOT NULL "
        "ORDER BY recorded_at, attempt"
    ).to_pylist()
    return [(r["notification_id"], r["attempt"], r["status"], r["http_status"]) for r in rows]


def test_500_for_a_while_then_200_delivers_each_notification_exactly_once(store: Store) -> None:
    with WebhookReceiver(lambda n: Reply(500) if n < 3 else Reply(200)) as hook:
        config = alert_config(receiver(hook.url))
        add_requests(store, "boost", ok=0, errors=4)
        add_requests(store, "ref", ok=10, errors=0)
        fired = check_once(store, config)
        assert [(c.alert.labels["pool"], c.alert.status.value) for c in fired.evaluation.changes] == [
            ("boost", "firing")
        ]
        assert [(a.attempt, a.outcome, a.http_status) for a in fired.attempts] == [
            (1, "retrying", 500), (2, "retrying", 500), (3, "retrying", 500), (4, "delivered", 200),
        ]  # fmt: skip
        assert fired.undelivered == 0
        add_requests(store, "boost", ok=100, errors=0)  # 4 errors in 104 requests: under 5 %
        resolved = check_once(store, config)
        assert [a.outcome for a in resolved.attempts] == ["delivered"]
        assert resolved.active == []

    ids = [r.headers["webhook-id"] for r in hook.received]
    assert len(set(ids[:4])) == 1, "every retry of a notification carries the same webhook-id"
    delivered = hook.delivered()
    assert [r.json()["status"] for r in delivered] == ["firing", "resolved"]
    assert len({r.headers["webhook-id"] for r in delivered}) == 2  # each notification accepted exactly once
    assert all(reference_verify(SECRET, r.headers, r.body) for r in hook.received)
    firing, ended = (r.json()["alerts"][0] for r in delivered)
    assert firing["fingerprint"] == ended["fingerprint"] and firing["labels"]["pool"] == "boost"
    assert firing["annotations"]["summary"] == "boost fails"
    assert ended["annotations"]["reason"] == "error_rate 0.03846 not > 0.05 (4 of 104 requests failed over 60m)"
    assert firing["endsAt"] == "0001-01-01T00:00:00Z" and ended["endsAt"] != firing["endsAt"]
    # every attempt is in the alerts table
    assert [(n, s, h) for _, n, s, h in attempts(store)] == [
        (1, "retrying", 500), (2, "retrying", 500), (3, "retrying", 500), (4, "delivered", 200), (1, "delivered", 200),
    ]  # fmt: skip


def test_a_400_is_recorded_as_failed_and_never_retried(store: Store) -> None:
    with WebhookReceiver(lambda n: Reply(400)) as hook:
        config = alert_config(receiver(hook.url))
        add_requests(store, "boost", ok=0, errors=2)
        first = check_once(store, config)
        assert [(a.outcome, a.http_status) for a in first.attempts] == [("failed", 400)]
        assert first.attempts[0].error == "HTTP 400"
        again = check_once(store, config)  # the alert still fires; nothing new to notify, nothing to retry
        assert again.attempts == [] and again.evaluation.changes == []
    assert len(hook.received) == 1
    assert load_pending(store) == []
    assert [(status, http) for _, _, status, http in attempts(store)] == [("failed", 400)]


def test_429_waits_for_retry_after(store: Store) -> None:
    with WebhookReceiver(lambda n: Reply(429, {"Retry-After": "1"}) if n == 0 else Reply(200)) as hook:
        add_requests(store, "boost", ok=0, errors=2)
        done = check_once(store, alert_config(receiver(hook.url)))
    first, second = done.attempts
    assert (first.outcome, first.http_status, second.outcome) == ("retrying", 429, "delivered")
    assert first.next_attempt_at is not None and first.next_attempt_at - first.at == timedelta(seconds=1)
    assert hook.received[1].at - hook.received[0].at >= 1.0  # never earlier than the receiver asked


def test_timeouts_are_retried(store: Store) -> None:
    with WebhookReceiver(lambda n: Reply(200, delay_s=30.0) if n == 0 else Reply(200)) as hook:
        add_requests(store, "boost", ok=0, errors=2)
        done = check_once(store, alert_config(receiver(hook.url), timeout="1s"), deliver_within_s=60)
    first, *_, last = done.attempts
    assert (first.outcome, first.http_status) == ("retrying", None)
    assert first.error == "timeout: receiver oncall did not answer within 1s"
    assert (last.outcome, last.http_status) == ("delivered", 200) and done.undelivered == 0


def test_a_receiver_that_is_down_gets_the_notification_when_it_is_back(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook/token-in-the-path"
    config = alert_config(receiver(url))
    add_requests(store, "boost", ok=0, errors=2)
    with caplog.at_level(logging.DEBUG):
        down = check_once(store, config, deliver_within_s=1.0)
    assert down.undelivered == 1 and len(down.attempts) >= 1
    assert {(a.outcome, a.http_status, a.error) for a in down.attempts} == {
        ("retrying", None, "ConnectError: All connection attempts failed")
    }
    with WebhookReceiver(port=port) as hook:
        back = check_once(store, config)  # nothing new to evaluate: the outbox in the store is what is delivered
    assert back.evaluation.changes == [] and [a.outcome for a in back.attempts] == ["delivered"]
    assert back.attempts[0].attempt == len(down.attempts) + 1
    (got,) = hook.received
    assert got.json()["alerts"][0]["labels"]["pool"] == "boost" and reference_verify(SECRET, got.headers, got.body)
    # neither the secret nor the URL (a Slack-style URL is a secret too) is in the logs or the store
    errors = json.dumps(store.query("SELECT * FROM alerts").to_pylist(), default=str)
    for text in (caplog.text, errors):
        assert "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" not in text and "token-in-the-path" not in text


def test_a_burst_of_1000_alerts_is_grouped_and_none_is_lost(store: Store) -> None:
    pools = [f"pool-{i:04d}" for i in range(1000)]
    start = datetime.now(UTC) - timedelta(seconds=30)
    store.append("requests", [{"id": p, "pool": p, "revision": "r1", "source": "load", "started_at": start,
                               "status": "error"} for p in pools])  # fmt: skip
    with (
        WebhookReceiver(lambda n: Reply(500) if n < 2 else Reply(200)) as whole,
        WebhookReceiver(lambda n: Reply(503) if n % 2 == 0 else Reply(200)) as split,
    ):
        config = alert_config(receiver(whole.url, name="whole"), receiver(split.url, name="split", max_alerts=300))
        done = check_once(store, config, deliver_within_s=60)
    assert len(done.evaluation.changes) == 1000 and done.undelivered == 0
    assert len(whole.received) == 3 and [len(r.json()["alerts"]) for r in whole.delivered()] == [1000]
    assert [len(r.json()["alerts"]) for r in split.delivered()] == [300, 300, 300, 100]
    for hook in (whole, split):
        delivered = [a["labels"]["pool"] for r in hook.delivered() for a in r.json()["alerts"]]
        assert sorted(delivered) == pools  # each alert exactly once
        assert {r.json()["groupKey"] for r in hook.delivered()} == {'{}:{alertname="ErrorsHigh"}'}


def test_a_receiver_removed_from_the_config_fails_its_pending_notifications(store: Store) -> None:
    add_requests(store, "boost", ok=0, errors=2)
    check_once(store, alert_config(receiver(f"http://127.0.0.1:{free_port()}/h")), deliver_within_s=0.1)
    done = check_once(store, alert_config())
    assert [(a.outcome, a.error) for a in done.attempts] == [("failed", "receiver oncall is not configured")]


# the retry decision, on its own

POLICY = DeliveryPolicy(initial_backoff=1.0, max_backoff=30.0, give_up_after=3600.0)
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def pending(attempts: int, made: datetime = T0, waited_s: float = 0.0) -> Pending:
    n = Notification("msg_1", "r", "{}:{}", "firing", "X", 1, "{}", made)  # type: ignore[arg-type]
    return Pending(n, attempts, None, waited_s)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (500, 30.0)):
        waits = [backoff_s(POLICY, attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling
        assert max(waits) - min(waits) > ceiling / 4  # jittered, not one fixed delay


@pytest.mark.parametrize(
    ("answer", "outcome", "wait_s"),
    [
        (Answer(204, None), Outcome.delivered, None),
        (Answer(404, "HTTP 404"), Outcome.failed, None),
        (Answer(301, "HTTP 301"), Outcome.failed, None),
        (Answer(429, "HTTP 429", "7"), Outcome.retrying, 7.0),
        (Answer(503, "HTTP 503", "Sun, 22 Nov 2026 12:00:30 GMT"), Outcome.retrying, 30.0),
        (Answer(500, "HTTP 500", "7"), Outcome.retrying, "backoff"),  # Retry-After only counts on 429 and 503
        (Answer(None, "ConnectError"), Outcome.retrying, "backoff"),
    ],
)
def test_outcome_of_an_answer(answer: Answer, outcome: Outcome, wait_s: float | str | None) -> None:
    got, next_at, error = outcome_of(POLICY, pending(2), answer, T0, random.Random(1))
    assert got is outcome and error == answer.error
    if wait_s is None:
        assert next_at is None
    elif wait_s == "backoff":  # third attempt: within [2, 4] s
        assert next_at is not None and 2.0 <= (next_at - T0).total_seconds() <= 4.0
    else:
        assert next_at == T0 + timedelta(seconds=float(wait_s))


def test_a_notification_expires_after_give_up_after_of_retries() -> None:
    # 3590 s of waits so far; the next (attempt 10: at least 15 s of the 30 s cap) would pass 3600 s
    got, next_at, error = outcome_of(POLICY, pending(9, waited_s=3590), Answer(502, "HTTP 502"), T0, random.Random(1))
    assert (got, next_at) == (Outcome.expired, None)
    assert error == "HTTP 502; still undelivered after 3600s of retries"
    # made long ago by the clock (a collector that was down, a clock stepped forward), hardly retried: not yet
    got, _, _ = outcome_of(POLICY, pending(1, made=T0 - timedelta(days=3), waited_s=1.0), Answer(502, "HTTP 502"),
                           T0, random.Random(1))  # fmt: skip
    assert got is Outcome.retrying


def test_retry_after_values() -> None:
    assert retry_after_s("120", T0, 600) == 120.0
    assert retry_after_s("Sun, 22 Nov 2026 11:59:00 GMT", T0, 600) == 0.0  # a date already past: at once
    assert retry_after_s("soon", T0, 600) is None and retry_after_s(None, T0, 600) is None
