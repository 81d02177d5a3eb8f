"""The judge: every metric of a candidate against its baseline (gate/classify.py), a weighted score over
groups, and a verdict (Kayenta's pipeline: classify -> score -> classify the score).

- a critical result (e.g. a significant eval accuracy drop, a hard greedy mismatch) fails the gate;
- score = sum over groups with data of weight x (passing metrics / metrics with data), scaled to 0-100;
  at or above thresholds.pass: pass, at or above thresholds.marginal: marginal, else fail;
- a metric that must have data and has none makes a passing gate marginal (exit 2), never a silent pass;
  no data at all is `nodata` (exit 2).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from collector.fleet.slo import Slo, load_slo
from collector.store.protocols import Queryable, StoreLike
from collector.vocabulary import DriftVerdict, EvalVerdict, GateVerdict
from evals.compare import CompareConfig, compare_pool
from gate.classify import Classification, MetricResult, Thresholds, classify_figure, classify_rate, classify_values
from gate.config import DriftMetric, EvalMetric, GateConfig, ValueMetric
from gate.data import DriftRow, EvalPair, PoolData, Span, latest_drift, latest_eval_pairs, pool_data
from gate.work import unlike_work

EXIT_CODES = {GateVerdict.passed: 0, GateVerdict.fail: 1, GateVerdict.marginal: 2, GateVerdict.nodata: 2}


@dataclass
class GateResult:
    gate_id: str
    baseline: str
    candidate: str
    span: Span
    verdict: GateVerdict
    score: float | None
    reason: str
    results: list[MetricResult]
    group_scores: dict[str, float | None] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)  # what was read: request counts, eval and canary runs

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def _thresholds(metric: ValueMetric, config: GateConfig) -> Thresholds:
    return Thresholds(metric.direction, metric.allowed, metric.critical, config.alpha, config.min_samples)


def judge_evals(config: EvalMetric, pairs: Sequence[EvalPair], alpha: float) -> list[MetricResult]:
    """One result per suite: `eval:<suite>`."""
    if not pairs:
        return [MetricResult("eval_accuracy", config.group, Classification.nodata, False,
                             "no eval run in the window with both pools")]  # fmt: skip
    return [judge_eval(config, pair, alpha) for pair in pairs]


def judge_eval(config: EvalMetric, pair: EvalPair, alpha: float) -> MetricResult:
    summary = compare_pool("candidate", pair.candidate, pair.baseline, CompareConfig(alpha=alpha, margin=config.margin))
    evidence: dict[str, object] = {"run_id": pair.run_id, "suite": pair.suite, "items": summary.items,
                                   "errors": summary.errors}  # fmt: skip
    if summary.paired is not None:
        evidence |= {"reference_only": summary.paired.b, "candidate_only": summary.paired.c, "paired": summary.paired.n}
    base_acc = None
    if summary.paired is not None and summary.paired.n:
        base_acc = (summary.paired.a + summary.paired.b) / summary.paired.n
    classification = {
        EvalVerdict.regressed: Classification.low, EvalVerdict.passed: Classification.passed,
        EvalVerdict.improved: Classification.passed,
    }.get(summary.verdict, Classification.nodata)  # fmt: skip
    critical = config.critical and classification is Classification.low
    reason = f"{summary.verdict.value} (run {pair.run_id}): {summary.reason}"
    return MetricResult(f"eval:{pair.suite}", config.group, classification, critical, reason, base_acc,
                        summary.accuracy, summary.delta, summary.delta_low, summary.delta_high, summary.p_value,
                        evidence)  # fmt: skip


def judge_drift(config: DriftMetric, drift: tuple[str, list[DriftRow]] | None) -> list[MetricResult]:
    if drift is None or not drift[1]:
        return [MetricResult("drift", config.group, Classification.nodata, False,
                             "no canary run in the window of the candidate against the baseline")]  # fmt: skip
    run_id, rows = drift
    results = []
    for row in rows:
        flagged = row.verdict == DriftVerdict.drift
        classification = Classification.high if flagged else (
            Classification.nodata if row.verdict == DriftVerdict.nodata else Classification.passed)  # fmt: skip
        evidence = {"run_id": run_id, **{k: v for k, v in row.evidence.items() if k in ("mode", "probe", "evidence")}}
        band = "" if row.band_high is None else f" (band {row.band_high:.4g})"
        value = "no value" if row.value is None else f"{row.value:.4g}{band}"
        reason = f"canary {run_id}: {row.verdict}, {value}" + (f"; {row.evidence.get('evidence')}" if flagged else "")
        results.append(MetricResult(f"drift:{row.metric}", config.group, classification,
                                    flagged and row.metric in config.critical_metrics, reason, None, row.value,
                                    p_value=row.p_value, evidence=evidence))  # fmt: skip
    return results


def judge_metrics(config: GateConfig, baseline: PoolData, candidate: PoolData, pairs: Sequence[EvalPair],
                  drift: tuple[str, list[DriftRow]] | None) -> list[MetricResult]:  # fmt: skip
    """Every configured metric, classified (pure)."""
    m = config.metrics
    results: list[MetricResult] = []
    for name in ("ttft", "tpot", "e2e"):
        metric: ValueMetric | None = getattr(m, name)
        if metric is None:
            continue
        if why := "; ".join(f"{d.pool}: {d.missing[name]}" for d in (baseline, candidate) if name in d.missing):
            results.append(MetricResult(name, metric.group, Classification.nodata, False, why))
            continue
        result = classify_values(name, metric.group, baseline.values.get(name, []), candidate.values.get(name, []),
                                 _thresholds(metric, config))  # fmt: skip
        if name == "tpot":  # whose TPOT: the client's, or the engine's where a pool coalesced its stream
            bases = {"baseline": baseline.tpot_basis, "candidate": candidate.tpot_basis}
            result = replace(result, evidence={**result.evidence, "tpot_basis": bases})
        results.append(result)
    for name in ("cost_per_mtok", "cache_hit_ratio"):
        metric = getattr(m, name)
        if metric is None:
            continue
        unlike = None
        if name == "cost_per_mtok" and baseline.work is not None and candidate.work is not None:
            alike = config.like_for_like
            unlike = unlike_work(baseline.work, candidate.work, mix=alike.mix, load=alike.load)
        if unlike:
            results.append(MetricResult(name, metric.group, Classification.nodata, False, unlike))
            continue
        why = "; ".join(f"{d.pool}: {d.missing[name]}" for d in (baseline, candidate) if name in d.missing)
        results.append(classify_figure(name, metric.group, baseline.figures.get(name),
                                       candidate.figures.get(name), _thresholds(metric, config), why))  # fmt: skip
    if m.error_rate is not None:
        rates = (baseline.errors, baseline.requests), (candidate.errors, candidate.requests)
        results.append(classify_rate("error_rate", m.error_rate.group, *rates, _thresholds(m.error_rate, config)))
    if m.goodput is not None:
        if baseline.good is None or candidate.good is None:
            results.append(MetricResult("goodput", m.goodput.group, Classification.nodata, False, "no SLO given"))
        else:
            result = classify_rate("goodput", m.goodput.group, baseline.good, candidate.good,
                                   _thresholds(m.goodput, config))  # fmt: skip
            results.append(replace(result, evidence={**result.evidence, "slo": baseline.slo}))
    if m.eval_accuracy is not None:
        results.extend(judge_evals(m.eval_accuracy, pairs, config.alpha))
    if m.drift is not None:
        results.extend(judge_drift(m.drift, drift))
    return results


def _must_have_data(config: GateConfig, result: MetricResult) -> bool:
    prefix = result.metric.split(":", 1)[0]
    name = {"drift": "drift", "eval": "eval_accuracy"}.get(prefix, result.metric)
    metric = getattr(config.metrics, name, None)
    return bool(metric is not None and metric.must_have_data)


@dataclass(frozen=True)
class Decision:
    verdict: GateVerdict
    score: float | None
    reason: str
    groups: dict[str, float | None]  # each group's share of passing metrics among those with data


def group_shares(config: GateConfig, results: Sequence[MetricResult]) -> dict[str, float | None]:
    shares: dict[str, float | None] = {}
    for group in config.groups:
        with_data = [r for r in results if r.group == group and r.classification is not Classification.nodata]
        passing = sum(r.classification is Classification.passed for r in with_data)
        shares[group] = passing / len(with_data) if with_data else None
    return shares


def decide(config: GateConfig, results: Sequence[MetricResult]) -> Decision:
    """Verdict, score (0-100) and the reason (pure)."""
    groups = group_shares(config, results)
    weighted = [(config.groups[g], share) for g, share in groups.items() if share is not None and config.groups[g] > 0]
    if not weighted:
        why = "; ".join(f"{r.metric}: {r.reason}" for r in results)
        return Decision(GateVerdict.nodata, None, f"no metric has data: {why}", groups)
    score = 100 * sum(w * s for w, s in weighted) / sum(w for w, _ in weighted)
    critical = [r for r in results if r.critical]
    failing = [r for r in results if r.classification in (Classification.high, Classification.low)]
    missing = [r for r in results if r.classification is Classification.nodata and _must_have_data(config, r)]
    if critical:
        return Decision(GateVerdict.fail, score, "critical: " + "; ".join(f"{r.metric} {r.reason}" for r in critical),
                        groups)  # fmt: skip
    named = "; ".join(f"{r.metric} {r.classification.value}: {r.reason}" for r in failing)
    marginal, passing = config.thresholds.marginal, config.thresholds.pass_
    if score < marginal:
        return Decision(GateVerdict.fail, score, f"score {score:.0f} < {marginal:g}: {named}", groups)
    if score < passing:
        return Decision(GateVerdict.marginal, score, f"score {score:.0f} < {passing:g}: {named}", groups)
    if missing:
        return Decision(GateVerdict.marginal, score, "no data for " + ", ".join(r.metric for r in missing), groups)
    return Decision(GateVerdict.passed, score, f"score {score:.0f}" + (f"; {named}" if named else ""), groups)


def run_gate(
    store: Queryable, baseline: str, candidate: str, span: Span, config: GateConfig, slo: Slo | None = None
) -> GateResult:
    """`slo`: goodput's bounds (default data/slo.yaml)."""
    if baseline == candidate:
        raise ValueError(f"--baseline and --candidate are both {baseline!r}; compare two pools")
    slo = slo or load_slo()
    base = pool_data(store, baseline, span, config.max_samples, slo=slo)
    cand = pool_data(store, candidate, span, config.max_samples, slo=slo)
    suite = config.metrics.eval_accuracy.suite if config.metrics.eval_accuracy else None
    pairs = latest_eval_pairs(store, baseline, candidate, span, suite) if config.metrics.eval_accuracy else []
    drift = latest_drift(store, baseline, candidate, span) if config.metrics.drift else None
    results = judge_metrics(config, base, cand, pairs, drift)
    decision = decide(config, results)
    sources = {
        "baseline_requests": base.requests, "candidate_requests": cand.requests,
        "eval_runs": {p.suite: p.run_id for p in pairs},
        "canary_run": drift[0] if drift else None,
    }  # fmt: skip
    return GateResult(uuid.uuid4().hex[:16], baseline, candidate, span, decision.verdict, decision.score,
                      decision.reason, results, decision.groups, sources)  # fmt: skip


def judge_and_record(
    store: StoreLike, baseline: str, candidate: str, span: Span, config: GateConfig, slo: Slo | None = None
) -> GateResult:
    """`run_gate`, with the verdict appended to the gates table and flushed (for /metrics and the alerts)."""
    result = run_gate(store, baseline, candidate, span, config, slo)
    store.append("gates", [gate_row(result)])
    return result


def gate_row(result: GateResult, now: datetime | None = None) -> dict[str, Any]:
    """The `gates` table's row: the verdict and its full per-metric detail."""
    detail = {
        "window": {"start": result.span.start.isoformat(), "end": result.span.end.isoformat(),
                   "value_sources": list(result.span.value_sources)},
        "reason": result.reason, "groups": result.group_scores, "sources": result.sources,
        "metrics": [{**asdict(r), "classification": r.classification.value} for r in result.results],
    }  # fmt: skip
    return {
        "gate_id": result.gate_id, "baseline": result.baseline, "candidate": result.candidate,
        "verdict": result.verdict.value, "score": result.score, "exit_code": result.exit_code,
        "detail_json": json.dumps(detail, default=str), "decided_at": now or datetime.now(UTC),
    }  # fmt: skip
