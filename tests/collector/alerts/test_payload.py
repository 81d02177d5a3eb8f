"""Notifications: grouping per receiver, the Alertmanager v4 payload field by field, Slack text, splitting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from collector.alerts.evaluate import ACTIVE, Change, Sample, evaluate
from collector.alerts.payload import ZERO_TIME, notifications
from collector.alerts.rules import AlertConfig

T0 = datetime(2026, 11, 22, 12, 0, 0, 250000, tzinfo=UTC)


def config(**receiver: Any) -> AlertConfig:
    return AlertConfig.model_validate({
        "rules": [
            {"name": "Errors", "metric": "error_rate", "condition": "> 0.05", "severity": "critical",
             "labels": {"team": "serving"}, "annotations": {"summary": "{{ $labels.pool }} fails"}},
            {"name": "Drift", "metric": "drift", "condition": "> 0", "receivers": ["am"]},
        ],
        "receivers": [{"name": "am", "url": "http://127.0.0.1:9/am", **receiver},
                      {"name": "chat", "url": "http://127.0.0.1:9/chat", "format": "slack"}],
    })  # fmt: skip


def fire(cfg: AlertConfig, error_pools: dict[str, float], drift_pools: dict[str, float], at: datetime = T0,
         active: list[Change] | None = None) -> list[Change]:  # fmt: skip
    samples = {"Errors": [Sample({"pool": p, "revision": "r1"}, v, f"{p} measured") for p, v in error_pools.items()],
               "Drift": [Sample({"pool": p}, v, "drift on x") for p, v in drift_pools.items()]}  # fmt: skip
    before = [c.alert for c in active or [] if c.alert.status in ACTIVE]
    return evaluate(cfg, samples, before, at)


def ids() -> Any:
    n = count()
    return lambda: f"msg_{next(n)}"


def test_firing_alerts_are_grouped_per_receiver_and_alertname() -> None:
    cfg = config()
    made = notifications(cfg, fire(cfg, {"a": 0.5, "b": 0.5}, {"a": 2.0}), T0, "http://collector:8090", ids())
    assert [(n.receiver, n.group_key, n.status.value, n.rules, n.alerts) for n in made] == [
        ("am", '{}:{alertname="Errors"}', "firing", "Errors", 2),
        ("chat", '{}:{alertname="Errors"}', "firing", "Errors", 2),
        ("am", '{}:{alertname="Drift"}', "firing", "Drift", 1),  # the Drift rule sends to am only
    ]
    assert [n.notification_id for n in made] == ["msg_0", "msg_1", "msg_2"]
    body = json.loads(made[0].body)
    alerts = body.pop("alerts")
    assert body == {
        "version": "4", "groupKey": '{}:{alertname="Errors"}', "truncatedAlerts": 0, "status": "firing",
        "receiver": "am", "groupLabels": {"alertname": "Errors"},
        "commonLabels": {"team": "serving", "revision": "r1", "alertname": "Errors", "severity": "critical"},
        "commonAnnotations": {}, "externalURL": "http://collector:8090",
    }  # fmt: skip
    assert [a["labels"]["pool"] for a in alerts] == ["a", "b"]  # in the order of their labels
    first = next(a for a in alerts if a["labels"]["pool"] == "a")
    assert first == {
        "status": "firing",
        "labels": {"team": "serving", "pool": "a", "revision": "r1", "alertname": "Errors", "severity": "critical"},
        "annotations": {"reason": "error_rate 0.5 > 0.05 (a measured)", "summary": "a fails"},
        "startsAt": "2026-11-22T12:00:00.250Z", "endsAt": ZERO_TIME, "generatorURL": "http://collector:8090",
        "fingerprint": first["fingerprint"],
    }  # fmt: skip
    assert json.loads(made[1].body) == {
        "text": "[FIRING:2] alertname=Errors\n• pool=a revision=r1 (critical): a fails\n"
        "• pool=b revision=r1 (critical): b fails"
    }


def test_resolved_alerts_carry_their_end_and_honour_send_resolved() -> None:
    cfg = config(send_resolved=False)
    fired = fire(cfg, {"a": 0.5}, {})
    resolved = fire(cfg, {"a": 0.0}, {}, T0 + timedelta(minutes=5), active=fired)
    made = notifications(cfg, resolved, T0 + timedelta(minutes=5), "", ids())
    assert [(n.receiver, n.status.value) for n in made] == [("chat", "resolved")]  # am does not want them
    assert json.loads(made[0].body)["text"].startswith("[RESOLVED:1] alertname=Errors")
    cfg = config()
    made = notifications(cfg, fire(cfg, {"a": 0.0}, {}, T0 + timedelta(minutes=5), active=fired), T0, "", ids())
    (alert,) = json.loads(made[0].body)["alerts"]
    assert (alert["status"], alert["startsAt"], alert["endsAt"]) == (
        "resolved", "2026-11-22T12:00:00.250Z", "2026-11-22T12:05:00.250Z",
    )  # fmt: skip


def test_a_big_group_is_split_never_cut() -> None:
    cfg = config(max_alerts=2)
    made = [
        n for n in notifications(cfg, fire(cfg, {p: 0.5 for p in "abcde"}, {}), T0, "", ids()) if n.receiver == "am"
    ]
    assert [n.alerts for n in made] == [2, 2, 1]
    pools = [a["labels"]["pool"] for n in made for a in json.loads(n.body)["alerts"]]
    assert sorted(pools) == list("abcde")
    assert all(json.loads(n.body)["truncatedAlerts"] == 0 for n in made)


def test_nothing_to_notify_makes_no_notification() -> None:
    cfg = config()
    pending_only = evaluate(cfg.model_copy(update={"rules": (cfg.rules[0].model_copy(update={"for_": 60.0}),)}),
                            {"Errors": [Sample({"pool": "a"}, 0.5, "x")]}, [], T0)  # fmt: skip
    assert [c.alert.status.value for c in pending_only] == ["pending"]
    assert notifications(cfg, pending_only, T0) == []
