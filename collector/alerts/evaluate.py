"""The alert state machine, pure: rule + samples + the alerts active before + now -> what changed.

    (none) --condition holds--> pending --held `for`--> firing --condition clears--> resolved
                                   \\--clears before `for`--> inactive            (for: 0 fires at once)

One alert per rule and subject (pool; with revision, suite or baseline where the metric has one), identified
by the fingerprint of its labels: evaluating again never makes a second alert, only changes the state of the
one there is. Firing and resolved are notified; a firing alert is notified again every `repeat_interval`.
A subject without data (no requests in the window, too few, no run) changes nothing under `nodata: keep` and
clears the condition under `nodata: resolve`. An active alert the rules no longer produce (rule removed or
changed, pool no longer selected) resolves.

`for` and `repeat_interval` are wall-clock differences between `now` and stored instants: a clock step back
lengthens them by the step (never an early firing, never a repeated notification), a step forward shortens
them by at most the step. Which state is an alert's latest is never decided by the clock (outbox.py: `seq`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from collector.alerts.rules import AlertConfig, NoData, Rule, render

SUBJECT_LABELS = ("pool", "revision", "suite", "baseline")


class AlertStatus(StrEnum):
    pending = "pending"
    firing = "firing"
    resolved = "resolved"
    inactive = "inactive"  # was pending, cleared before firing: never notified


ACTIVE = (AlertStatus.pending, AlertStatus.firing)


@dataclass(frozen=True)
class Sample:
    """One subject's value of a rule's metric, or None (no data) with the reason."""

    subject: Mapping[str, str]  # pool, and revision / suite / baseline where the metric has them
    value: float | None
    evidence: str  # how the value was measured, or why there is none


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    rule: str
    status: AlertStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    value: float | None
    active_since: datetime  # when the condition began to hold: Alertmanager's startsAt
    ends_at: datetime | None  # when it resolved
    notified_at: datetime | None  # when the latest notification of this alert was made
    reason: str

    def to_json(self) -> str:
        return json.dumps({
            "labels": dict(self.labels), "annotations": dict(self.annotations), "value": self.value,
            "active_since": self.active_since.isoformat(),
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
            "notified_at": self.notified_at.isoformat() if self.notified_at else None, "reason": self.reason,
        })  # fmt: skip

    @classmethod
    def from_row(cls, fingerprint: str, rule: str, status: str, payload_json: str) -> Alert:
        p: dict[str, Any] = json.loads(payload_json)
        return cls(
            fingerprint=fingerprint, rule=rule, status=AlertStatus(status), labels=p["labels"],
            annotations=p["annotations"], value=p["value"], active_since=datetime.fromisoformat(p["active_since"]),
            ends_at=datetime.fromisoformat(p["ends_at"]) if p["ends_at"] else None,
            notified_at=datetime.fromisoformat(p["notified_at"]) if p["notified_at"] else None, reason=p["reason"],
        )  # fmt: skip


@dataclass(frozen=True)
class Change:
    alert: Alert  # the alert as it is now
    previous: AlertStatus | None  # None: a new alert
    notify: bool  # a firing or resolved notification (or a firing one repeated) is due


def fnv1a_64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def fingerprint(labels: Mapping[str, str]) -> str:
    """FNV-1a 64 over the sorted label names and values, each followed by 0xff (Prometheus' label set
    fingerprint, as Alertmanager shows it), 16 hex digits."""
    data = b"".join(name.encode() + b"\xff" + labels[name].encode() + b"\xff" for name in sorted(labels))
    return f"{fnv1a_64(data):016x}"


def alert_labels(rule: Rule, subject: Mapping[str, str]) -> dict[str, str]:
    return {**rule.labels, **subject, "alertname": rule.name, "severity": rule.severity.value}


def selects(rule: Rule, pool: str) -> bool:
    return any(fnmatchcase(pool, pattern) for pattern in rule.pools)


def step(rule: Rule, before: Alert | None, labels: dict[str, str], sample: Sample, now: datetime,
         repeat_s: float) -> Change | None:  # fmt: skip
    """What one evaluation of one subject changes; None when nothing does."""
    value = sample.value
    if value is None:
        if before is None or rule.nodata is NoData.keep:
            return None
        return _clear(before, now, f"no data: {sample.evidence}")
    holds = rule.condition.holds(value)
    reason = f"{rule.metric} {value:.4g} {'' if holds else 'not '}{rule.condition} ({sample.evidence})"
    if not holds:
        return _clear(before, now, reason) if before is not None else None
    if before is not None and before.status is AlertStatus.firing:
        assert before.notified_at is not None
        if now - before.notified_at < timedelta(seconds=repeat_s):
            return None
        return Change(replace(before, notified_at=now), before.status, notify=True)  # repeated
    annotations = {k: render(v, labels, value) for k, v in rule.annotations.items()}
    if before is None:
        alert = Alert(fingerprint(labels), rule.name, AlertStatus.pending, labels, annotations, value, now, None, None,
                      reason)  # fmt: skip
    else:  # pending
        alert = replace(before, value=value, annotations=annotations, reason=reason)
    previous = before.status if before else None
    if now - alert.active_since >= timedelta(seconds=rule.for_):
        return Change(replace(alert, status=AlertStatus.firing, notified_at=now), previous, notify=True)
    return Change(alert, previous, notify=False) if before is None else None  # pending, recorded once


def _clear(before: Alert, now: datetime, reason: str) -> Change:
    """A pending alert becomes inactive (never notified); a firing one resolves."""
    if before.status is AlertStatus.pending:
        return Change(replace(before, status=AlertStatus.inactive, reason=reason), before.status, notify=False)
    resolved = replace(before, status=AlertStatus.resolved, ends_at=now, notified_at=now, reason=reason)
    return Change(resolved, before.status, notify=True)


def evaluate(
    config: AlertConfig, samples: Mapping[str, Sequence[Sample]], active: Iterable[Alert], now: datetime
) -> list[Change]:
    """Every change of this evaluation. `samples`: per rule name, what its metric reads now (rules missing
    from it are not evaluated: their alerts stay as they are); `active`: the pending and firing alerts."""
    by_rule: dict[str, dict[str, Alert]] = {}
    for alert in active:
        by_rule.setdefault(alert.rule, {})[alert.fingerprint] = alert
    changes: list[Change] = []
    rules = {rule.name: rule for rule in config.rules}
    for name, alerts in by_rule.items():
        if name not in rules:
            changes += [_clear(a, now, f"rule {name} is no longer in the rules") for a in alerts.values()]
    for rule in config.rules:
        if rule.name not in samples:
            continue
        alerts = by_rule.get(rule.name, {})
        seen: set[str] = set()
        for sample in samples[rule.name]:
            if not selects(rule, sample.subject["pool"]):
                continue
            labels = alert_labels(rule, sample.subject)
            key = fingerprint(labels)
            seen.add(key)
            if change := step(rule, alerts.get(key), labels, sample, now, config.repeat_interval):
                changes.append(change)
        for key, alert in alerts.items():
            if key in seen:
                continue
            subject = subject_of(alert.labels)
            if alert_labels(rule, subject) != alert.labels or not selects(rule, subject.get("pool", "")):
                changes.append(_clear(alert, now, f"rule {rule.name} no longer makes this alert (changed)"))
            else:
                missing = Sample(subject, None, f"no {rule.metric} for {describe(subject)}")
                if change := step(rule, alert, dict(alert.labels), missing, now, config.repeat_interval):
                    changes.append(change)
    return changes


def subject_of(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that say what an alert is about (pool, and revision / suite / baseline)."""
    return {k: labels[k] for k in SUBJECT_LABELS if k in labels}


def describe(subject: Mapping[str, str]) -> str:
    """`pool=boost revision=r1`."""
    return " ".join(f"{k}={v}" for k, v in subject.items())
