"""When load-generator requests are sent: gaps between arrivals at a request rate.

The parametrisation is that of `vllm bench serve --request-rate R --burstiness B`: gaps follow a gamma
distribution with shape B and scale 1/(R*B), so the mean gap is 1/R and the coefficient of variation is
1/sqrt(B). B = 1 is a Poisson process (exponential gaps), B < 1 is burstier, B > 1 more regular, B = inf
sends exactly every 1/R seconds. R = inf sends everything at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray


def check_rate(rate: float, burstiness: float) -> None:
    """ValueError naming the parameter unless both are > 0 (inf allowed)."""
    if not rate > 0:  # also rejects NaN
        raise ValueError(f"rate must be > 0 requests/s (inf: all at once), got {rate}")
    if not burstiness > 0:
        raise ValueError(f"burstiness must be > 0 (1: Poisson), got {burstiness}")


def inter_arrival_times(
    count: int, rate: float, *, burstiness: float = 1.0, rng: np.random.Generator
) -> NDArray[np.float64]:
    """`count` gaps in seconds; the i-th request is sent once the first i+1 gaps have passed."""
    check_rate(rate, burstiness)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if math.isinf(rate):
        return np.zeros(count)
    if math.isinf(burstiness):
        return np.full(count, 1.0 / rate)
    return rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=count)


def arrival_offsets(
    count: int, rate: float, *, burstiness: float = 1.0, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Send times of `count` requests from the start, stretched so the last one falls at count/rate.

    As in `vllm bench serve` without ramp-up: the rescaling removes the 1-2% spread of a sum of random gaps,
    so that a run of N requests at rate R lasts N/R seconds whatever the seed.
    """
    offsets = np.cumsum(inter_arrival_times(count, rate, burstiness=burstiness, rng=rng))
    if count and offsets[-1] > 0:
        offsets *= (count / rate) / offsets[-1]
    return offsets


def arrival_gaps(
    rate: float, *, burstiness: float = 1.0, rng: np.random.Generator, batch: int = 256
) -> Iterator[float]:
    """An endless stream of gaps, for runs bounded by a duration rather than a count."""
    check_rate(rate, burstiness)
    while True:
        yield from inter_arrival_times(batch, rate, burstiness=burstiness, rng=rng).tolist()
