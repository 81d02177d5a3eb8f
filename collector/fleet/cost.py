"""What serving costs: pool cost over a window, per-token and per-request figures, per-request cost online.

A pool costs price_per_hour x replicas for every hour it is up, busy or not. Over a window:
    cost = price_per_hour * replicas * window_s / 3600
    $/1M output tokens = cost / output_tokens * 1e6, $/1M total tokens likewise, $/request = cost / requests.
A request's cost_usd is its share of the pool's busy time while it ran (BusyCostMeter: processor sharing
among the requests in flight).
"""

from __future__ import annotations

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


class BusyCostMeter:
    """Per-request cost online, by processor sharing of a pool's busy time.

    While n requests are in flight on a pool each is charged rate / n per second, rate being the pool's
    price_per_hour x replicas / 3600. The meter keeps the running integral of rate / n(t) ("virtual
    time"); a request costs the integral's growth between its start and its end. Requests that overlap
    share the cost, and the costs of all requests add up to the pool's cost over its busy time. Idle time
    is charged to no request: it shows in the pool's window cost (`pool_cost_usd`) and $/token figures.
    """

    def __init__(self, usd_per_hour: float) -> None:
        if usd_per_hour < 0:
            raise ValueError("usd_per_hour must be >= 0")
        self.rate = usd_per_hour / SECONDS_PER_HOUR
        self._in_flight = 0
        self._last_s = 0.0
        self._integral = 0.0

    def _advance(self, now_s: float) -> None:
        # callers read the clock before they get here; a reading older than the last event counts as now
        now_s = max(now_s, self._last_s)
        if self._in_flight:
            self._integral += self.rate * (now_s - self._last_s) / self._in_flight
        self._last_s = now_s

    def start(self, now_s: float) -> float:
        """A request begins; returns the token to pass to `finish`."""
        self._advance(now_s)
        self._in_flight += 1
        return self._integral

    def finish(self, token: float, now_s: float) -> float:
        """The request that got `token` ends; returns its cost in USD."""
        if self._in_flight == 0:
            raise ValueError("finish without start")
        self._advance(now_s)
        self._in_flight -= 1
        return self._integral - token
