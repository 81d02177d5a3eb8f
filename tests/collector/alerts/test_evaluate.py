"""The alert state machine, step by step, on samples written by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.alerts.evaluate import ACTIVE, Alert, AlertStatus, Change, Sample, evaluate, fingerprint, fnv1a_64
from collector.alerts.rules import AlertConfig

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def config(*rules: dict[str, Any], repeat: str = "1h") -> AlertConfig:
    base = {
        "name": "ErrorsHigh", "metric": "error_rate", "condition": "> 0.05", "for": "2m", "severity": "critical",
        "labels": {"team": "serving"}, "annotations": {"summary": "{{ $labels.pool }} fails {{ $value }}"},
    }  # fmt: skip
    return AlertConfig.model_validate({"rules": [{**base, **r} for r in rules] or [base], "repeat_interval": repeat})


def errors(**values: float | None) -> dict[str, list[Sample]]:
    return {"ErrorsHigh": [Sample({"pool": p, "revision": "r1"}, v, f"measured {p}") for p, v in values.items()]}


class Run:
    """Evaluations in a row, keeping the active alerts the way the store does (the latest state of each)."""

    def __init__(self, cfg: AlertConfig) -> None:
        self.config = cfg
        self.active: dict[str, Alert] = {}

    def at(self, minutes: float, samples: dict[str, list[Sample]]) -> list[Change]:
        changes = evaluate(self.config, samples, list(self.active.values()), at(minutes))
        for c in changes:
            if c.alert.status in ACTIVE:
                self.active[c.alert.fingerprint] = c.alert
            else:
                self.active.pop(c.alert.fingerprint, None)
        return changes


def states(changes: Sequence[Change]) -> list[tuple[str, str | None, str, bool]]:
    return [(c.alert.labels["pool"], c.previous, c.alert.status.value, c.notify) for c in changes]


def test_pending_fires_after_for_then_resolves_when_the_condition_clears() -> None:
    run = Run(config())
    assert states(run.at(0, errors(boost=0.1, ref=0.0))) == [("boost", None, "pending", False)]
    assert run.at(1, errors(boost=0.2, ref=0.0)) == []  # pending for 1 of 2 minutes
    (fired,) = run.at(2, errors(boost=0.25, ref=0.0))
    assert states([fired]) == [("boost", "pending", "firing", True)]
    alert = fired.alert
    assert alert.active_since == at(0) and alert.notified_at == at(2) and alert.ends_at is None
    assert alert.labels == {"alertname": "ErrorsHigh", "severity": "critical", "team": "serving", "pool": "boost",
                            "revision": "r1"}  # fmt: skip
    assert alert.annotations == {"summary": "boost fails 0.25"}
    assert alert.reason == "error_rate 0.25 > 0.05 (measured boost)"
    assert run.at(3, errors(boost=0.3, ref=0.0)) == []  # firing, already notified: deduplicated
    (resolved,) = run.at(4, errors(boost=0.05, ref=0.0))
    assert states([resolved]) == [("boost", "firing", "resolved", True)]
    assert resolved.alert.ends_at == at(4) and resolved.alert.fingerprint == alert.fingerprint
    assert resolved.alert.reason == "error_rate 0.05 not > 0.05 (measured boost)"
    assert run.active == {}


def test_a_condition_that_clears_before_for_never_notifies() -> None:
    run = Run(config())
    run.at(0, errors(boost=0.1))
    assert states(run.at(1, errors(boost=0.0))) == [("boost", "pending", "inactive", False)]
    # holding again starts a new pending period
    run.at(2, errors(boost=0.1))
    assert run.at(3, errors(boost=0.1)) == []
    assert states(run.at(4, errors(boost=0.1))) == [("boost", "pending", "firing", True)]


def test_for_zero_fires_at_once_and_every_subject_is_its_own_alert() -> None:
    run = Run(config({"for": 0}))
    changes = run.at(0, errors(a=0.5, b=0.5, c=0.0))
    assert states(changes) == [("a", None, "firing", True), ("b", None, "firing", True)]
    assert len({c.alert.fingerprint for c in changes}) == 2
    assert run.at(0.5, errors(a=0.5, b=0.5, c=0.0)) == []


def test_a_firing_alert_is_notified_again_after_the_repeat_interval() -> None:
    run = Run(config({"for": 0}, repeat="10m"))
    run.at(0, errors(a=0.5))
    assert run.at(9, errors(a=0.5)) == []
    (again,) = run.at(10, errors(a=0.5))
    assert states([again]) == [("a", "firing", "firing", True)]
    assert again.alert.active_since == at(0) and again.alert.notified_at == at(10)


def test_no_data_keeps_the_state_unless_the_rule_says_resolve() -> None:
    keep = Run(config({"for": 0}))
    keep.at(0, errors(a=0.5))
    assert keep.at(1, errors(a=None)) == []  # the pool's window has too few requests: still firing
    assert keep.at(2, errors()) == []  # the pool has no requests at all
    assert [a.status for a in keep.active.values()] == [AlertStatus.firing]
    gone = Run(config({"for": 0, "nodata": "resolve"}))
    gone.at(0, errors(a=0.5))
    (resolved,) = gone.at(1, errors())
    assert states([resolved]) == [("a", "firing", "resolved", True)]
    assert resolved.alert.reason == "no data: no error_rate for pool=a revision=r1"


def test_alerts_the_rules_no_longer_make_resolve() -> None:
    run = Run(config({"for": 0}, {"name": "Other", "for": 0}))
    both = {**errors(a=0.5), "Other": [Sample({"pool": "a"}, 0.5, "x")]}
    assert len(run.at(0, both)) == 2
    run.config = config({"for": 0, "pools": ["b*"]})  # Other removed, pool a no longer selected
    changes = run.at(1, errors(a=0.5))
    assert sorted((c.alert.rule, c.alert.status.value, c.notify) for c in changes) == [
        ("ErrorsHigh", "resolved", True), ("Other", "resolved", True),
    ]  # fmt: skip
    reasons = sorted(c.alert.reason for c in changes)
    assert reasons == ["rule ErrorsHigh no longer makes this alert (changed)", "rule Other is no longer in the rules"]


def test_rules_without_samples_are_left_alone() -> None:
    run = Run(config({"for": 0}))
    run.at(0, errors(a=0.5))
    assert run.at(1, {}) == []  # e.g. its source could not be read this time


def test_fingerprints_are_fnv1a_of_the_sorted_labels() -> None:
    assert fnv1a_64(b"") == 0xCBF29CE484222325  # the FNV-1a 64 offset basis
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C  # the published FNV-1a 64 test vector for "a"
    assert fingerprint({}) == "cbf29ce484222325"
    assert fingerprint({"b": "2", "a": "1"}) == format(fnv1a_64(b"a\xff1\xffb\xff2\xff"), "016x")
    assert fingerprint({"a": "1", "b": "2"}) == fingerprint({"b": "2", "a": "1"})
    assert fingerprint({"a": "1b"}) != fingerprint({"a1": "b"})
