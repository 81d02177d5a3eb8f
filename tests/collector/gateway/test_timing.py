from __future__ import annotations

import pytest

from collector.gateway.timing import stream_timing

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
