from __future__ import annotations

import pytest

from collector.gateway.timing import choices_timing, stream_timing

MS = 1_000_000  # ns


def test_vllm_bench_definitions_by_hand() -> None:
    # sent at 0; content chunks at 100, 120, 150, 160 ms; 4 completion tokens
    t = stream_timing(0, [100 * MS, 120 * MS, 150 * MS, 160 * MS], 175 * MS, completion_tokens=4)
    assert t.ttft_s == pytest.approx(0.100)
    assert t.e2e_s == pytest.approx(0.160)  # the last content chunk, not the [DONE] at 175 ms
    assert t.tpot_s == pytest.approx((0.160 - 0.100) / 3)  # 0.02
    assert t.itl_p50_s == pytest.approx(0.020)  # gaps 20, 30, 10 ms -> median 20
    assert t.itl_max_s == pytest.approx(0.030)


def test_single_token_has_no_tpot_or_itl() -> None:
    t = stream_timing(5 * MS, [45 * MS], 50 * MS, completion_tokens=1)
    assert (t.ttft_s, t.tpot_s, t.itl_p50_s, t.itl_max_s) == (pytest.approx(0.040), None, None, None)
    assert t.e2e_s == pytest.approx(0.040)


def test_no_content_keeps_only_end_to_end() -> None:
    t = stream_timing(0, [], 250 * MS, completion_tokens=0)
    assert t.ttft_s is None and t.e2e_s == pytest.approx(0.250)


def test_non_monotonic_chunks_are_rejected() -> None:
    with pytest.raises(ValueError, match="monotonic"):
        stream_timing(0, [20 * MS, 10 * MS], 30 * MS, completion_tokens=2)


def test_n_2_tpot_is_per_choice_then_the_mean() -> None:
    # choice 0 at 100, 200, 300 ms; choice 1 at 150, 350, 550 ms (interleaved in one stream); 6 tokens, 3 each
    t = choices_timing(0, [[100 * MS, 200 * MS, 300 * MS], [150 * MS, 350 * MS, 550 * MS]], 600 * MS, 6)
    assert t.tpot_s == pytest.approx(((0.300 - 0.100) / 2 + (0.550 - 0.150) / 2) / 2)  # (0.1 + 0.2) / 2
    assert t.ttft_s == pytest.approx(0.100)  # the first token of any choice
    assert t.e2e_s == pytest.approx(0.550)  # the last token of any choice
    assert t.itl_p50_s == pytest.approx(0.150)  # gaps within a choice: 100, 100, 200, 200 ms -> median 150
    assert t.itl_max_s == pytest.approx(0.200)
    # per chunk it would be (0.55 - 0.1) / 5 = 0.09 and an ITL median of 50 ms
    assert t.tpot_s != pytest.approx((0.550 - 0.100) / 5)


def test_tokens_are_shared_in_proportion_to_each_choice_s_chunks() -> None:
    # 2 chunks for choice 0, 4 for choice 1, 12 tokens: 4 and 8 tokens (2 per chunk)
    t = choices_timing(0, [[10 * MS, 40 * MS], [10 * MS, 20 * MS, 30 * MS, 80 * MS]], 90 * MS, 12)
    assert t.tpot_s == pytest.approx((0.030 / 3 + 0.070 / 7) / 2)


def test_one_choice_is_exactly_the_vllm_bench_definition() -> None:
    chunks = [100 * MS, 120 * MS, 150 * MS, 160 * MS]
    assert choices_timing(0, [chunks], 175 * MS, 4) == stream_timing(0, chunks, 175 * MS, 4)
    assert choices_timing(0, [[], chunks], 175 * MS, 4) == stream_timing(0, chunks, 175 * MS, 4)
    assert choices_timing(0, [], 175 * MS, 0) == stream_timing(0, [], 175 * MS, 0)


def test_a_choice_of_one_token_has_no_tpot_of_its_own() -> None:
    t = choices_timing(0, [[10 * MS], [20 * MS, 40 * MS]], 50 * MS, 3)  # 1 and 2 tokens
    assert t.tpot_s == pytest.approx(0.020)  # only choice 1's (40 - 20) / (2 - 1)
