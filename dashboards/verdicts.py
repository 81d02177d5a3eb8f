"""The Evals and the Gates and alerts pages' computations: store rows in (eval_runs, gates, alerts), frames and
text out. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def pts(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.1f} pts"


def interval(low: float | None, high: float | None, show: Any = pct) -> str:
    return "–" if low is None or high is None else f"[{show(low)}, {show(high)}]"


def latest_runs(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """suite -> the run id of its latest eval run (rows newest first or not)."""
    latest: dict[str, tuple[Any, str]] = {}
    for r in rows:
        if r["suite"] not in latest or r["recorded_at"] > latest[r["suite"]][0]:
            latest[r["suite"]] = (r["recorded_at"], r["run_id"])
    return {suite: run for suite, (_, run) in sorted(latest.items())}


def eval_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One eval run of one suite: per pool accuracy with its Wilson interval, the paired difference from the
    reference with Newcombe's interval, McNemar's p, the verdict and its reason."""
    return pd.DataFrame(
        [{"pool": r["pool"], "items": r["items"], "errors": r["errors"], "accuracy": pct(r["accuracy"]),
          "95% CI": interval(r["ci_low"], r["ci_high"]), "Δ vs " + r["reference_pool"]: pts(r["delta"]),
          "Δ 95% CI": interval(r["delta_low"], r["delta_high"], pts),
          "p": "–" if r["p_value"] is None else f"{r['p_value']:.2g}", "verdict": r["verdict"], "reason": r["reason"]}
         for r in sorted(rows, key=lambda r: (r["pool"] != r["reference_pool"], r["pool"]))],
    )  # fmt: skip


def interval_frame(rows: Sequence[Mapping[str, Any]], value: str, low: str, high: str) -> pd.DataFrame:
    """pool, value, low, high in percent (points for a difference), for an interval plot; rows without a value
    are left out."""
    return pd.DataFrame(
        [{"pool": r["pool"], "value": 100 * r[value], "low": 100 * r[low], "high": 100 * r[high],
          "verdict": r["verdict"]} for r in rows if None not in (r[value], r[low], r[high])],
        columns=["pool", "value", "low", "high", "verdict"],
    )  # fmt: skip


def gate_history(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"decided": r["decided_at"], "gate": r["gate_id"], "candidate": r["candidate"], "baseline": r["baseline"],
          "verdict": r["verdict"], "score": r["score"], "exit code": r["exit_code"]} for r in rows],
        columns=["decided", "gate", "candidate", "baseline", "verdict", "score", "exit code"],
    )  # fmt: skip


@dataclass(frozen=True)
class GateDetail:
    reason: str
    window: Mapping[str, str]
    groups: Mapping[str, float | None]  # group -> share of its metrics that passed
    sources: Mapping[str, Any]
    metrics: pd.DataFrame


def gate_detail(detail_json: str) -> GateDetail:
    """A gate's stored detail (gate/judge.py gate_row) with one row per metric."""
    d = json.loads(detail_json)
    metrics = pd.DataFrame(
        [{"metric": m["metric"], "group": m["group"], "result": m["classification"],
          "critical": m["critical"], "baseline": m.get("baseline"), "candidate": m.get("candidate"),
          "effect": m.get("effect"), "effect low": m.get("effect_low"), "effect high": m.get("effect_high"),
          "p": m.get("p_value"), "reason": m["reason"]} for m in d.get("metrics", [])],
    )  # fmt: skip
    return GateDetail(d.get("reason", ""), d.get("window", {}), d.get("groups", {}), d.get("sources", {}), metrics)


def alert_history(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """State changes of alerts with what their payload says: labels, value, summary, why."""
    out = []
    for r in rows:
        p = json.loads(r["payload_json"]) if r["payload_json"] else {}
        labels = p.get("labels", {})
        out.append({"at": r["recorded_at"], "rule": r["rule"], "status": r["status"],
                    "labels": ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname"),
                    "value": p.get("value"), "summary": p.get("annotations", {}).get("summary", ""),
                    "why": p.get("reason", ""), "fingerprint": r["fingerprint"]})  # fmt: skip
    return pd.DataFrame(out, columns=["at", "rule", "status", "labels", "value", "summary", "why", "fingerprint"])


def delivery_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"at": r["recorded_at"], "notification": r["notification_id"], "receiver": r["receiver"],
          "attempt": r["attempt"], "outcome": r["outcome"], "HTTP": r["http_status"], "error": r["error"],
          "next attempt": r["next_attempt_at"], "status": r["notification"], "rules": r["rules"]} for r in rows],
        columns=["at", "notification", "receiver", "attempt", "outcome", "HTTP", "error", "next attempt", "status",
                 "rules"],
    )  # fmt: skip


def pretty_json(text: str | None) -> str:
    """A stored JSON body, indented; as it is when it does not parse."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text
