"""Capacity sweep (pure): a load run in steps of rising request rate, each step judged saturated or not, and per
pool the knee: the highest offered rate at which the pool still kept up and met the SLO, with its requests/s and
$/1M tokens there (the cost owner's number).

A step is **saturated** for a pool when both hold:
- throughput is flat: the pool's ok requests/s grew by less than `flat` (half) of the offered increase over the
  step before, or it achieved less than `keep_up` (80 %) of what it was offered;
- requests wait: its TTFT p50 (or the engine's queue p50, where the pool sends it) is above `rise` (1.5x) the
  lowest of the steps before, and above it by more than `min_rise_s` (10 ms: noise on an idle pool is not a queue).
The first step has nothing to compare with: it is saturated only when it kept up with less than `keep_up` of its
offered rate and its TTFT p50 is above the SLO's bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

FLAT = 0.5
KEEP_UP = 0.8
RISE = 1.5
MIN_RISE_S = 0.010


@dataclass(frozen=True)
class Step:
    """One pool in one step of the sweep."""

    rate: float  # requests/s offered to this pool
    throughput: float | None  # ok requests/s it served (ok / the step's span)
    ttft_p50: float | None  # seconds
    queue_p50: float | None  # the engine's queue p50, seconds (None: not sent)
    goodput: float | None  # share of the step's requests within the SLO
    usd_per_mtok: float | None


@dataclass(frozen=True)
class Verdict:
    step: Step
    saturated: bool
    meets_slo: bool
    reason: str  # why it is saturated (or "")


@dataclass(frozen=True)
class Knee:
    """The highest step that kept up and met the SLO (None: not even the first)."""

    step: Step | None
    reason: str


def _rose(now: float | None, before: Sequence[float | None], rise: float, min_rise_s: float) -> float | None:
    """`now` over the lowest of `before` when it rose beyond both limits, else None."""
    known = [b for b in before if b is not None]
    if now is None or not known:
        return None
    low = min(known)
    return now / low if now > rise * low and now - low > min_rise_s and low > 0 else None


def judge_steps(
    steps: Sequence[Step], *, target_goodput: float = 0.9, ttft_slo_s: float | None = None, flat: float = FLAT,
    keep_up: float = KEEP_UP, rise: float = RISE, min_rise_s: float = MIN_RISE_S,
) -> list[Verdict]:  # fmt: skip
    """Each step (in the order run, rates rising) judged saturated or not, and whether it met the SLO."""
    verdicts: list[Verdict] = []
    for i, step in enumerate(steps):
        meets = step.goodput is not None and step.goodput >= target_goodput
        served = step.throughput or 0.0
        behind = served < keep_up * step.rate
        if i == 0:
            late = ttft_slo_s is not None and step.ttft_p50 is not None and step.ttft_p50 > ttft_slo_s
            ttft_ms = 1e3 * (step.ttft_p50 or 0.0)
            reason = (
                f"served {served:.3g} of {step.rate:.3g} requests/s offered, TTFT p50 {ttft_ms:.0f} ms over the SLO"
                if behind and late
                else ""
            )
            verdicts.append(Verdict(step, bool(reason), meets, reason))
            continue
        prev = steps[i - 1]
        gained = served - (prev.throughput or 0.0)
        offered = step.rate - prev.rate
        flat_now = behind or (offered > 0 and gained < flat * offered)
        earlier = steps[:i]
        ttft_rise = _rose(step.ttft_p50, [s.ttft_p50 for s in earlier], rise, min_rise_s)
        queue_rise = _rose(step.queue_p50, [s.queue_p50 for s in earlier], rise, min_rise_s)
        if flat_now and (ttft_rise or queue_rise):
            waits = f"TTFT p50 {ttft_rise:.1f}x" if ttft_rise else f"engine queue p50 {queue_rise:.1f}x"
            reason = (
                f"throughput flat ({served:.3g} requests/s served of {step.rate:.3g} offered, +{gained:.3g} for "
                f"+{offered:.3g} offered) while requests wait ({waits} the lowest step's)"
            )
            verdicts.append(Verdict(step, True, meets, reason))
        else:
            verdicts.append(Verdict(step, False, meets, ""))
    return verdicts


def knee(verdicts: Sequence[Verdict]) -> Knee:
    """The highest-rate step before the first that is saturated or misses the SLO."""
    best: Step | None = None
    for v in verdicts:
        if v.saturated or not v.meets_slo:
            why = v.reason if v.saturated else f"goodput {_share(v.step.goodput)} below the target"
            at = f"at {v.step.rate:.3g} requests/s: {why}"
            return Knee(best, at if best else f"not even the lowest step kept up: {at}")
        best = v.step
    return Knee(best, "every step kept up and met the SLO: the knee is above the highest rate swept")


def _share(x: float | None) -> str:
    return "none" if x is None else f"{100 * x:.1f} %"
