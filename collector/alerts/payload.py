"""Notifications: the alert changes to notify, grouped per receiver, and the body each one sends.

Alerts are grouped per receiver by its `group_by` labels (default alertname) and by status, firing and
resolved apart; a group larger than the receiver's `max_alerts` is split into several notifications (never
cut). The body is the Alertmanager webhook payload, version 4
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), or for `format: slack`
`{"text": ...}`. The body is made once and kept in the outbox, so every retry sends the same bytes.

Slack text is mrkdwn: every value that comes from stored data (label values, annotations, reasons) goes
through `slack_escape` (https://api.slack.com/reference/surfaces/formatting#escaping): &, <, > become
&amp; &lt; &gt; (so `<!channel>` or `<http://evil|click>` stay text), the formatting characters * _ ~ `
become look-alikes that format nothing, and line breaks become spaces (a value cannot forge a line). The
Alertmanager payload is JSON for programs and keeps every value exactly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.alerts.evaluate import Alert, AlertStatus, Change, describe, subject_of
from collector.alerts.rules import AlertConfig, Format, Receiver

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert that has not ended
# Slack's three control characters; mrkdwn's formatting ones as look-alikes (asterisk operator, fullwidth low
# line, tilde operator, modifier letter grave accent); line breaks as spaces
_SLACK = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;",
    "*": "\u2217", "_": "\uff3f", "~": "\u223c", "`": "\u02cb",
    "\r": " ", "\n": " ", "\u2028": " ", "\u2029": " ",
})  # fmt: skip


@dataclass(frozen=True)
class Notification:
    notification_id: str  # the webhook-id of every attempt
    receiver: str
    group_key: str
    status: AlertStatus  # firing or resolved
    rules: str  # the alertnames in it, comma-separated
    alerts: int
    body: str
    created_at: datetime


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def group_key(group_labels: Mapping[str, str]) -> str:
    """Alertmanager's spelling: the route's matchers (none here), then the group's labels."""
    return "{}:{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(group_labels.items())) + "}"


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def _annotations(alert: Alert) -> dict[str, str]:
    return {"reason": alert.reason, **alert.annotations}  # the rule's own `reason` annotation wins


def alertmanager_body(receiver: str, group_labels: Mapping[str, str], status: AlertStatus, alerts: Sequence[Alert],
                      external_url: str) -> dict[str, Any]:  # fmt: skip
    return {
        "version": "4",
        "groupKey": group_key(group_labels),
        "truncatedAlerts": 0,
        "status": status.value,
        "receiver": receiver,
        "groupLabels": dict(group_labels),
        "commonLabels": _common([a.labels for a in alerts]),
        "commonAnnotations": _common([_annotations(a) for a in alerts]),
        "externalURL": external_url,
        "alerts": [
            {
                "status": a.status.value,
                "labels": dict(a.labels),
                "annotations": _annotations(a),
                "startsAt": rfc3339(a.active_since),
                "endsAt": rfc3339(a.ends_at) if a.ends_at else ZERO_TIME,
                "generatorURL": external_url,
                "fingerprint": a.fingerprint,
            }
            for a in alerts
        ],
    }


def slack_escape(text: str) -> str:
    """`text` from stored data, as Slack mrkdwn shows it literally (no mention, link or formatting)."""
    return text.translate(_SLACK)


def slack_text(group_labels: Mapping[str, str], status: AlertStatus, alerts: Sequence[Alert]) -> str:
    """`[FIRING:2] alertname=X` then one line per alert: its subject and summary (or reason), each value escaped."""
    group = " ".join(f"{slack_escape(k)}={slack_escape(v)}" for k, v in group_labels.items())
    lines = [f"[{status.value.upper()}:{len(alerts)}] {group}"]
    for a in alerts:
        subject = slack_escape(describe(subject_of(a.labels)))
        severity, said = a.labels.get("severity", "?"), a.annotations.get("summary") or a.reason
        lines.append(f"• {subject} ({slack_escape(severity)}): {slack_escape(said)}")
    return "\n".join(lines)


def notifications(
    config: AlertConfig, changes: Iterable[Change], now: datetime, external_url: str = "",
    new_id: Callable[[], str] = lambda: f"msg_{time.time_ns():016x}{uuid.uuid4().hex[:12]}",
) -> list[Notification]:  # fmt: skip
    """The notifications the changes call for, one or more per receiver and group. Ids sort in the order the
    notifications were made (the outbox delivers a group's notifications in that order)."""
    rules = {rule.name: rule for rule in config.rules}
    groups: dict[tuple[str, AlertStatus, tuple[tuple[str, str], ...]], list[Alert]] = {}
    for change in changes:
        if not change.notify:
            continue
        alert = change.alert
        rule = rules.get(alert.rule)
        for receiver in config.receivers_of(rule) if rule else config.receivers:
            if alert.status is AlertStatus.resolved and not receiver.send_resolved:
                continue
            labels = tuple((k, alert.labels.get(k, "")) for k in receiver.group_by)
            groups.setdefault((receiver.name, alert.status, labels), []).append(alert)
    made = []
    for (name, status, labels), alerts in groups.items():
        to = config.receiver(name)
        assert to is not None  # the groups are of the config's receivers
        alerts.sort(key=lambda a: sorted(a.labels.items()))
        size = to.max_alerts or len(alerts)
        for start in range(0, len(alerts), size):
            chunk = alerts[start : start + size]
            made.append(_notification(to, dict(labels), status, chunk, now, external_url, new_id()))
    return made


def _notification(receiver: Receiver, group_labels: dict[str, str], status: AlertStatus, alerts: Sequence[Alert],
                  now: datetime, external_url: str, notification_id: str) -> Notification:  # fmt: skip
    if receiver.format is Format.slack:
        body: dict[str, Any] = {"text": slack_text(group_labels, status, alerts)}
    else:
        body = alertmanager_body(receiver.name, group_labels, status, alerts, external_url)
    return Notification(
        notification_id=notification_id, receiver=receiver.name, group_key=group_key(group_labels), status=status,
        rules=",".join(sorted({a.rule for a in alerts})), alerts=len(alerts),
        body=json.dumps(body, separators=(",", ":")), created_at=now,
    )  # fmt: skip
