"""The eval statistics against values worked out by hand (and one published interval)."""

from __future__ import annotations

import math

import pytest

from evals.stats import Paired, items_needed, mcnemar, paired_difference_interval, wilson_interval


def test_wilson_interval_of_8_of_10() -> None:
    # z = 1.95996, z^2/n = 0.384146: centre (0.8 + 0.192073) / 1.384146 = 0.716740,
    # half 1.415995 * sqrt(0.016 + 0.0096036) = 0.226577
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490162, abs=1e-6) and high == pytest.approx(0.943318, abs=1e-6)


def test_wilson_interval_at_the_edges_keeps_a_width() -> None:
    # 10 of 10: the lower bound is n / (n + z^2) = 10 / 13.841459; a Wald interval would be [1, 1]
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(10 / (10 + 1.959964**2), abs=1e-6) and high == pytest.approx(1.0)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes must be within"):
        wilson_interval(11, 10)


def test_mcnemar_is_exact_for_few_discordant_pairs() -> None:
    # b=2, c=8: 2 * P(X <= 2 | 10, 1/2) = 2 * (1 + 10 + 45) / 1024
    result = mcnemar(2, 8)
    assert result.exact and result.p_value == pytest.approx(112 / 1024)
    assert mcnemar(8, 2).p_value == result.p_value
    assert mcnemar(0, 0).p_value == 1.0
    assert mcnemar(5, 5).p_value == 1.0  # 2 * P(X <= 5 | 10) > 1 is capped


def test_mcnemar_uses_the_continuity_corrected_chi_square_from_25_pairs() -> None:
    # b=30, c=10: (|30 - 10| - 1)^2 / 40 = 9.025; with 1 degree of freedom p = erfc(sqrt(9.025 / 2))
    result = mcnemar(30, 10)
    assert not result.exact and result.statistic == pytest.approx(9.025)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)))


def test_paired_counts_from_outcomes() -> None:
    paired = Paired.from_outcomes([(True, True), (True, False), (True, False), (False, True), (False, False)])
    assert paired == Paired(a=1, b=2, c=1, d=1) and paired.difference == pytest.approx(-0.2)


def test_newcombe_interval_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:2635, Table II: a=36, b=12, c=2, d=0, method 10: 0.0569 to 0.3404
    # (for the difference b - c; ours is pool minus reference = (c - b) / n, so the signs turn)
    low, high = paired_difference_interval(Paired(36, 12, 2, 0))
    assert low == pytest.approx(-0.3404, abs=5e-5) and high == pytest.approx(-0.0569, abs=5e-5)


def test_newcombe_interval_in_the_degenerate_corners() -> None:
    # every item right on both: phi is 0 (a margin is empty), the interval is +-(1 - Wilson lower bound of 20/20)
    low, high = paired_difference_interval(Paired(20, 0, 0, 0), confidence=0.90)
    edge = 1 - 20 / (20 + 1.644854**2)
    assert low == pytest.approx(-edge, abs=1e-6) and high == pytest.approx(edge, abs=1e-6)
    # reference right on all 10, pool wrong on all: the upper bound is -1 + sqrt(2) * z^2 / (n + z^2)
    low, high = paired_difference_interval(Paired(0, 10, 0, 0))
    assert low == -1.0 and high == pytest.approx(-1 + math.sqrt(2) * 3.841459 / 13.841459, abs=1e-6)


def test_items_needed_to_detect_a_drop() -> None:
    # drop 0.05, no discordance seen (so psi = 0.05): (1.959964 * sqrt(0.05) + 0.841621 * sqrt(0.0475))^2 / 0.0025
    assert items_needed(0.05, 0.0) == 155
    assert items_needed(0.02, 0.0) == 391  # (0.277181 + 0.117827)^2 / 0.0004 = 390.08
    assert items_needed(0.02, 0.10) == 1960  # more disagreement needs more items
    with pytest.raises(ValueError, match="drop must be within"):
        items_needed(0.0, 0.1)
