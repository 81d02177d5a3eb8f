"""Hostile webhook receivers and clocks against alert delivery (issue 17, "alert delivery that nothing can wedge"),
and stored data against Slack mrkdwn (issue 17 item 7).

Receivers are real HTTP servers on loopback (collector/alerts/receiver.py), the store a real DuckDB file. Each
case asserts what the receiver was answered or sent (the status), the error recorded, the row in `alerts`, and
that delivery still works after (a healthy receiver delivered, a later check resumes). Time bounds are generous
and always far from the value the old behaviour would take (the slow receiver's deadline, the hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.alerts.deliverer import Deliverer
from collector.alerts.delivery import Answer, Outcome, outcome_of, retry_after_s
from collector.alerts.evaluate import Sample, evaluate
from collector.alerts.job import AlertJob, check_once, evaluate_once
from collector.alerts.outbox import Pending, due, load_pending
from collector.alerts.payload import Notification, notifications, slack_escape
from collector.alerts.receiver import Reply, WebhookReceiver
from collector.alerts.rules import AlertConfig, DeliveryPolicy
from collector.alerts.signing import SignatureError, verify, webhook_headers
from collector.store.api import Store
from tests.collector.alerts.test_delivery import add_requests, alert_config, receiver

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CAP = 600.0  # DeliveryPolicy.max_retry_after's default


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def attempt_rows(store: Store) -> list[dict[str, Any]]:
    return store.query(
        "SELECT receiver, notification_id, attempt, status, http_status, error, recorded_at, next_attempt_at "
        "FROM alerts WHERE notification_id IS NOT NULL ORDER BY recorded_at, attempt"
    ).to_pylist()


# Retry-After in every form


@pytest.mark.parametrize(
    ("header", "wait_s"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),  # not RFC delta-seconds, but unambiguous
        ("0", 0.0),
        ("99999999999999", CAP),  # made timedelta() overflow: the whole round raised
        (str(10**30), CAP),
        ("1" + "0" * 400, CAP),  # float('1e400') is inf
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),  # past: at once
        ("Fri, 31 Dec 9999 23:59:59 GMT", CAP),  # next_at would be past datetime.max
        ("Sun, 22 Nov 2026 12:00:30 -0000", None),  # a date of unknown zone
        ("5, 10", 10.0),  # several values (two headers joined): the longest
        ("5, soon", None),
        ("-5", None),
        ("-0", None),
        ("inf", None),
        ("nan", None),
        ("1e3", None),
        ("\u00b2", None),  # '²'.isdigit() is True and float('²') raised ValueError
        ("\u0661\u0662", None),  # Arabic-Indic digits
        ("", None),
        ("   ", None),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_in_every_form_is_capped(header: str | None, wait_s: float | None) -> None:
    assert retry_after_s(header, T0, CAP) == wait_s


@settings(max_examples=400, deadline=None)
@given(header=st.one_of(st.text(), st.from_regex(r"\A[0-9., -]{0,40}\Z"), st.integers().map(str)))
def test_any_retry_after_gives_a_wait_within_the_cap_and_never_raises(header: str) -> None:
    wait = retry_after_s(header, T0, CAP)
    assert wait is None or 0.0 <= wait <= CAP
    policy = DeliveryPolicy()
    n = Notification("msg_1", "r", "{}:{}", "firing", "X", 1, "{}", T0)  # type: ignore[arg-type]
    outcome, next_at, _ = outcome_of(policy, Pending(n, 1, None), Answer(429, "HTTP 429", header), T0,
                                     random.Random(0))  # fmt: skip
    assert outcome is Outcome.retrying and next_at is not None
    assert timedelta(0) <= next_at - T0 <= timedelta(seconds=CAP)


def test_a_huge_retry_after_is_recorded_and_the_healthy_receiver_still_gets_its_notification(store: Store) -> None:
    with (
        WebhookReceiver(lambda n: Reply(429, {"Retry-After": "99999999999999"})) as hostile,
        WebhookReceiver() as healthy,
    ):
        config = alert_config(receiver(hostile.url, name="hostile"), receiver(healthy.url, name="healthy"),
                              max_retry_after="30s")  # fmt: skip
        add_requests(store, "boost", ok=0, errors=2)
        done = check_once(store, config, deliver_within_s=0.5)  # raised OverflowError before: nothing recorded
        again = check_once(store, config, deliver_within_s=0.5)  # the 30 s wait is not over: nothing re-sent
    assert done.undelivered == 1 and again.attempts == [] and again.undelivered == 1
    rows = {r["receiver"]: r for r in attempt_rows(store)}
    assert sorted(rows) == ["healthy", "hostile"]
    assert (rows["healthy"]["status"], rows["healthy"]["http_status"]) == ("delivered", 200)
    h = rows["hostile"]
    assert (h["status"], h["http_status"], h["error"]) == ("retrying", 429, "HTTP 429")
    assert h["next_attempt_at"] - h["recorded_at"] == timedelta(seconds=30)  # cut to max_retry_after
    assert [r.status for r in hostile.received] == [429] and len(healthy.delivered()) == 1


def test_a_receiver_url_that_cannot_be_connected_is_that_attempts_error_not_the_rounds(store: Store) -> None:
    with WebhookReceiver() as healthy:
        config = alert_config(receiver("http://127.0.0.1:99999/hook/token-in-path", name="badport"),
                              receiver(healthy.url, name="healthy"))  # fmt: skip
        add_requests(store, "boost", ok=0, errors=2)
        done = check_once(store, config, deliver_within_s=0.2)
    rows = {r["receiver"]: r for r in attempt_rows(store)}
    assert (rows["healthy"]["status"], rows["healthy"]["http_status"]) == ("delivered", 200)
    bad = rows["badport"]
    assert (bad["status"], bad["http_status"]) == ("retrying", None)
    assert bad["error"] == "OverflowError: connect(): port must be 0-65535."  # in an ExceptionGroup: it raised
    assert done.undelivered == 1 and len(healthy.delivered()) == 1


# a total deadline per attempt


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_attempt_deadline(store: Store) -> None:
    body = b"x" * 60  # a byte every 0.25 s: 15 s, and never 1 s without a byte (httpx's timeout is per read)
    with (
        WebhookReceiver(lambda n: Reply(503, body=body, trickle_s=0.25)) as refusing,
        WebhookReceiver(lambda n: Reply(200, body=body, trickle_s=0.25)) as accepting,
    ):
        # 3 s: time for the status line even on a busy machine, far below the trickle's 15 s
        config = alert_config(receiver(refusing.url, name="refusing"), receiver(accepting.url, name="accepting"),
                              timeout="3s")  # fmt: skip
        add_requests(store, "boost", ok=0, errors=2)
        started = time.monotonic()
        done = check_once(store, config, deliver_within_s=0.1)
        took = time.monotonic() - started
    assert took < 8.0  # each attempt ends at its 3 s deadline; reading the trickle took 15 s
    rows = {r["receiver"]: r for r in attempt_rows(store)}
    # 2xx: the status line is the answer, the body is not waited for
    assert (rows["accepting"]["status"], rows["accepting"]["http_status"]) == ("delivered", 200)
    cut = rows["refusing"]
    assert (cut["status"], cut["http_status"]) == ("retrying", 503)
    assert cut["error"] == "HTTP 503 (the rest of the answer did not come within 3s)"
    assert done.undelivered == 1


def test_a_slow_receiver_does_not_delay_a_healthy_one(store: Store) -> None:
    # the healthy receiver answers 500 once: its retry (after ~20 ms) used to wait for the slow one's 8 s
    with (
        WebhookReceiver(lambda n: Reply(200, delay_s=60.0)) as slow,
        WebhookReceiver(lambda n: Reply(500) if n == 0 else Reply(200)) as healthy,
    ):
        config = alert_config(receiver(slow.url, name="slow"), receiver(healthy.url, name="healthy"), timeout="8s")
        add_requests(store, "boost", ok=0, errors=2)
        done = check_once(store, config, deliver_within_s=3.0)
    first, second = healthy.received
    assert (first.status, second.status) == (500, 200)
    assert second.at - first.at < 3.0  # well under the slow receiver's 8 s deadline
    rows = attempt_rows(store)
    assert [(r["receiver"], r["attempt"], r["status"], r["http_status"]) for r in rows] == [
        ("healthy", 1, "retrying", 500), ("healthy", 2, "delivered", 200), ("slow", 1, "retrying", None),
    ]  # fmt: skip
    assert rows[-1]["error"] == "timeout: receiver slow did not answer within 8s"
    assert done.undelivered == 1


# shutdown within its grace period


def test_stop_returns_within_the_grace_period_while_a_receiver_hangs(store: Store) -> None:
    add_requests(store, "boost", ok=0, errors=2)
    with WebhookReceiver(lambda n: Reply(200, delay_s=120.0)) as hanging:
        config = alert_config(receiver(hanging.url), timeout="60s")
        job = AlertJob(store, config, interval_s=0.2, grace_s=2.0)

        async def run_then_stop() -> float:
            stop = asyncio.Event()
            running = asyncio.create_task(job.run(stop))
            for _ in range(300):
                if hanging.received:
                    break
                await asyncio.sleep(0.1)
            assert hanging.received, "the attempt never reached the receiver"
            stopped = time.monotonic()
            stop.set()
            await running
            return time.monotonic() - stopped

        took = asyncio.run(run_then_stop())
        port = hanging.port
    assert took < 2.0 + 3.0  # the grace, with room for a loaded machine; the attempt's own deadline is 60 s
    (row,) = attempt_rows(store)
    assert (row["status"], row["http_status"], row["attempt"]) == ("retrying", None, 1)
    assert row["error"] == "cut off at shutdown after 2s; resumed by the next process"
    assert row["next_attempt_at"] == row["recorded_at"]  # due at once for the next process
    # the next process resumes it: the same notification, attempt 2
    with WebhookReceiver(port=port) as back:
        resumed = check_once(store, config)
    assert [(a.attempt, a.outcome, a.http_status) for a in resumed.attempts] == [(2, "delivered", 200)]
    assert back.received[0].headers["webhook-id"] == hanging.received[0].headers["webhook-id"]


# alert state by sequence, not by the wall clock


def test_a_clock_step_back_neither_re_notifies_nor_shortens_for(store: Store) -> None:
    now = datetime.now(UTC)
    store.append("requests", [{"id": f"e{i}", "pool": "boost", "revision": "r1", "source": "load", "status": "error",
                               "started_at": now - timedelta(minutes=5)} for i in range(2)])  # fmt: skip
    store.append("drift", [{"run_id": "c1", "pool": "boost", "metric": "greedy_hard_mismatch", "value": 1.0,
                            "verdict": "drift", "recorded_at": now - timedelta(minutes=5)}])  # fmt: skip
    rules = {"rules": [{"name": "ErrorsHigh", "metric": "error_rate", "window": "1h", "condition": "> 0.05"},
                       {"name": "Drifting", "metric": "drift", "condition": "> 0", "for": "10m"}],
             "delivery": {"initial_backoff": "20ms", "poll": "50ms"}}  # fmt: skip

    def at(minutes: float) -> list[tuple[str, str | None, str]]:
        done = check_once(store, config, now=now + timedelta(minutes=minutes))
        assert done.undelivered == 0
        return [(c.alert.rule, c.previous, c.alert.status.value) for c in done.evaluation.changes]

    with WebhookReceiver() as hook:
        config = AlertConfig.model_validate({**rules, "receivers": [receiver(hook.url)]})
        assert at(10) == [("ErrorsHigh", None, "firing"), ("Drifting", None, "pending")]
        ok = [{"id": f"ok{i}", "pool": "boost", "revision": "r1", "source": "load", "status": "ok",
               "started_at": now - timedelta(minutes=5)} for i in range(98)]  # fmt: skip
        store.append("requests", ok)
        assert at(0) == [("ErrorsHigh", "firing", "resolved")]  # the clock stepped back 10 minutes
        assert at(1) == [] and at(2) == []  # used to resolve again (with a new webhook-id) at every evaluation
        assert at(15) == []  # pending since minute 10: 5 of the 10 minutes `for`
        assert at(20) == [("Drifting", "pending", "firing")]
        assert at(180) == []  # a step forward: no data in the window keeps the state; repeat_interval is 4 h
    assert [(r.json()["alerts"][0]["labels"]["alertname"], r.json()["status"]) for r in hook.received] == [
        ("ErrorsHigh", "firing"), ("ErrorsHigh", "resolved"), ("Drifting", "firing"),
    ]  # fmt: skip
    assert len({r.headers["webhook-id"] for r in hook.received}) == 3
    states = store.query("SELECT rule, status, seq FROM alerts WHERE notification_id IS NULL ORDER BY seq")
    assert [(r["rule"], r["status"], r["seq"]) for r in states.to_pylist()] == [
        ("ErrorsHigh", "firing", 1), ("Drifting", "pending", 2), ("ErrorsHigh", "resolved", 3),
        ("Drifting", "firing", 4),
    ]  # fmt: skip


class SteppedClock:
    """The wall clock, moved by `offset` (an NTP step, a VM restored from a snapshot)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def deliver_twice(store: Store, config: AlertConfig, step: timedelta) -> tuple[list[str], list[str]]:
    """Outcomes of a first drain, then, after the clock steps by `step`, of a second."""
    clock = SteppedClock()

    async def go() -> tuple[list[str], list[str]]:
        deliverer = Deliverer(store, config, clock=clock)
        try:
            first, _ = await deliverer.drain(0.0)
            clock.offset = step
            second, _ = await deliverer.drain(5.0)
        finally:
            await deliverer.aclose()
        return [a.outcome for a in first], [a.outcome for a in second]

    return asyncio.run(go())


