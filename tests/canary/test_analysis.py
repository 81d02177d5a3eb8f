"""Metrics and verdicts of a canary run on synthetic answers, with values computed by hand."""

from __future__ import annotations

import math

import pytest

from canary.analysis import (
    PerProbe,
    PoolAnswers,
    greedy,
    judge,
    judge_sampled,
    sampled,
    teacher_forced,
    unexpected,
)
from canary.client import Generated, Scored
from canary.probes import Probe
from collector.vocabulary import DriftVerdict

ln = math.log
PROBES = {f"p{i}": Probe(id=f"p{i}", prompt="1+2=", continuation="3", expected="3", alphabet="0123456789",
                         max_tokens=3) for i in range(4)}  # fmt: skip
CONFIDENT = {"t3": ln(0.9), "t4": ln(0.05)}
FLIPPED = {"t3": ln(0.3), "t4": ln(0.6)}
TOP = {"t3": -0.1, "t4": -2.5, "t5": -3.0, "t6": -4.0, "t7": -5.0, "t8": -6.0}


def gen(
    probe: str, text: str, tokens: list[str], top: dict[str, float] | None = None, seed: int | None = None
) -> Generated:
    return Generated(probe, text, tuple(tokens), tuple([top or TOP] * len(tokens)), "stop", seed)


def test_teacher_forced_counts_flips_only_where_the_reference_is_confident() -> None:
    ref = PoolAnswers("ref", {"p0": Scored("p0", (CONFIDENT, FLIPPED, CONFIDENT))})
    pool = PoolAnswers("x", {"p0": Scored("p0", (FLIPPED, FLIPPED, CONFIDENT))})
    kl, flips = teacher_forced(ref, pool)
    # confident positions of the reference: 0 (0.9), 1 (0.6), 2 (0.9); only position 0 flips
    assert flips.values == {"p0": pytest.approx(1 / 3)}
    assert kl.values["p0"] > 0 and "position 0" in kl.detail["p0"]


def test_greedy_finds_a_hard_mismatch_at_a_larger_batch() -> None:
    ref = PoolAnswers("ref", greedy={1: {"p0": gen("p0", "3", ["t3"]), "p1": gen("p1", "3", ["t3"])}})
    pool = PoolAnswers("x", greedy={
        1: {"p0": gen("p0", "3", ["t3"]), "p1": gen("p1", "3", ["t3"])},
        16: {"p0": gen("p0", "#", ["t40"]), "p1": gen("p1", "4", ["t4"])},  # t4 is the reference's 2nd choice
    })  # fmt: skip
    divergence, hard, inconsistent = greedy(ref, pool, PROBES)
    assert divergence.values == {"p0": 1.0, "p1": 1.0}
    assert hard.values == {"p0": 1.0, "p1": 0.0}
    assert "concurrency 16" in hard.detail["p0"] and "'#'" in hard.detail["p0"]
    # the pool emitted t40 and t4 while its own logprobs (TOP) put t3 first: both inconsistent
    assert inconsistent.values == {"p0": 1.0, "p1": 1.0}


def test_unexpected_characters_count_in_greedy_outputs_only() -> None:
    pool = PoolAnswers("x", greedy={1: {"p0": gen("p0", "3#", ["t3", "t40"])}, 4: {"p0": gen("p0", "33", ["t3"] * 2)}},
                       samples={"p0": [gen("p0", "3@", ["t3", "t41"])]})  # fmt: skip
    result = unexpected(pool, PROBES)
    assert (
        result.values == {"p0": pytest.approx(1 / 4)} and "'3#'" in result.detail["p0"]
    )  # the sample's '@' is not counted


def test_a_critical_metric_drifts_on_one_probe_over_its_band() -> None:
    metric = PerProbe("greedy_hard_mismatch", {"p0": 1.0, "p1": 0.0, "p2": 0.0, "p3": 0.0}, {"p0": "at token 0"})
    result = judge(metric, [0.0] * 40, alpha=0.05)
    assert result.verdict is DriftVerdict.drift and result.critical and result.probe == "p0"
    assert result.value == 0.25 and result.band_high == 0.0 and "1/4 probes over the band" in result.evidence
    assert judge(PerProbe("greedy_hard_mismatch", {"p0": 0.0}), [0.0] * 40, 0.05).verdict is DriftVerdict.ok


def test_a_non_critical_metric_needs_more_probes_over_the_band_than_chance() -> None:
    null = [i / 100 for i in range(40)]  # A/A values 0 .. 0.39: the 39th of 40 (ceil(41 * 0.95)) is 0.38
    one_over = PerProbe("greedy_divergence", {f"p{i}": (0.9 if i == 0 else 0.0) for i in range(20)})
    result = judge(one_over, null, alpha=0.05)
    assert result.band_high == pytest.approx(0.38)
    # 1 of 20 over: P(Binomial(20, 0.05) >= 1) = 1 - 0.95^20
    assert result.p_value == pytest.approx(1 - 0.95**20) and result.verdict is DriftVerdict.ok
    many = PerProbe("greedy_divergence", {f"p{i}": (0.9 if i < 6 else 0.0) for i in range(20)})
    assert judge(many, null, alpha=0.05).verdict is DriftVerdict.drift  # 6/20 = 30 % of the probes
    # significant but small: 10 of 100 probes over a zero band, P(Binomial(100, 0.05) >= 10) = 0.028, but
    # 10 % of the probes is not more than the 10 % effect size
    few = PerProbe("greedy_divergence", {f"p{i}": (1.0 if i < 10 else 0.0) for i in range(100)})
    result = judge(few, [0.0] * 100, alpha=0.05)
    assert result.p_value < 0.05 and result.verdict is DriftVerdict.ok


def test_kl_below_the_benign_tolerance_is_not_drift_even_when_aa_is_exactly_zero() -> None:
    small = PerProbe("tf_mean_kl", {f"p{i}": 0.01 for i in range(20)})  # bfloat16-like: every probe a little off
    result = judge(small, [0.0] * 40, alpha=0.05)
    assert result.band_high == 0.05 and result.verdict is DriftVerdict.ok


def test_no_answers_is_nodata_never_ok() -> None:
    assert judge(PerProbe("tf_mean_kl", {}), [0.0], 0.05).verdict is DriftVerdict.nodata
    assert judge_sampled(sampled(PoolAnswers("r"), PoolAnswers("x"), 0.05), 0.05).verdict is DriftVerdict.nodata


def test_sampled_answers_from_another_distribution_drift() -> None:
    same = [gen("p0", "3", ["t3"], seed=i) for i in range(30)]
    ref = PoolAnswers("ref", samples={"p0": same})
    alike = judge_sampled(sampled(ref, PoolAnswers("aa", samples={"p0": same}), 0.05, 99), 0.05)
    assert alike.verdict is DriftVerdict.ok
    boosted = [gen("p0", "#" if i % 2 else "3", ["t40" if i % 2 else "t3"], seed=i) for i in range(30)]
    result = judge_sampled(sampled(ref, PoolAnswers("x", samples={"p0": boosted}), 0.05, 99), 0.05)
    assert result.verdict is DriftVerdict.drift and result.probe == "p0"
