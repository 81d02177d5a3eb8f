"""From what the reference and a pool answered to drift metrics, and from metrics to verdicts. Pure.

Per pool, against the reference (the same probes, the same modes):

- tf_mean_kl (teacher-forced): mean KL(ref || pool) over the scored positions, in nats;
- tf_confident_flips (teacher-forced): share of positions where the reference is confident (top-1 p >= 0.5)
  and the pool's top-1 differs;
- greedy_divergence (greedy): 1 if the output differs from the reference's at any concurrency, else 0;
- greedy_hard_mismatch (greedy, critical): 1 if at the first divergence the pool emitted a token outside the
  reference's top-5;
- self_inconsistency (greedy, critical): share of generated tokens that are not the argmax of the pool's
  own reported logprobs;
- unexpected_chars (greedy, critical): share of greedy output characters outside the probe's alphabet;
- sampled_answer_shift (sampled): chi-square (first token, extracted answer) and MMD p-values per probe,
  Benjamini-Hochberg across all of them.

A metric's value is the mean of its per-probe values. Its band is calibrated: the threshold a per-probe value
exceeds with probability <= alpha in A/A runs (the reference against itself), but never below the metric's
tolerance for benign numerics (bfloat16 against float32 moves logprobs; it does not move confident tokens
nor emit unexpected ones). The p-value is a binomial test of how many probes exceed the band, given that
each may by chance with probability alpha. A pool drifts on a metric when that p-value is below alpha and
more than MIN_SHARE (10 %) of the probes are over the band (an effect size: the A/A run of a deterministic
reference is often exactly 0, and a rare benign near-tie must not decide); sampled_answer_shift drifts
when any test is rejected at false-discovery rate alpha.
Critical metrics have zero tolerance: one probe over the band is drift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from canary.client import Generated, Scored
from canary.drift_stats import (
    benjamini_hochberg,
    chi_square_two_sample,
    compare_greedy,
    mmd_hamming,
    null_threshold,
    self_inconsistency,
    sequence_divergence,
    unexpected_rate,
)
from canary.probes import Probe
from collector.vocabulary import DriftVerdict

CRITICAL = frozenset({"greedy_hard_mismatch", "self_inconsistency", "unexpected_chars"})
# benign-numerics floors of the bands (per probe); see the module docstring and docs/CANARY.md
TOLERANCE: dict[str, float] = {
    "tf_mean_kl": 0.05,
    "tf_confident_flips": 0.0,
    "greedy_divergence": 0.0,
    "greedy_hard_mismatch": 0.0,
    "self_inconsistency": 0.0,
    "unexpected_chars": 0.0,
}
CONFIDENT = 0.5  # a position where the reference's top-1 has at least this probability
# effect size: a non-critical metric drifts only when more than this share of the probes is over its band
# (a near-tie that flips on one probe in twenty is numerics; the faults measured flip 36-39 % of the probes)
MIN_SHARE = 0.10


@dataclass(frozen=True)
class PoolAnswers:
    """Everything one pool answered in a canary run."""

    pool: str
    scored: Mapping[str, Scored] = field(default_factory=dict)  # probe id -> teacher-forced distributions
    greedy: Mapping[int, Mapping[str, Generated]] = field(default_factory=dict)  # concurrency -> probe id -> output
    samples: Mapping[str, Sequence[Generated]] = field(default_factory=dict)  # probe id -> sampled outputs


@dataclass(frozen=True)
class PerProbe:
    metric: str
    values: Mapping[str, float]  # probe id -> value
    detail: Mapping[str, str] = field(default_factory=dict)  # probe id -> what shows it (tokens, position)


def _argmax(top: Mapping[str, float]) -> str:
    return max(top, key=top.__getitem__)


def teacher_forced(reference: PoolAnswers, pool: PoolAnswers) -> list[PerProbe]:
    kl: dict[str, float] = {}
    flips: dict[str, float] = {}
    detail: dict[str, str] = {}
    for probe_id, ref in reference.scored.items():
        other = pool.scored.get(probe_id)
        if other is None or len(other.positions) != len(ref.positions):
            continue
        seq = sequence_divergence(ref.positions, other.positions)
        kl[probe_id] = seq.mean_kl
        confident = [
            (r, p)
            for r, p in zip(ref.positions, other.positions, strict=True)
            if math.exp(max(r.values())) >= CONFIDENT
        ]
        flips[probe_id] = sum(_argmax(r) != _argmax(p) for r, p in confident) / len(confident) if confident else 0.0
        detail[probe_id] = (
            f"max KL {seq.max_kl:.3g} at position {seq.worst_position}; top-1 agreement {seq.top1_agreement:.2f}; "
            f"max |dp| {seq.max_abs_dp:.3g}"
        )
    return [PerProbe("tf_mean_kl", kl, detail), PerProbe("tf_confident_flips", flips, detail)]


def greedy(reference: PoolAnswers, pool: PoolAnswers, probes: Mapping[str, Probe]) -> list[PerProbe]:
    """Each concurrency of the pool against the reference at concurrency 1: a probe counts as diverging
    (or hard-mismatching) when it does at any concurrency; the detail says where first."""
    base = reference.greedy.get(min(reference.greedy, default=1), {})
    divergence: dict[str, float] = {}
    hard: dict[str, float] = {}
    inconsistent: dict[str, float] = {}
    detail: dict[str, str] = {}
    for concurrency in sorted(pool.greedy):
        for probe_id, out in pool.greedy[concurrency].items():
            ref = base.get(probe_id)
            if ref is None:
                continue
            cmp = compare_greedy(ref.tokens, ref.top, out.tokens)
            divergence[probe_id] = max(divergence.get(probe_id, 0.0), float(cmp.first_divergence is not None))
            hard[probe_id] = max(hard.get(probe_id, 0.0), float(cmp.hard_mismatch))
            inconsistent[probe_id] = max(inconsistent.get(probe_id, 0.0), self_inconsistency(out.tokens, out.top))
            if cmp.first_divergence is not None and probe_id not in detail:
                detail[probe_id] = (
                    f"at concurrency {concurrency}, token {cmp.first_divergence}: {out.text!r} vs {ref.text!r} "
                    f"({cmp.pool_token} for {cmp.reference_token}; {probes[probe_id].prompt[-20:]!r})"
                )
    return [
        PerProbe("greedy_divergence", divergence, detail), PerProbe("greedy_hard_mismatch", hard, detail),
        PerProbe("self_inconsistency", inconsistent, detail),
    ]  # fmt: skip


def unexpected(pool: PoolAnswers, probes: Mapping[str, Probe]) -> PerProbe:
    """Greedy outputs only: at temperature 1 any token has some probability, and the reference itself now and
    then samples a character it never learned (the detection bench saw it in 4 of 20 runs); what samples say
    about the distribution is for the two-sample tests."""
    texts: dict[str, list[str]] = {}
    for outputs in pool.greedy.values():
        for probe_id, out in outputs.items():
            texts.setdefault(probe_id, []).append(out.text)
    values, detail = {}, {}
    for probe_id, outs in texts.items():
        rate, bad, _ = unexpected_rate(outs, probes[probe_id].alphabet)
        values[probe_id] = rate
        if bad:
            example = next(o for o in outs if any(ch not in probes[probe_id].alphabet for ch in o))
            detail[probe_id] = f"{bad} unexpected characters, e.g. {example!r}"
    return PerProbe("unexpected_chars", values, detail)


def _answer(text: str) -> str:
    return text.strip().split(" ")[0] if text.strip() else "(empty)"


@dataclass(frozen=True)
class SampledTests:
    p_values: Mapping[str, float]  # "probe/test" -> raw p-value
    adjusted: Mapping[str, float]
    rejected: tuple[str, ...]


def sampled(reference: PoolAnswers, pool: PoolAnswers, alpha: float, permutations: int = 300) -> SampledTests:
    raw: dict[str, float] = {}
    for probe_id, ref in reference.samples.items():
        other = pool.samples.get(probe_id)
        if not other or len(ref) < 2 or len(other) < 2:
            continue
        first = [s.tokens[0] if s.tokens else "" for s in ref], [s.tokens[0] if s.tokens else "" for s in other]
        raw[f"{probe_id}/first_token"] = chi_square_two_sample(*first).p_value
        raw[f"{probe_id}/answer"] = chi_square_two_sample(
            [_answer(s.text) for s in ref], [_answer(s.text) for s in other]
        ).p_value
        raw[f"{probe_id}/mmd"] = mmd_hamming([s.text for s in ref], [s.text for s in other], permutations).p_value
    keys = list(raw)
    adjusted, rejected = benjamini_hochberg([raw[k] for k in keys], alpha) if keys else ([], [])
    return SampledTests(
        raw, dict(zip(keys, adjusted, strict=True)), tuple(k for k, r in zip(keys, rejected, strict=True) if r)
    )


@dataclass(frozen=True)
class DriftResult:
    metric: str
    value: float | None
    band_high: float | None
    p_value: float | None
    verdict: DriftVerdict
    critical: bool
    probe: str | None  # the probe that shows it best
    evidence: str


def band_for(metric: str, null: Sequence[float], alpha: float) -> float:
    """The per-probe value above which a probe counts against the pool: the A/A threshold at alpha (the
    largest A/A value where there are too few for that alpha, and for critical metrics), at least the
    metric's tolerance."""
    tolerance = TOLERANCE.get(metric, 0.0)
    if metric in CRITICAL or not null:
        return max(max(null, default=0.0), tolerance)
    threshold = null_threshold(null, alpha)
    return max(threshold if math.isfinite(threshold) else max(null), tolerance)


