"""One delivery attempt of a notification, and what follows from its answer.

    2xx                         delivered
    timeout, no connection,     retrying: after Retry-After when a 429 or 503 gives one (seconds or an HTTP
    429, 5xx                    date), else exponential backoff with jitter: d = min(max_backoff,
                                initial_backoff * 2^(attempt-1)), wait uniform in [d/2, d]
    any other answer (4xx, 3xx) failed: the receiver refused it, a retry would not change that
    retrying past give_up_after expired (counted from when the notification was made)

Errors name the receiver, never its URL (a Slack-style URL is itself a secret) or its key.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx

from collector.alerts.outbox import AttemptRecord, Pending
from collector.alerts.rules import DeliveryPolicy, Receiver
from collector.alerts.signing import webhook_headers


class Outcome(StrEnum):
    """What became of an attempt (the `status` of its row in `alerts`)."""

    delivered = "delivered"  # 2xx
    retrying = "retrying"  # another attempt is due at next_attempt_at
    failed = "failed"  # refused: not retried
    expired = "expired"  # still undelivered give_up_after after it was made


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status (None: no answer) and the reason in words."""

    status: int | None
    error: str | None  # None when delivered
    retry_after: str | None = None  # the Retry-After header, as given


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(float((moment - now).total_seconds()), 0.0) if moment.tzinfo else None


def backoff_s(policy: DeliveryPolicy, attempt: int, rng: random.Random) -> float:
    """The wait after failed attempt number `attempt` (1-based)."""
    ceiling = min(policy.max_backoff, policy.initial_backoff * 2.0 ** min(attempt - 1, 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


def is_retryable(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


def outcome_of(
    policy: DeliveryPolicy, pending: Pending, answer: Answer, at: datetime, rng: random.Random
) -> tuple[Outcome, datetime | None, str | None]:
    """The outcome of an attempt made at `at`, when to try again, and the error to record."""
    status = answer.status
    if status is not None and 200 <= status < 300:
        return Outcome.delivered, None, None
    if not is_retryable(status):
        return Outcome.failed, None, answer.error
    attempt = pending.attempts + 1
    wait = retry_after_s(answer.retry_after, at) if status in (429, 503) else None
    next_at = at + timedelta(seconds=wait if wait is not None else backoff_s(policy, attempt, rng))
    deadline = pending.notification.created_at + timedelta(seconds=policy.give_up_after)
    if next_at > deadline:
        return Outcome.expired, None, f"{answer.error}; still undelivered {policy.give_up_after:g}s after it was made"
    return Outcome.retrying, next_at, answer.error


async def post(http: httpx.AsyncClient, receiver: Receiver, pending: Pending, at: datetime, timeout_s: float) -> Answer:
    n = pending.notification
    body = n.body.encode()
    headers = webhook_headers(receiver.key(), n.notification_id, int(at.timestamp()), body)
    try:
        response = await http.post(receiver.url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        text = f"{type(exc).__name__}: {exc}".rstrip(": ").replace(receiver.url, f"<receiver {receiver.name}>")
        return Answer(None, text)
    if 200 <= response.status_code < 300:
        return Answer(response.status_code, None)
    error = f"HTTP {response.status_code}: {response.text[:200]}".rstrip(": ")
    return Answer(response.status_code, error, response.headers.get("retry-after"))


async def attempt(
    http: httpx.AsyncClient, receiver: Receiver | None, pending: Pending, policy: DeliveryPolicy,
    clock: Callable[[], datetime], rng: random.Random,
) -> AttemptRecord:  # fmt: skip
    """Make one attempt and say what came of it (the retry time counts from the answer)."""
    n = pending.notification
    if receiver is None:
        answered, answer = clock(), Answer(None, f"receiver {n.receiver} is not configured")
        outcome, next_at, error = Outcome.failed, None, answer.error
    else:
        answer = await post(http, receiver, pending, clock(), policy.timeout)
        answered = clock()
        outcome, next_at, error = outcome_of(policy, pending, answer, answered, rng)
    return AttemptRecord(
        notification_id=n.notification_id, receiver=n.receiver, group_key=n.group_key, rules=n.rules,
        attempt=pending.attempts + 1, outcome=outcome.value, http_status=answer.status, error=error, at=answered,
        next_attempt_at=next_at,
    )  # fmt: skip
