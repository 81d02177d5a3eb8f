"""Per-metric classification of a candidate against its baseline (pure; Kayenta's metric classifier).

Continuous metrics (TTFT, TPOT, e2e, per request): a two-sided Mann-Whitney U
test, and the Hodges-Lehmann estimate of the shift (the median of all candidate - baseline differences) with
its distribution-free confidence interval (Lehmann 1975: the k-th smallest and largest differences, k from
the U distribution's normal approximation). The effect is the shift relative to the baseline's median. A
metric is `high` (or `low`) when the test is significant AND the effect exceeds the allowed change in the
direction that hurts; beyond the critical change it fails the whole gate.

Window figures ($/1M tokens, cache hit ratio: one number per pool for the window, as `inferwatch fleet` shows):
the relative change, judged against the same allowed and critical changes (there is no sample to test).

Rates (errors per request): Fisher's exact test on the 2x2 table, the effect in absolute points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from scipy import stats

HL_MAX_PER_SIDE = 1000  # the shift's interval uses at most this many values per side (a seeded subsample)


class Classification(StrEnum):
    passed = "pass"
    high = "high"
    low = "low"
    nodata = "nodata"


class Direction(StrEnum):
    increase = "increase"  # an increase hurts (latency, cost, errors)
    decrease = "decrease"  # a decrease hurts (cache hit ratio, accuracy)
    both = "both"


@dataclass(frozen=True)
class Thresholds:
    direction: Direction
    allowed: float  # the change tolerated (relative for continuous metrics, points for rates)
    critical: float | None  # a change beyond this fails the gate; None: never critical
    alpha: float = 0.05
    min_samples: int = 20


@dataclass(frozen=True)
class MetricResult:
    metric: str
    group: str
    classification: Classification
    critical: bool  # this result fails the gate on its own
    reason: str
    baseline: float | None = None  # the baseline's median (or rate)
    candidate: float | None = None
    effect: float | None = None  # relative shift (continuous) or difference in points (rates)
    effect_low: float | None = None
    effect_high: float | None = None
    p_value: float | None = None
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Shift:
    p_value: float
    estimate: float  # Hodges-Lehmann: candidate - baseline
    low: float
    high: float


def hodges_lehmann(baseline: np.ndarray, candidate: np.ndarray, confidence: float = 0.95, seed: int = 0) -> Shift:
    """The shift of candidate over baseline with its confidence interval, and the Mann-Whitney p-value."""
    p_value = float(stats.mannwhitneyu(candidate, baseline, alternative="two-sided", method="asymptotic").pvalue)
    rng = np.random.default_rng(seed)
    b = baseline if len(baseline) <= HL_MAX_PER_SIDE else rng.choice(baseline, HL_MAX_PER_SIDE, replace=False)
    c = candidate if len(candidate) <= HL_MAX_PER_SIDE else rng.choice(candidate, HL_MAX_PER_SIDE, replace=False)
    differences = np.sort(np.subtract.outer(c, b).ravel())
    n1, n2 = len(c), len(b)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    # the interval is (D_(C), D_(mn+1-C)) in 1-based order, C = mn/2 - z sqrt(mn(m+n+1)/12) rounded down
    c_alpha = min(max(math.floor(n1 * n2 / 2 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)), 1), len(differences))
    low, high = differences[c_alpha - 1], differences[len(differences) - c_alpha]
    return Shift(p_value, float(np.median(differences)), float(low), float(high))


def _hurts(effect: float, direction: Direction) -> bool:
    return direction is Direction.both or (effect > 0) == (direction is Direction.increase)


def judge_effect(effect: float, significant: bool, t: Thresholds, unit: str) -> tuple[Classification, bool, str]:
    """Classification, whether it is critical, and why, for an effect (positive: the candidate is higher)."""
    if not significant or effect == 0:
        return Classification.passed, False, f"no significant change ({_fmt(effect, unit)})"
    if not _hurts(effect, t.direction):
        return Classification.passed, False, f"better: {_fmt(effect, unit)}"
    if abs(effect) <= t.allowed:
        return Classification.passed, False, f"{_fmt(effect, unit)}, within the allowed {_fmt(t.allowed, unit, False)}"
    critical = t.critical is not None and abs(effect) > t.critical
    limit, word = (t.critical or 0.0, "critical") if critical else (t.allowed, "allowed")
    cls = Classification.high if effect > 0 else Classification.low
    return cls, critical, f"{_fmt(effect, unit)}, beyond the {word} {_fmt(limit, unit, False)}"


def _fmt(x: float, unit: str, sign: bool = True) -> str:
    if unit == "%":
        return f"{100 * x:+.1f}%" if sign else f"{100 * x:.1f}%"
    return f"{100 * x:+.2f} pts" if sign else f"{100 * x:.2f} pts"


def classify_values(
    metric: str, group: str, baseline: Sequence[float], candidate: Sequence[float], t: Thresholds
) -> MetricResult:
    """A per-request metric: relative Hodges-Lehmann shift, Mann-Whitney significance."""
    b = np.asarray([x for x in baseline if x is not None and math.isfinite(x)], dtype=float)
    c = np.asarray([x for x in candidate if x is not None and math.isfinite(x)], dtype=float)
    counts: dict[str, object] = {"baseline_n": len(b), "candidate_n": len(c)}
    if len(b) < t.min_samples or len(c) < t.min_samples:
        return MetricResult(metric, group, Classification.nodata, False,
                            f"{len(b)} baseline and {len(c)} candidate values; need {t.min_samples} each",
                            evidence=counts)  # fmt: skip
    b_med, c_med = float(np.median(b)), float(np.median(c))
    if np.ptp(b) == 0 and np.ptp(c) == 0:  # constant samples: no test needed, and none would be valid
        effect = 0.0 if b_med == c_med else (c_med - b_med) / abs(b_med) if b_med else math.copysign(1.0, c_med)
        cls, critical, reason = judge_effect(effect, effect != 0, t, "%")
        return MetricResult(metric, group, cls, critical, reason, b_med, c_med, effect, evidence=counts)
    shift = hodges_lehmann(b, c, 1 - t.alpha)
    scale = abs(b_med) if b_med else float(np.mean(np.abs(b))) or 1.0
    effect = shift.estimate / scale
    cls, critical, reason = judge_effect(effect, shift.p_value < t.alpha, t, "%")
    return MetricResult(metric, group, cls, critical, reason, b_med, c_med, effect, shift.low / scale,
                        shift.high / scale, shift.p_value, counts)  # fmt: skip


def classify_figure(
    metric: str, group: str, baseline: float | None, candidate: float | None, t: Thresholds, missing: str = ""
) -> MetricResult:
    """A window figure (the pool's $/1M tokens or cache hit ratio over the window, as the fleet shows it): not a
    sample, so no test; the effect is the relative change. `missing`: why a side has no figure."""
    if baseline is None or candidate is None:
        return MetricResult(metric, group, Classification.nodata, False, missing or "no figure for the window")
    if baseline == candidate:
        effect = 0.0
    else:
        effect = (candidate - baseline) / abs(baseline) if baseline else math.copysign(1.0, candidate)
    cls, critical, reason = judge_effect(effect, True, t, "%")
    return MetricResult(metric, group, cls, critical, f"{reason} ({baseline:.4g} -> {candidate:.4g} over the window)",
                        baseline, candidate, effect, evidence={"basis": "window figure"})  # fmt: skip


def classify_rate(metric: str, group: str, baseline: tuple[int, int], candidate: tuple[int, int], t: Thresholds
                  ) -> MetricResult:  # fmt: skip
    """(events, trials) per side, e.g. failed requests of all requests: Fisher's exact test, effect in points."""
    (be, bn), (ce, cn) = baseline, candidate
    if bn < t.min_samples or cn < t.min_samples:
        return MetricResult(metric, group, Classification.nodata, False,
                            f"{bn} baseline and {cn} candidate requests; need {t.min_samples} each",
                            evidence={"baseline_n": bn, "candidate_n": cn})  # fmt: skip
    p_value = float(stats.fisher_exact([[ce, cn - ce], [be, bn - be]]).pvalue)
    b_rate, c_rate = be / bn, ce / cn
    cls, critical, reason = judge_effect(c_rate - b_rate, p_value < t.alpha, t, "pts")
    return MetricResult(metric, group, cls, critical, reason, b_rate, c_rate, c_rate - b_rate, p_value=p_value,
                        evidence={"baseline": f"{be}/{bn}", "candidate": f"{ce}/{cn}"})  # fmt: skip