def judge(per_probe: PerProbe, null: Sequence[float], alpha: float) -> DriftResult:
    """A per-probe metric against its A/A values (see the module docstring)."""
    critical = per_probe.metric in CRITICAL
    if not per_probe.values:
        return DriftResult(per_probe.metric, None, None, None, DriftVerdict.nodata, critical, None, "no probe answered")
    values = per_probe.values
    band = band_for(per_probe.metric, null, alpha)
    over = [p for p, v in values.items() if v > band]
    p_value = float(stats.binomtest(len(over), len(values), min(alpha, 1.0), alternative="greater").pvalue)
    mean = float(np.mean(list(values.values())))
    worst = max(values, key=values.__getitem__)
    drifting = bool(over) if critical else (p_value < alpha and len(over) / len(values) > MIN_SHARE)
    evidence = f"{len(over)}/{len(values)} probes over the band; worst {worst}: {values[worst]:.4g}"
    if worst in per_probe.detail and values[worst] > 0:
        evidence += f" ({per_probe.detail[worst]})"
    verdict = DriftVerdict.drift if drifting else DriftVerdict.ok
    return DriftResult(per_probe.metric, mean, band, p_value, verdict, critical, worst, evidence)


def judge_sampled(tests: SampledTests, alpha: float) -> DriftResult:
    if not tests.p_values:
        return DriftResult("sampled_answer_shift", None, None, None, DriftVerdict.nodata, False, None, "no samples")
    best = min(tests.adjusted, key=tests.adjusted.__getitem__)
    verdict = DriftVerdict.drift if tests.rejected else DriftVerdict.ok
    evidence = f"{len(tests.rejected)}/{len(tests.p_values)} tests rejected at FDR {alpha}; smallest adjusted p: {best}"
    share = len(tests.rejected) / len(tests.p_values)
    return DriftResult(
        "sampled_answer_shift", share, alpha, tests.adjusted[best], verdict, False, best.split("/")[0], evidence
    )