def test_a_retry_scheduled_before_a_clock_step_back_is_not_put_off(store: Store) -> None:
    with WebhookReceiver(lambda n: Reply(500) if n == 0 else Reply(200)) as hook:
        config = alert_config(receiver(hook.url))
        add_requests(store, "boost", ok=0, errors=2)
        evaluate_once(store, config, datetime.now(UTC))
        # the retry was due ~20 ms after the first attempt; an hour back it used to wait an hour
        assert deliver_twice(store, config, -timedelta(hours=1)) == (["retrying"], ["delivered"])
    assert [r.status for r in hook.received] == [500, 200] and load_pending(store) == []


def test_a_clock_step_forward_does_not_expire_a_notification(store: Store) -> None:
    with WebhookReceiver(lambda n: Reply(500)) as hook:
        config = alert_config(receiver(hook.url), give_up_after="1h")
        add_requests(store, "boost", ok=0, errors=2)
        evaluate_once(store, config, datetime.now(UTC))
        first, second = deliver_twice(store, config, timedelta(days=3))
    assert first == ["retrying"] and second[0] == "retrying"  # used to expire: "made" 3 days before
    assert all(r.status == 500 for r in hook.received)
    (left,) = load_pending(store)
    assert left.attempts >= 2 and left.waited_s < 10.0  # the waits it was given, not the clock's jump


