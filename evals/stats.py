"""Statistics of eval results: pure functions over counts (docs/EVALS.md has the formulas and references).

- Accuracy with a Wilson score interval (Wilson 1927): good coverage near 0 and 1 and for small n, where the
  normal (Wald) interval collapses to zero width.
- Paired comparison of a pool with the reference on the same items: McNemar's test on the discordant pairs
  (b: right on the reference, wrong on the pool; c: the other way round); the exact binomial form when
  b + c < 25, the chi-square with continuity correction otherwise.
- The paired difference of accuracies with Newcombe's hybrid score interval (method 10, Newcombe 1998), and
  non-inferiority: the pool is no worse than the reference by more than `margin` when the interval's lower
  bound lies above -margin.
- How many items a paired run needs to detect a drop of `drop` with power `power` (Connor 1987).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

EXACT_BELOW = 25  # discordant pairs: below this McNemar's chi-square approximation is poor


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval of a binomial proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, n], got {successes} of {n}")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Paired:
    """Counts of items scored on both pools: a both right, b reference only, c pool only, d both wrong."""

    a: int
    b: int
    c: int
    d: int

    @property
    def n(self) -> int:
        return self.a + self.b + self.c + self.d

    @property
    def difference(self) -> float:
        """Pool accuracy minus reference accuracy on the paired items."""
        return (self.c - self.b) / self.n if self.n else 0.0

    @classmethod
    def from_outcomes(cls, outcomes: list[tuple[bool, bool]]) -> Paired:
        """From (reference correct, pool correct) per item."""
        a = sum(r and p for r, p in outcomes)
        b = sum(r and not p for r, p in outcomes)
        c = sum(p and not r for r, p in outcomes)
        return cls(a, b, c, len(outcomes) - a - b - c)


@dataclass(frozen=True)
class McNemar:
    statistic: float | None  # chi-square with continuity correction; None for the exact test
    p_value: float
    exact: bool


def mcnemar(b: int, c: int) -> McNemar:
    """Two-sided McNemar test of b against c discordant pairs."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return McNemar(None, 1.0, True)
    if b + c < EXACT_BELOW:
        p = 2 * float(stats.binom.cdf(min(b, c), b + c, 0.5))
        return McNemar(None, min(1.0, p), True)
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemar(statistic, float(stats.chi2.sf(statistic, 1)), False)


def paired_difference_interval(paired: Paired, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for pool minus reference accuracy on paired items."""
    n = paired.n
    if n == 0:
        return -1.0, 1.0
    pool_right, ref_right = paired.a + paired.c, paired.a + paired.b
    p1, p2 = pool_right / n, ref_right / n
    l1, u1 = wilson_interval(pool_right, n, confidence)
    l2, u2 = wilson_interval(ref_right, n, confidence)
    margins = (paired.a + paired.b) * (paired.c + paired.d) * (paired.a + paired.c) * (paired.b + paired.d)
    phi = (paired.a * paired.d - paired.b * paired.c) / math.sqrt(margins) if margins else 0.0
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    difference = p1 - p2
    return max(-1.0, difference - delta), min(1.0, difference + epsilon)


def items_needed(drop: float, discordant_rate: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired items needed for McNemar's test (two-sided at `alpha`) to detect an accuracy drop of `drop`
    with probability `power`, when a share `discordant_rate` of items disagree between the pools (Connor 1987).
    The rate can be no smaller than the drop itself (a drop of 5 points moves at least 5 % of the items)."""
    if not 0 < drop < 1:
        raise ValueError(f"drop must be within (0, 1), got {drop}")
    psi = min(1.0, max(discordant_rate, drop))
    z_alpha = float(stats.norm.ppf(1 - alpha / 2))
    z_beta = float(stats.norm.ppf(power))
    root = z_alpha * math.sqrt(psi) + z_beta * math.sqrt(psi - drop * drop)
    return math.ceil(root * root / (drop * drop))
