"""Drift statistics on synthetic data: values by hand, type-I error over null simulations, power on known shifts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from canary.drift_stats import (
    benjamini_hochberg,
    chi_square_two_sample,
    compare_greedy,
    first_divergence,
    mmd_hamming,
    null_threshold,
    position_divergence,
    self_inconsistency,
    sequence_divergence,
    unexpected_rate,
)

ln = math.log


def test_identical_distributions_do_not_diverge() -> None:
    top = {"a": ln(0.5), "b": ln(0.3)}
    d = position_divergence(top, top)
    assert d.kl == pytest.approx(0.0, abs=1e-12) and d.top1_agree and d.max_abs_dp == pytest.approx(0.0)


def test_swapped_top_two_by_hand() -> None:
    d = position_divergence({"a": ln(0.6), "b": ln(0.4)}, {"a": ln(0.4), "b": ln(0.6)})
    # 0.6 ln(0.6/0.4) + 0.4 ln(0.4/0.6) = 0.2 ln 1.5 (the "rest" buckets hold only the floor on both sides)
    assert d.kl == pytest.approx(0.2 * ln(1.5), rel=1e-4)
    assert not d.top1_agree and d.max_abs_dp == pytest.approx(0.2, rel=1e-4)


def test_a_token_one_side_did_not_report_gets_a_share_of_its_leftover_mass() -> None:
    # the reference reports only a (0.9): c, which the pool reports at 0.05, gets half of the 0.1 left over,
    # the other half stays in the rest bucket; the pool's own rest is 1 - 0.95 = 0.05: both are (0.9, 0.05, 0.05)
    d = position_divergence({"a": ln(0.9)}, {"a": ln(0.9), "c": ln(0.05)})
    assert d.kl == pytest.approx(0.0, abs=1e-9) and d.max_abs_dp == pytest.approx(0.0, abs=1e-9)


def test_sequence_aggregates_positions() -> None:
    same = {"a": ln(0.6), "b": ln(0.4)}
    swapped = {"a": ln(0.4), "b": ln(0.6)}
    s = sequence_divergence([same, same, same, same], [same, swapped, same, same])
    assert s.positions == 4 and s.top1_agreement == 0.75 and s.worst_position == 1
    assert s.mean_kl == pytest.approx(0.2 * ln(1.5) / 4, rel=1e-4) and s.max_kl == pytest.approx(
        0.2 * ln(1.5), rel=1e-4
    )
    with pytest.raises(ValueError, match="same non-zero number"):
        sequence_divergence([same], [same, same])


def test_first_divergence_and_hard_mismatch() -> None:
    assert first_divergence(list("123"), list("123")) is None
    assert first_divergence(list("123"), list("12")) == 2  # one stopped early
    top = [{"1": -0.01}, {"2": -0.01}, {"3": -0.1, "4": -2.5, "5": -3, "6": -4, "7": -5, "8": -6}]
    hard = compare_greedy(list("123"), top, list("129"))
    assert (hard.first_divergence, hard.hard_mismatch, hard.pool_token, hard.reference_token) == (2, True, "9", "3")
    benign = compare_greedy(list("123"), top, list("124"))  # "4" is the reference's second choice
    assert benign.first_divergence == 2 and not benign.hard_mismatch
    assert not compare_greedy(list("123"), top, list("12")).hard_mismatch  # stopping early is not a wrong token


def test_self_inconsistency_by_hand() -> None:
    top = {"a": -0.1, "b": -2.0}
    assert self_inconsistency(["a", "b", "a", "a"], [top] * 4) == 0.25  # "b" is not its own argmax "a"
    # a position without reported logprobs counts neither way: 1 of the 2 that have them
    assert self_inconsistency(["a", "b", "b"], [top, {}, top]) == 0.5
    assert self_inconsistency([], []) == 0.0 and self_inconsistency(["b"], [{}]) == 0.0
    with pytest.raises(ValueError):
        self_inconsistency(["a"], [])


def test_unexpected_characters() -> None:
    assert unexpected_rate(["12", "1#"], "0123456789") == (0.25, 1, 4)
    assert unexpected_rate([], "0") == (0.0, 0, 0)


def test_chi_square_by_hand() -> None:
    # table [[30, 10], [10, 30]]: expected 20 everywhere, chi2 = 4 * 10^2 / 20 = 20 on 1 degree of freedom
    result = chi_square_two_sample(["x"] * 30 + ["y"] * 10, ["x"] * 10 + ["y"] * 30)
    assert result.statistic == pytest.approx(20.0) and result.p_value == pytest.approx(stats.chi2.sf(20, 1))
    assert chi_square_two_sample(["x"] * 5, ["x"] * 7).p_value == 1.0  # one category: nothing to tell apart


def test_chi_square_holds_its_level_under_the_null_with_rare_categories() -> None:
    rng = np.random.default_rng(1)
    probs = [0.5, 0.3, 0.15, 0.03, 0.02]  # two rare categories get pooled
    rejections = sum(
        chi_square_two_sample(list(rng.choice(5, 60, p=probs)), list(rng.choice(5, 60, p=probs))).p_value < 0.05
        for _ in range(1000)
    )
    assert rejections / 1000 <= 0.065  # 0.05 plus two standard errors of 1000 draws


def test_chi_square_detects_a_boosted_rare_token() -> None:
    rng = np.random.default_rng(2)
    base, boosted = [0.6, 0.3, 0.1, 0.0], [0.5, 0.25, 0.1, 0.15]
    power = np.mean([
        chi_square_two_sample(list(rng.choice(4, 100, p=base)), list(rng.choice(4, 100, p=boosted))).p_value < 0.05
        for _ in range(300)
    ])  # fmt: skip
    assert power >= 0.8


def _samples(rng: np.random.Generator, n: int, corrupt: float) -> list[str]:
    """Answers to one addition problem: '432' mostly, a near miss sometimes, a rare '#' at rate `corrupt`."""
    out = []
    for _ in range(n):
        s = "432" if rng.random() < 0.8 else "442"
        out.append(s[:1] + "#" + s[2:] if rng.random() < corrupt else s)
    return out


def test_mmd_holds_its_level_and_has_power() -> None:
    rng = np.random.default_rng(3)
    null = [mmd_hamming(_samples(rng, 30, 0), _samples(rng, 30, 0), 200, seed=i).p_value for i in range(400)]
    assert np.mean(np.array(null) <= 0.05) <= 0.072  # 0.05 plus two standard errors of 400 draws
    shifted = [mmd_hamming(_samples(rng, 30, 0), _samples(rng, 30, 0.4), 200, seed=i).p_value for i in range(100)]
    assert np.mean(np.array(shifted) <= 0.05) >= 0.8


def test_mmd_of_identical_samples_is_not_significant() -> None:
    result = mmd_hamming(["12", "13", "12"], ["12", "13", "12"], 99)
    assert result.p_value > 0.3
    with pytest.raises(ValueError):
        mmd_hamming(["1"], ["1", "2"])


def test_benjamini_hochberg_by_hand() -> None:
    adjusted, rejected = benjamini_hochberg([0.01, 0.04, 0.03, 0.5], alpha=0.05)
    # sorted 0.01 0.03 0.04 0.5 times 4/rank: 0.04 0.06 0.0533 0.5, then the running minimum from the right
    assert adjusted == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert rejected == [True, False, False, False]
    assert benjamini_hochberg([], 0.05) == ([], [])


def test_null_threshold_by_hand_and_its_guarantee() -> None:
    values = [float(v) for v in range(1, 20)]  # 19 A/A values
    assert null_threshold(values, 0.1) == 18.0  # the ceil(20 * 0.9) = 18th smallest
    assert null_threshold(values, 0.01) == math.inf  # 19 values cannot give a 1 % band
    rng = np.random.default_rng(4)
    flagged = 0
    for _ in range(4000):
        draws = rng.gamma(2.0, size=20)  # 19 A/A runs, then a new null run
        flagged += draws[19] > null_threshold(draws[:19].tolist(), 0.1)
    assert flagged / 4000 == pytest.approx(0.1, abs=0.015)  # exactly 2/20 in expectation
