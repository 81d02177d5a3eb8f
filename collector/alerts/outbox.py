"""What the alerts keep in the store, append-only, so that any process (the collector, `inferwatch alerts
check`) and any restart carries on where the last one stopped.

- `alerts`, receiver NULL: one row per state change of an alert (status pending, firing, resolved or inactive;
  payload_json: labels, annotations, value, since when, why). An alert's state is its latest row.
- `alert_outbox`: one row per notification to deliver, with its body as sent.
- `alerts`, notification_id set: one row per delivery attempt (status delivered, retrying, failed or expired;
  attempt number, HTTP status, error, when the next attempt is due). fingerprint holds the notification's
  group key and rule its alertnames. A notification is pending until an attempt is not `retrying`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
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


def state_rows(changes: Iterable[Change], now: datetime) -> list[dict[str, Any]]:
    return [
        {"fingerprint": c.alert.fingerprint, "rule": c.alert.rule, "status": c.alert.status.value,
         "payload_json": c.alert.to_json(), "recorded_at": now}
        for c in changes
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
SELECT fingerprint, arg_max(rule, recorded_at) AS rule, arg_max(status, recorded_at) AS status,
    arg_max(payload_json, recorded_at) AS payload_json
FROM alerts WHERE notification_id IS NULL GROUP BY fingerprint
HAVING arg_max(status, recorded_at) IN ({", ".join(f"'{s}'" for s in ACTIVE)})
ORDER BY fingerprint
"""


def load_active(store: StoreLike) -> list[Alert]:
    """The pending and firing alerts, as their latest state rows say."""
    return [Alert.from_row(**row) for row in store.query(_ACTIVE_SQL).to_pylist()]


_PENDING_SQL = """
WITH tried AS (
    SELECT notification_id, max(attempt) AS attempts, arg_max(status, attempt) AS outcome,
        arg_max(next_attempt_at, attempt) AS next_attempt_at
    FROM alerts WHERE notification_id IS NOT NULL GROUP BY notification_id
)
SELECT o.*, coalesce(t.attempts, 0) AS attempts, t.next_attempt_at
FROM alert_outbox o LEFT JOIN tried t USING (notification_id)
WHERE t.outcome IS NULL OR t.outcome = 'retrying'
ORDER BY o.created_at, o.notification_id
"""


def load_pending(store: StoreLike) -> list[Pending]:
    """Every notification still to deliver, oldest first."""
    pending = []
    for row in store.query(_PENDING_SQL).to_pylist():
        attempts, next_at = row.pop("attempts"), row.pop("next_attempt_at")
        notification = Notification(**{**row, "status": AlertStatus(row["status"])})
        pending.append(Pending(notification, attempts, next_at))
    return pending


def due(pending: Sequence[Pending], now: datetime) -> tuple[list[Pending], datetime | None]:
    """What to attempt now: per receiver and group only the oldest pending notification (a resolved one never
    overtakes the firing one before it), when its retry time has come. Also when the next one falls due."""
    heads: dict[tuple[str, str], Pending] = {}
    for p in pending:
        heads.setdefault((p.notification.receiver, p.notification.group_key), p)
    now_due = [p for p in heads.values() if p.next_attempt_at is None or p.next_attempt_at <= now]
    later = [p.next_attempt_at for p in heads.values() if p.next_attempt_at is not None and p.next_attempt_at > now]
    return now_due, min(later, default=None)
