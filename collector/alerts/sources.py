"""What each rule's metric reads in the store now: one Sample per subject, or no value with the reason.

Request metrics come from collector/fleet/report.py over the rule's window ending now (one query set per distinct
window), per pool and revision; drift, eval and gate metrics from the latest verdicts the store holds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from collector.alerts.evaluate import Sample
from collector.alerts.rules import Metric, Rule
from collector.export.metrics import UNKNOWN
from collector.fleet.report import (
    PERCENTILES,
    PoolReport,
    Window,
    fleet_report,
    query_latest_drift,
    query_latest_evals,
    query_latest_gates,
)
from collector.fleet.slo import DEFAULT_SLO_PATH, load_slo
from collector.store.protocols import Queryable
from collector.vocabulary import DriftVerdict, EvalVerdict, GateVerdict

_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def _window(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def request_sample(rule: Rule, report: PoolReport) -> Sample:
    s = report.stats
    subject = {"pool": s.pool, "revision": s.revision or UNKNOWN}
    over = f"over {_window(rule.window_s)}"
    if s.requests < rule.min_count:
        return Sample(subject, None, f"{s.requests} requests {over}, fewer than min_requests {rule.min_count}")
    metric = rule.metric
    if metric is Metric.error_rate:
        return Sample(subject, report.error_rate, f"{s.errors} of {s.requests} requests failed {over}")
    if metric is Metric.cost_per_mtok:
        tokens = s.prompt_tokens + s.completion_tokens
        if report.window_cost_usd is None:
            return Sample(subject, None, f"no price for pool {s.pool} in the store")
        evidence = f"${report.window_cost_usd:.4g} {over} for {tokens} tokens"
        return Sample(subject, report.usd_per_m_total_tokens, evidence if tokens else f"no tokens served {over}")
    if metric is Metric.cache_hit_ratio:
        evidence = f"{s.cached_tokens} of {s.prompt_tokens} prompt tokens from the prefix cache {over}"
        ratio = report.request_cache_hit_ratio
        return Sample(subject, ratio, evidence if ratio is not None else f"no prompt tokens {over}")
    if metric is Metric.goodput:
        good = report.figures.goodput if report.figures else None
        if good is None or good.ratio is None:
            return Sample(subject, None, f"no request to judge against the SLO {over}")
        return Sample(subject, good.ratio, f"{good.met} of {good.counted} requests within {good.slo.describe()} {over}")
    column, quantile = metric.value.split("_")
    values: tuple[float, ...] | None = getattr(s, f"{column}_s")
    if values is None:
        return Sample(subject, None, f"no ok request with a {column} {over}")
    return Sample(subject, values[PERCENTILES.index(_QUANTILES[quantile])], f"{report.ok} ok requests {over}")


def drift_samples(rows: Sequence[dict[str, Any]]) -> list[Sample]:
    """Per pool: how many drift metrics its latest canary verdicts flag (None when every one had no data)."""
    by_pool: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        by_pool[row["pool"]][row["metric"]] = row["verdict"]
    samples = []
    for pool, verdicts in by_pool.items():
        flagged = sorted(m for m, v in verdicts.items() if v == DriftVerdict.drift)
        measured = [m for m, v in verdicts.items() if v != DriftVerdict.nodata]
        if not measured:
            samples.append(Sample({"pool": pool}, None, "the latest canary run had no data on any metric"))
        elif flagged:
            samples.append(Sample({"pool": pool}, float(len(flagged)), f"drift on {', '.join(flagged)}"))
        else:
            samples.append(Sample({"pool": pool}, 0.0, f"no drift on the {len(measured)} metrics measured"))
    return samples


def eval_samples(metric: Metric, rows: Sequence[dict[str, Any]]) -> list[Sample]:
    samples = []
    for row in rows:
        subject = {"pool": row["pool"], "suite": row["suite"]}
        if row["verdict"] in (EvalVerdict.reference, EvalVerdict.nodata):
            continue  # the reference itself; or a run that scored nothing (no value to judge)
        if metric is Metric.eval_regressed:
            regressed = float(row["verdict"] == EvalVerdict.regressed)
            samples.append(Sample(subject, regressed, f"latest run: {row['verdict']}"))
        elif row["delta"] is None:
            samples.append(Sample(subject, None, "no item scored on both the pool and the reference"))
        else:
            accuracy = f"{row['accuracy']:.4g}" if row["accuracy"] is not None else "?"
            samples.append(Sample(subject, -row["delta"], f"accuracy {accuracy}, {row['delta']:+.4g} vs the reference"))
    return samples


def gate_samples(rows: Sequence[dict[str, Any]]) -> list[Sample]:
    """Per candidate pool and baseline: 1 when the latest gate's verdict is fail, else 0."""
    return [
        Sample({"pool": r["candidate"], "baseline": r["baseline"]}, float(r["verdict"] == GateVerdict.fail),
               f"latest gate against {r['baseline']}: exit code {r['exit_code']}, score {r['score']}")
        for r in rows
    ]  # fmt: skip


def read_samples(store: Queryable, rules: Sequence[Rule], now: datetime) -> dict[str, list[Sample]]:
    """Per rule name, every subject's sample of the rule's metric now (each query made once)."""
    reports: dict[float, list[PoolReport]] = {}
    latest: dict[Callable[[Queryable], list[dict[str, Any]]], list[dict[str, Any]]] = {}

    def once(query: Callable[[Queryable], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        if query not in latest:
            latest[query] = query(store)
        return latest[query]

    out: dict[str, list[Sample]] = {}
    slo = load_slo(DEFAULT_SLO_PATH) if any(r.metric is Metric.goodput for r in rules) else None
    for rule in rules:
        metric = rule.metric
        if metric.over_requests:
            if rule.window_s not in reports:
                reports[rule.window_s] = fleet_report(store, Window.last(rule.window_s, now), slo=slo)
            out[rule.name] = [request_sample(rule, r) for r in reports[rule.window_s]]
        elif metric is Metric.drift:
            out[rule.name] = drift_samples(once(query_latest_drift))
        elif metric is Metric.gate_failed:
            out[rule.name] = gate_samples(once(query_latest_gates))
        else:
            out[rule.name] = eval_samples(metric, once(query_latest_evals))
    return out
