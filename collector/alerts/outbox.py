"""What the alerts keep in the store, append-only, so that any process (the collector, `inferwatch alerts
check`) and any restart carries on where the last one stopped.

- `alerts`, receiver NULL: one row per state change of an alert (status pending, firing, resolved or inactive;
  payload_json: labels, annotations, value, since when, why). An alert's state is its row with the highest
  `seq`: one more than the highest in the store, read by the one evaluator (the alert lease's holder), so the
  order survives restarts and clock steps (ordering by recorded_at, a clock step back re-notified a resolved
  alert at every evaluation). Rows written before `seq` existed come first, in recorded_at order.
- `alert_outbox`: one row per notification to deliver, with its body as sent.
- `alerts`, notification_id set: one row per delivery attempt (status delivered, retrying, failed or expired;
  attempt number, HTTP status, error, when the next attempt is due). fingerprint holds the notification's
  group key and rule its alertnames. A notification is pending until an attempt is not `retrying`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from collector.alerts.evaluate import ACTIVE, Alert, AlertStatus, Change
from collector.alerts.payload import Notification
from collector.store.protocols import StoreLike


@dataclass(frozen=True)
class Pending:
    """An outbox notification not delivered yet, with what its attempts so far left."""

    notification: Notification
    attempts: int
    next_attempt_at: datetime | None  # None: never tried
    waited_s: float = 0.0  # the waits its attempts were given so far (each measured at one instant)


@dataclass(frozen=True)
class AttemptRecord:
    notification_id: str
    receiver: str
    group_key: str
    rules: str
    attempt: int
    outcome: str  # delivery.Outcome
    http_status: int | None
    error: str | None
    at: datetime
    next_attempt_at: datetime | None  # when retrying


def state_rows(changes: Iterable[Change], now: datetime, first_seq: int) -> list[dict[str, Any]]:
    """The state rows of an evaluation, numbered from `first_seq` (next_seq) in the order of the changes."""
    return [
        {"fingerprint": c.alert.fingerprint, "rule": c.alert.rule, "status": c.alert.status.value,
         "payload_json": c.alert.to_json(), "recorded_at": now, "seq": first_seq + i}
        for i, c in enumerate(changes)
    ]  # fmt: skip


def outbox_rows(notifications: Iterable[Notification]) -> list[dict[str, Any]]:
    return [
        {"notification_id": n.notification_id, "receiver": n.receiver, "group_key": n.group_key,
         "status": n.status.value, "rules": n.rules, "alerts": n.alerts, "body": n.body, "created_at": n.created_at}
        for n in notifications
    ]  # fmt: skip


def attempt_rows(attempts: Iterable[AttemptRecord]) -> list[dict[str, Any]]:
    return [
        {"fingerprint": a.group_key, "rule": a.rules, "status": a.outcome, "receiver": a.receiver,
         "attempt": a.attempt, "http_status": a.http_status, "error": a.error, "recorded_at": a.at,
         "notification_id": a.notification_id, "next_attempt_at": a.next_attempt_at}
        for a in attempts
    ]  # fmt: skip


_ACTIVE_SQL = f"""
SELECT fingerprint, rule, status, payload_json FROM (
    SELECT fingerprint, rule, status, payload_json, row_number() OVER (
        PARTITION BY fingerprint ORDER BY seq DESC NULLS LAST, recorded_at DESC) AS latest
    FROM alerts WHERE notification_id IS NULL
) WHERE latest = 1 AND status IN ({", ".join(f"'{s}'" for s in ACTIVE)})
ORDER BY fingerprint
"""


def load_active(store: StoreLike) -> list[Alert]:
    """The pending and firing alerts, as their latest state rows (highest seq) say."""
    return [Alert.from_row(**row) for row in store.query(_ACTIVE_SQL).to_pylist()]


def next_seq(store: StoreLike) -> int:
    """The seq of the next state row: one more than any in the store (call it as the one evaluator)."""
    value = store.query("SELECT max(seq) AS seq FROM alerts WHERE notification_id IS NULL").column("seq")[0]
    return int(value.as_py() or 0) + 1


_PENDING_SQL = """
WITH tried AS (
    SELECT notification_id, max(attempt) AS attempts, arg_max(status, attempt) AS outcome,
        arg_max(next_attempt_at, attempt) AS next_attempt_at,
        sum(greatest(epoch(next_attempt_at) - epoch(recorded_at), 0)) AS waited_s
    FROM alerts WHERE notification_id IS NOT NULL GROUP BY notification_id
)
SELECT o.*, coalesce(t.attempts, 0) AS attempts, t.next_attempt_at, coalesce(t.waited_s, 0) AS waited_s
FROM alert_outbox o LEFT JOIN tried t USING (notification_id)
WHERE t.outcome IS NULL OR t.outcome = 'retrying'
ORDER BY o.created_at, o.notification_id
"""


def load_pending(store: StoreLike) -> list[Pending]:
    """Every notification still to deliver, oldest first."""
    pending = []
    for row in store.query(_PENDING_SQL).to_pylist():
        attempts, next_at, waited = row.pop("attempts"), row.pop("next_attempt_at"), row.pop("waited_s")
        notification = Notification(**{**row, "status": AlertStatus(row["status"])})
        pending.append(Pending(notification, attempts, next_at, float(waited)))
    return pending


def due(
    pending: Sequence[Pending], now: datetime, max_wait_s: float, busy: Collection[str] = ()
) -> tuple[list[Pending], datetime | None]:
    """What to attempt now: per receiver and group only the oldest pending notification (a resolved one never
    overtakes the firing one before it), when its retry time has come and no attempt of it is in flight
    (`busy`: notification ids). A retry time more than `max_wait_s` (the longest wait any answer schedules)
    ahead was scheduled before the clock stepped back: it is due now, not in an hour. Also when the next one
    falls due."""
    heads: dict[tuple[str, str], Pending] = {}
    for p in pending:
        heads.setdefault((p.notification.receiver, p.notification.group_key), p)
    free = [p for p in heads.values() if p.notification.notification_id not in busy]
    horizon = now + timedelta(seconds=max_wait_s)

    def is_due(p: Pending) -> bool:
        return p.next_attempt_at is None or p.next_attempt_at <= now or p.next_attempt_at > horizon

    later = [p.next_attempt_at for p in free if not is_due(p) and p.next_attempt_at is not None]
    return [p for p in free if is_due(p)], min(later, default=None)
