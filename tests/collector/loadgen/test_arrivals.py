from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from collector.loadgen.arrivals import arrival_gaps, arrival_offsets, inter_arrival_times

N = 200_000


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_mean_gap_and_cv_match_the_gamma_parametrisation(burstiness: float) -> None:
    rate = 5.0
    gaps = inter_arrival_times(N, rate, burstiness=burstiness, rng=np.random.default_rng(7))
    # gamma(shape k = burstiness, scale 1/(rate k)): mean k * 1/(rate k) = 1/rate, sd sqrt(k)/(rate k),
    # so CV = 1/sqrt(k): 2, 1, 0.5
    mean, cv = gaps.mean(), gaps.std() / gaps.mean()
    # tolerances of 5 standard errors for n = 200k: the sample mean has relative SE CV/sqrt(n); the sample sd
    # has relative SE sqrt((kurtosis - 1) / (4n)) with the gamma kurtosis 3 + 6/k (delta method)
    expected_cv = 1 / math.sqrt(burstiness)
    mean_tol = 5 * expected_cv / math.sqrt(N)  # 2.2%, 1.1%, 0.56%
    sd_tol = 5 * math.sqrt((2 + 6 / burstiness) / (4 * N))  # 2.9%, 1.6%, 1.0%
    assert mean == pytest.approx(1 / rate, rel=mean_tol)
    assert cv == pytest.approx(expected_cv, rel=mean_tol + sd_tol)


def test_all_at_once_and_perfectly_regular() -> None:
    rng = np.random.default_rng(1)
    assert inter_arrival_times(4, math.inf, rng=rng).tolist() == [0.0, 0.0, 0.0, 0.0]
    assert inter_arrival_times(3, 4.0, burstiness=math.inf, rng=rng).tolist() == [0.25, 0.25, 0.25]
    assert inter_arrival_times(0, 2.0, rng=rng).size == 0


def test_the_same_seed_gives_the_same_schedule() -> None:
    a = inter_arrival_times(50, 3.0, burstiness=0.5, rng=np.random.default_rng(11))
    b = inter_arrival_times(50, 3.0, burstiness=0.5, rng=np.random.default_rng(11))
    c = inter_arrival_times(50, 3.0, burstiness=0.5, rng=np.random.default_rng(12))
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_offsets_are_stretched_to_count_over_rate() -> None:
    offsets = arrival_offsets(40, 8.0, rng=np.random.default_rng(3))
    assert offsets[-1] == pytest.approx(40 / 8.0)  # 5 s, as vllm bench serve does without ramp-up
    assert np.all(np.diff(offsets) >= 0) and offsets[0] > 0
    assert arrival_offsets(5, math.inf, rng=np.random.default_rng(3)).tolist() == [0.0] * 5


def test_endless_gaps_continue_the_same_stream() -> None:
    endless = list(itertools.islice(arrival_gaps(2.0, rng=np.random.default_rng(5), batch=8), 20))
    assert len(endless) == 20 and all(g > 0 for g in endless)
    assert endless[:8] == inter_arrival_times(8, 2.0, rng=np.random.default_rng(5)).tolist()


@pytest.mark.parametrize(
    ("rate", "burstiness", "name"),
    [(0.0, 1.0, "rate"), (-2.0, 1.0, "rate"), (math.nan, 1.0, "rate"), (1.0, 0.0, "burstiness"),
     (1.0, -0.5, "burstiness")],
)  # fmt: skip
def test_bad_values_name_the_parameter(rate: float, burstiness: float, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be > 0"):
        inter_arrival_times(3, rate, burstiness=burstiness, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=f"^{name} must be > 0"):
        next(arrival_gaps(rate, burstiness=burstiness, rng=np.random.default_rng(0)))


def test_negative_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="count"):
        inter_arrival_times(-1, 1.0, rng=np.random.default_rng(0))
