"""Verdicts of a pool against the reference on outcomes built by hand."""

from __future__ import annotations

import pytest

from collector.vocabulary import EvalVerdict
from evals.compare import CompareConfig, compare_pool, compare_run


def outcomes(right: int, wrong: int, failed: int = 0, start: int = 0) -> dict[str, bool | None]:
    ids = [f"i{n:04d}" for n in range(start, start + right + wrong + failed)]
    return {i: (True if k < right else False if k < right + wrong else None) for k, i in enumerate(ids)}


def test_a_clear_drop_is_regressed() -> None:
    reference = outcomes(990, 10)  # i0000..i0989 right
    pool = dict(reference)
    for n in range(0, 30):  # 30 items the reference gets right, the pool not
        pool[f"i{n:04d}"] = False
    for n in range(990, 995):  # 5 the other way round
        pool[f"i{n:04d}"] = True
    summary = compare_pool("noisy", pool, reference, CompareConfig())
    assert summary.verdict is EvalVerdict.regressed
    assert summary.paired is not None and (summary.paired.b, summary.paired.c) == (30, 5)
    assert summary.delta == pytest.approx(-0.025)  # (5 - 30) / 1000
    assert summary.p_value == pytest.approx(5.0e-5, rel=0.05)  # chi-square (25 - 1)^2 / 35 = 16.46
    assert "30 items right only on the reference, 5 only here, of 1000 paired" in summary.reason
    assert summary.accuracy == pytest.approx(0.965)


def test_a_few_discordant_items_on_a_large_run_pass_as_non_inferior() -> None:
    reference = outcomes(998, 2)
    pool = dict(reference)
    pool["i0000"], pool["i0001"], pool["i0998"] = False, False, True  # b=2, c=1
    summary = compare_pool("bf16", pool, reference, CompareConfig())
    assert summary.verdict is EvalVerdict.passed and summary.p_value == 1.0  # 2 * P(X <= 1 | 3) = 1
    assert summary.delta_low == pytest.approx(-0.0051, abs=1e-4)  # above -0.02
    assert "no worse than the reference by 2.0 pts" in summary.reason


def test_a_small_run_is_inconclusive_and_says_how_many_items_would_decide() -> None:
    reference, pool = outcomes(20, 0), outcomes(20, 0)
    summary = compare_pool("bf16", pool, reference, CompareConfig())
    assert summary.verdict is EvalVerdict.inconclusive and summary.items_needed == 391
    assert summary.delta_low == pytest.approx(-(1 - 20 / (20 + 1.644854**2)), abs=1e-6)
    assert "needs about 391 paired items, this run has 20" in summary.reason


def test_failed_items_are_left_out_of_the_pairs_and_block_a_pass() -> None:
    reference = outcomes(1000, 0)
    pool = outcomes(900, 0, failed=100)
    summary = compare_pool("flaky", pool, reference, CompareConfig())
    assert (summary.items, summary.scored, summary.errors) == (1000, 900, 100)
    assert summary.paired is not None and summary.paired.n == 900
    assert summary.verdict is EvalVerdict.inconclusive and "100 of 1000 items failed" in summary.reason


def test_nothing_to_compare_is_nodata_never_a_pass() -> None:
    reference = outcomes(10, 0)
    assert compare_pool("down", outcomes(0, 0, failed=10), reference, CompareConfig()).verdict is EvalVerdict.nodata
    other_items = outcomes(10, 0, start=100)
    summary = compare_pool("odd", other_items, reference, CompareConfig())
    assert summary.verdict is EvalVerdict.nodata and "no item was scored on both" in summary.reason


def test_compare_run_puts_the_reference_first() -> None:
    summaries = compare_run({"bf16": outcomes(5, 5), "ref": outcomes(9, 1, failed=1)}, "ref")
    assert [s.pool for s in summaries] == ["ref", "bf16"]
    assert summaries[0].verdict is EvalVerdict.reference and summaries[0].reason == "1 items failed"
    assert summaries[0].accuracy == pytest.approx(0.9)
    with pytest.raises(ValueError, match="the reference 'gpu' has no items in this run; pools: bf16"):
        compare_run({"bf16": outcomes(1, 0)}, "gpu")


def test_compare_config_is_checked() -> None:
    with pytest.raises(ValueError, match="margin must be within"):
        CompareConfig(margin=0)
