"""Per-pool summaries of one eval run and the verdict of each pool against the reference (pure).

Input: per pool, item id -> correct (True/False) or None (the item failed and was not scored). Pools are
compared with the reference on the items both scored (paired). The verdict is one of a closed set:

- regressed: McNemar's test finds the pool's accuracy lower than the reference's (p < alpha);
- improved: the same test, the other way round;
- pass: no significant difference and non-inferior: the lower bound of the paired difference's interval
  (one-sided alpha) lies above -margin;
- inconclusive: neither (the run is too small: the reason says how many items would detect a drop of `margin`),
  or too many of the pool's items failed (more than `max_error_share`) to call it a pass;
- nodata: nothing to compare (no item scored on the pool, or none on both pools).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collector.vocabulary import EvalVerdict
from evals.stats import Paired, items_needed, mcnemar, paired_difference_interval, wilson_interval

Outcomes = Mapping[str, bool | None]  # item id -> correct, None for an item that failed


@dataclass(frozen=True)
class CompareConfig:
    alpha: float = 0.05
    margin: float = 0.02  # non-inferiority margin, and the drop the sample size is computed for
    power: float = 0.8
    max_error_share: float = 0.05

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be within (0, 0.5), got {self.alpha}")
        if not 0 < self.margin < 1:
            raise ValueError(f"margin must be within (0, 1), got {self.margin}")
        if not 0 < self.power < 1:
            raise ValueError(f"power must be within (0, 1), got {self.power}")


@dataclass(frozen=True)
class PoolSummary:
    pool: str
    items: int
    scored: int
    errors: int
    correct: int
    accuracy: float | None
    ci_low: float
    ci_high: float
    verdict: EvalVerdict
    reason: str
    paired: Paired | None = None
    delta: float | None = None  # pool minus reference accuracy on the paired items
    delta_low: float | None = None
    delta_high: float | None = None
    p_value: float | None = None
    items_needed: int | None = None


def _accuracy(pool: str, outcomes: Outcomes, config: CompareConfig) -> PoolSummary:
    scored = [v for v in outcomes.values() if v is not None]
    correct = sum(scored)
    low, high = wilson_interval(correct, len(scored), 1 - config.alpha)
    accuracy = correct / len(scored) if scored else None
    return PoolSummary(pool, len(outcomes), len(scored), len(outcomes) - len(scored), correct, accuracy, low, high,
                       EvalVerdict.reference, "")  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:+.1f} pts"


def compare_pool(pool: str, outcomes: Outcomes, reference: Outcomes, config: CompareConfig) -> PoolSummary:
    base = _accuracy(pool, outcomes, config)
    if base.scored == 0:
        return _with(base, EvalVerdict.nodata, f"no item was scored ({base.errors} failed)")
    both = [(bool(reference[i]), v) for i, v in outcomes.items() if v is not None and reference.get(i) is not None]
    if not both:
        return _with(base, EvalVerdict.nodata, "no item was scored on both this pool and the reference")
    paired = Paired.from_outcomes(both)
    test = mcnemar(paired.b, paired.c)
    low, high = paired_difference_interval(paired, 1 - 2 * config.alpha)
    needed = items_needed(config.margin, (paired.b + paired.c) / paired.n, config.alpha, config.power)
    detail = dict(paired=paired, delta=paired.difference, delta_low=low, delta_high=high, p_value=test.p_value)
    counts = f"{paired.b} items right only on the reference, {paired.c} only here, of {paired.n} paired"
    if test.p_value < config.alpha:
        verdict = EvalVerdict.regressed if paired.c < paired.b else EvalVerdict.improved
        return _with(base, verdict, f"{_pct(paired.difference)}: {counts} (McNemar p={test.p_value:.2g})", **detail)
    if base.errors > config.max_error_share * base.items:
        reason = f"{base.errors} of {base.items} items failed: too many to call it a pass"
        return _with(base, EvalVerdict.inconclusive, reason, items_needed=needed, **detail)
    if low > -config.margin:
        reason = f"no worse than the reference by {_pct(config.margin)[1:]}: the difference is at least {_pct(low)}"
        return _with(base, EvalVerdict.passed, reason, **detail)
    reason = (f"cannot tell: the difference lies in [{_pct(low)}, {_pct(high)}]; detecting a {_pct(config.margin)[1:]}"
              f" drop needs about {needed} paired items, this run has {paired.n}")  # fmt: skip
    return _with(base, EvalVerdict.inconclusive, reason, items_needed=needed, **detail)


def _with(base: PoolSummary, verdict: EvalVerdict, reason: str, **fields: object) -> PoolSummary:
    from dataclasses import replace

    return replace(base, verdict=verdict, reason=reason, **fields)  # type: ignore[arg-type]


def compare_run(
    outcomes: Mapping[str, Outcomes], reference: str, config: CompareConfig = CompareConfig()
) -> list[PoolSummary]:
    """The reference's summary first, then every other pool against it."""
    if reference not in outcomes:
        raise ValueError(f"the reference {reference!r} has no items in this run; pools: {', '.join(outcomes)}")
    ref = _accuracy(reference, outcomes[reference], config)
    ref_reason = f"{ref.errors} items failed" if ref.errors else "the pool the others are compared with"
    summaries = [_with(ref, EvalVerdict.reference, ref_reason)]
    summaries += [compare_pool(p, o, outcomes[reference], config) for p, o in outcomes.items() if p != reference]
    return summaries
