"""What serving costs: pool cost over a window, per-token and per-request figures, per-request attribution.

A pool costs price_per_hour x replicas for every hour it is up, busy or not. Over a window:
    cost = price_per_hour * replicas * window_s / 3600
    $/1M output tokens = cost / output_tokens * 1e6, $/1M total tokens likewise, $/request = cost / requests.
Per-request cost_usd attributes the window's cost by share of busy time: request i gets
cost * e2e_i / sum(e2e) — so idle capacity is charged to the traffic that kept the pool up, and the
attributed costs add up to the pool's cost exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0


def pool_cost_usd(price_per_hour: float, replicas: int, window_s: float) -> float:
    if price_per_hour < 0 or replicas < 0 or window_s < 0:
        raise ValueError("price, replicas and window must be >= 0")
    return price_per_hour * replicas * window_s / SECONDS_PER_HOUR


@dataclass(frozen=True)
class CostSummary:
    cost_usd: float
    requests: int
    output_tokens: int
    total_tokens: int
    usd_per_m_output_tokens: float | None
    usd_per_m_total_tokens: float | None
    usd_per_request: float | None


def summarize_cost(cost_usd: float, requests: int, output_tokens: int, total_tokens: int) -> CostSummary:
    """Unit costs; None where the denominator is zero (no traffic is not free traffic)."""

    def per(count: int, scale: float = 1.0) -> float | None:
        return cost_usd / count * scale if count > 0 else None

    return CostSummary(
        cost_usd=cost_usd,
        requests=requests,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        usd_per_m_output_tokens=per(output_tokens, 1e6),
        usd_per_m_total_tokens=per(total_tokens, 1e6),
        usd_per_request=per(requests),
    )


def attribute_by_busy_time(cost_usd: float, e2e_s: Sequence[float]) -> list[float]:
    """Each request's share of the window's cost, proportional to its end-to-end time."""
    if any(t < 0 for t in e2e_s):
        raise ValueError("end-to-end times must be >= 0")
    busy = sum(e2e_s)
    if busy == 0:
        return [cost_usd / len(e2e_s)] * len(e2e_s) if e2e_s else []
    return [cost_usd * t / busy for t in e2e_s]
