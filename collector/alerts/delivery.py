"""One delivery attempt of a notification, and what follows from its answer.

    2xx                         delivered (the status line is enough: the answer's body is not read)
    timeout, no connection,     retrying: after Retry-After when a 429 or 503 gives one (seconds or an HTTP
    429, 5xx, anything else     date, cut to max_retry_after), else exponential backoff with jitter:
    that went wrong             d = min(max_backoff, initial_backoff * 2^(attempt-1)), wait uniform in [d/2, d]
    any other answer (4xx, 3xx) failed: the receiver refused it, a retry would not change that
    retried past give_up_after  expired (the sum of the waits its attempts were given, each measured at one
                                instant, so a clock step neither shortens nor lengthens it)

An attempt never raises and never lasts longer than `timeout`: connecting, sending and reading the answer
together (httpx's own timeout is per read, so a receiver that trickles a byte a second would never end).
Errors name the receiver, never its URL (a Slack-style URL is itself a secret) or its key; what a receiver
answers is cut to 200 characters of printable text before it reaches a log or the store.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum

import httpx

from collector.alerts.outbox import AttemptRecord, Pending
from collector.alerts.rules import DeliveryPolicy, Receiver
from collector.alerts.signing import webhook_headers

ERROR_CHARS = 200  # of a receiver's answer, in the error recorded
_DELTA_SECONDS = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")  # RFC 9110 delta-seconds (a fraction accepted)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


class Outcome(StrEnum):
    """What became of an attempt (the `status` of its row in `alerts`)."""

    delivered = "delivered"  # 2xx
    retrying = "retrying"  # another attempt is due at next_attempt_at
    failed = "failed"  # refused: not retried
    expired = "expired"  # retried give_up_after without being delivered


@dataclass(frozen=True)
class Answer:
    """What one attempt got: an HTTP status (None: no answer) and the reason in words."""

    status: int | None
    error: str | None  # None when delivered
    retry_after: str | None = None  # the Retry-After header, as given


def _one_retry_after(text: str, now: datetime) -> float | None:
    if _DELTA_SECONDS.match(text):
        return float(text)  # "99999999999999" is a finite float; cut by the caller
    try:
        moment = parsedate_to_datetime(text)
        # "-0000" is a date of unknown zone: unreadable
        return (moment - now).total_seconds() if moment.tzinfo is not None else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_after_s(value: str | None, now: datetime, cap_s: float) -> float | None:
    """Seconds to wait from a Retry-After header, in [0, cap_s]: delta-seconds (a fraction accepted) or an HTTP
    date (one past: 0). Several values (`5, 10`): the longest. None when absent, empty or unreadable (negative,
    `inf`, words): the caller's own backoff then. Never raises."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    wait = _one_retry_after(text, now)
    if wait is None and "," in text:
        parts = [_one_retry_after(p.strip(), now) for p in text.split(",")]
        if all(p is not None for p in parts):
            wait = max(p for p in parts if p is not None)
    if wait is None or math.isnan(wait):
        return None
    return min(max(wait, 0.0), cap_s)


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
    asked = retry_after_s(answer.retry_after, at, policy.max_retry_after) if status in (429, 503) else None
    wait = asked if asked is not None else backoff_s(policy, attempt, rng)
    if pending.waited_s + wait > policy.give_up_after:
        return Outcome.expired, None, f"{answer.error}; still undelivered after {policy.give_up_after:g}s of retries"
    return Outcome.retrying, at + timedelta(seconds=wait), answer.error


def printable(text: str, limit: int = ERROR_CHARS) -> str:
    """What a receiver sent, safe for a log line and the store: printable ASCII, at most `limit` characters."""
    return _UNPRINTABLE.sub(" ", text)[:limit].strip()


def _error_text(exc: BaseException, receiver: Receiver) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:  # anyio's connect wraps its error
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: {exc}".rstrip(": ").replace(receiver.url, f"<receiver {receiver.name}>")
    return printable(text, 2 * ERROR_CHARS)


async def _head(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the answer's body (a receiver may send gigabytes)."""
    got = b""
    async for chunk in response.aiter_raw():
        got += chunk
        if len(got) >= limit:
            break
    return got[:limit]


async def post(http: httpx.AsyncClient, receiver: Receiver, pending: Pending, at: datetime, timeout_s: float) -> Answer:
    """Send the notification; the whole exchange within `timeout_s`. Raises nothing but what the caller's
    cancellation raises."""
    n = pending.notification
    body = n.body.encode()
    headers = webhook_headers(receiver.key(), n.notification_id, int(at.timestamp()), body)
    status: int | None = None
    retry_after: str | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async with http.stream("POST", receiver.url, content=body, headers=headers, timeout=timeout_s) as response:
                status, retry_after = response.status_code, response.headers.get("retry-after")
                if 200 <= status < 300:
                    return Answer(status, None)
                text = printable((await _head(response, 4 * ERROR_CHARS)).decode("utf-8", "replace"))
    except (TimeoutError, httpx.TimeoutException):
        if status is not None:  # the status came, the rest of the answer did not
            return Answer(status, f"HTTP {status} (the rest of the answer did not come within {timeout_s:g}s)",
                          retry_after)  # fmt: skip
        return Answer(None, f"timeout: receiver {receiver.name} did not answer within {timeout_s:g}s")
    except Exception as exc:  # any failure a receiver can cause is this attempt's error, never the round's
        return Answer(status, _error_text(exc, receiver), retry_after)
    return Answer(status, f"HTTP {status}: {text}".rstrip(": "), retry_after)


async def attempt(
    http: httpx.AsyncClient, receiver: Receiver | None, pending: Pending, policy: DeliveryPolicy,
    clock: Callable[[], datetime], rng: random.Random,
) -> AttemptRecord:  # fmt: skip
    """Make one attempt and say what came of it (the retry time counts from the answer). Never raises."""
    n = pending.notification
    if receiver is None:
        answered, answer = clock(), Answer(None, f"receiver {n.receiver} is not configured")
        outcome, next_at, error = Outcome.failed, None, answer.error
    else:
        try:
            answer = await post(http, receiver, pending, clock(), policy.timeout)
        except Exception as exc:  # e.g. a key that no longer decodes: recorded, retried
            answer = Answer(None, _error_text(exc, receiver))
        answered = clock()
        outcome, next_at, error = outcome_of(policy, pending, answer, answered, rng)
    return AttemptRecord(
        notification_id=n.notification_id, receiver=n.receiver, group_key=n.group_key, rules=n.rules,
        attempt=pending.attempts + 1, outcome=outcome.value, http_status=answer.status, error=error, at=answered,
        next_attempt_at=next_at,
    )  # fmt: skip


def cut_off(pending: Pending, at: datetime, why: str) -> AttemptRecord:
    """The record of an attempt cut off (at shutdown): retrying at once, so the next process resumes it."""
    n = pending.notification
    return AttemptRecord(
        notification_id=n.notification_id, receiver=n.receiver, group_key=n.group_key, rules=n.rules,
        attempt=pending.attempts + 1, outcome=Outcome.retrying.value, http_status=None, error=why, at=at,
        next_attempt_at=at,
    )  # fmt: skip