def test_due_treats_a_retry_time_past_the_longest_wait_as_a_clock_step() -> None:
    n = Notification("msg_1", "r", "{}:{}", "firing", "X", 1, "{}", T0)  # type: ignore[arg-type]
    soon, stepped = Pending(n, 1, T0 + timedelta(seconds=30)), Pending(n, 1, T0 + timedelta(hours=2))
    assert due([soon], T0, CAP) == ([], T0 + timedelta(seconds=30))
    assert due([stepped], T0, CAP) == ([stepped], None)
    assert due([stepped], T0, CAP, busy={"msg_1"}) == ([], None)  # an attempt in flight: not started twice


# the receiver-side verify helper

KEY = b"0123456789abcdef0123456789abcdef"
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
NAMES = st.one_of(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "Webhook-Signature"]),
                  st.text(max_size=10))  # fmt: skip
VALUES = st.one_of(st.text(max_size=60), st.binary(max_size=20), st.integers(), st.none(), st.floats(),
                   st.just("9" * 5000), st.just("v1,@@not-base64@@"))  # fmt: skip
ANYTHING = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=20),
                     st.booleans(), st.lists(st.integers(), max_size=3))  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(
    key=st.one_of(st.binary(max_size=40), ANYTHING),
    headers=st.one_of(
        st.dictionaries(NAMES, VALUES, max_size=5),
        st.lists(st.tuples(NAMES, VALUES), max_size=6),
        st.lists(ANYTHING, max_size=3),
        ANYTHING,
    ),
    body=st.one_of(st.binary(max_size=40), ANYTHING),
    now_s=st.one_of(st.integers(min_value=-(10**400), max_value=10**400), st.floats(), ANYTHING),
)
def test_verify_raises_nothing_but_its_own_error(key: Any, headers: Any, body: Any, now_s: Any) -> None:
    with contextlib.suppress(SignatureError):
        verify(key, headers, body, now_s=now_s)


@settings(max_examples=300, deadline=None)
@given(msg_id=TEXT, timestamp=st.integers(min_value=0, max_value=10**12 - 1), body=st.binary(max_size=200),
       skew=st.integers(min_value=-300, max_value=300), flip=st.integers(min_value=0, max_value=199))  # fmt: skip
def test_verify_accepts_every_true_signature_and_refuses_any_changed_byte(
    msg_id: str, timestamp: int, body: bytes, skew: int, flip: int
) -> None:
    headers = webhook_headers(KEY, msg_id, timestamp, body)
    verify(KEY, headers, body, now_s=timestamp + skew)
    verify(KEY, list(headers.items()), body, now_s=float(timestamp))  # as (name, value) pairs
    if body:
        changed = bytearray(body)
        changed[flip % len(body)] ^= 0x01
        with pytest.raises(SignatureError, match="no v1 signature matches"):
            verify(KEY, headers, bytes(changed), now_s=timestamp)


@pytest.mark.parametrize(
    ("key", "headers", "body", "now_s", "message"),
    [
        (
            KEY,
            [("webhook-id", "a"), ("webhook-id", "b"), ("webhook-timestamp", "1"), ("webhook-signature", "v1,x")],
            b"{}",
            1,
            "header webhook-id is given 2 times; send it once",
        ),
        (
            KEY,
            {"webhook-id": "a", "webhook-timestamp": "9" * 5000, "webhook-signature": "v1,x"},
            b"{}",
            1,
            "webhook-timestamp '9999999999999999999999999999999999999999' is not integer Unix seconds",
        ),
        (
            KEY,
            {"webhook-id": "a", "webhook-timestamp": "\u0661", "webhook-signature": "v1,x"},
            b"{}",
            1,
            "is not integer Unix seconds",
        ),
        (
            KEY,
            {"webhook-id": "a", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
            b"{}",
            10**400,
            "now_s must be a finite number",
        ),
        (
            KEY,
            {"webhook-id": "a", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
            b"{}",
            math.nan,
            "now_s must be a finite number",
        ),
        (
            KEY,
            {"webhook-id": "a", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
            "{}",
            1,
            "the body must be the raw bytes received, not str",
        ),
        (
            "whsec_abc",
            {"webhook-id": "a", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
            b"{}",
            1,
            "the key must be non-empty bytes",
        ),
        (
            KEY,
            {"webhook-id": 7, "webhook-timestamp": "1", "webhook-signature": "v1,x"},
            b"{}",
            1,
            "header names and values must be strings",
        ),
        (
            KEY,
            {"webhook-id": "\ud800", "webhook-timestamp": "1", "webhook-signature": "v1,x"},
            b"{}",
            1,
            "header 'webhook-id': its value is not text",
        ),
        (KEY, "webhook-id: a", b"{}", 1, "headers must be a mapping or"),
    ],
)
def test_verify_names_what_is_wrong(key: Any, headers: Any, body: Any, now_s: Any, message: str) -> None:
    with pytest.raises(SignatureError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify(key, headers, body, now_s=now_s)


def test_a_signature_header_given_twice_counts_both() -> None:
    headers = webhook_headers(KEY, "msg_1", 1_800_000_000, b"{}")
    pairs = [(k, v) for k, v in headers.items() if k != "webhook-signature"]
    verify(KEY, [*pairs, ("webhook-signature", "v1,bm9wZQ=="), ("webhook-signature", headers["webhook-signature"])],
           b"{}", now_s=1_800_000_000)  # fmt: skip


# Slack mrkdwn: what comes from stored data is shown, never interpreted

HOSTILE = "<!channel> *b* _i_ ~s~ `c` & <http://evil|click>\n\u2022 pool=ref (critical): all fine"
SHOWN = (
    "&lt;!channel&gt; \u2217b\u2217 \uff3fi\uff3f \u223cs\u223c \u02cbc\u02cb &amp; &lt;http://evil|click&gt; "
    "\u2022 pool=ref (critical): all fine"
)


def test_slack_escape_by_hand() -> None:
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert slack_escape("&amp;") == "&amp;amp;"  # escaped once more: shown as typed
    assert slack_escape("<@U123> <#C1|general>") == "&lt;@U123&gt; &lt;#C1|general&gt;"
    assert slack_escape("line\r\nbreak\u2028here") == "line  break here"
    assert slack_escape(HOSTILE) == SHOWN


def test_slack_notifications_escape_labels_annotations_and_reasons() -> None:
    config = AlertConfig.model_validate({
        "rules": [{"name": "Errors", "metric": "error_rate", "condition": "> 0.05", "severity": "critical",
                   "annotations": {"summary": "{{ $labels.pool }} fails"}}],
        "receivers": [{"name": "chat", "url": "http://127.0.0.1:9/chat", "format": "slack", "group_by": ["pool"]},
                      {"name": "am", "url": "http://127.0.0.1:9/am"}],
    })  # fmt: skip
    changes = evaluate(config, {"Errors": [Sample({"pool": HOSTILE, "revision": "r*1*"}, 0.5, "`x`")]}, [], T0)
    chat, am = notifications(config, changes, T0, "", iter(["msg_1", "msg_2"]).__next__)
    assert json.loads(chat.body) == {
        "text": f"[FIRING:1] pool={SHOWN}\n\u2022 pool={SHOWN} revision=r\u22171\u2217 (critical): {SHOWN} fails"
    }
    (alert,) = json.loads(am.body)["alerts"]  # the Alertmanager payload is for programs: exact values
    assert alert["labels"]["pool"] == HOSTILE and alert["annotations"]["reason"] == "error_rate 0.5 > 0.05 (`x`)"
    no_summary = config.model_copy(update={"rules": (config.rules[0].model_copy(update={"annotations": {}}),)})
    chat, _ = notifications(no_summary, evaluate(no_summary, {"Errors": [Sample({"pool": "p"}, 0.5, "<!here>")]},
                                                 [], T0), T0, "", iter(["m3", "m4"]).__next__)  # fmt: skip
    assert json.loads(chat.body)["text"] == (
        "[FIRING:1] pool=p\n\u2022 pool=p (critical): error\uff3frate 0.5 &gt; 0.05 (&lt;!here&gt;)"
    )
