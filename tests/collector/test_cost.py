from __future__ import annotations

import pytest

from collector.cost import attribute_by_busy_time, pool_cost_usd, summarize_cost


def test_pool_cost_by_hand() -> None:
    # an H100 pool at $2.99/h with 2 replicas for 15 minutes: 2.99 * 2 * 0.25 = 1.495
    assert pool_cost_usd(2.99, 2, 900) == pytest.approx(1.495)
    assert pool_cost_usd(0.0893, 1, 3600) == pytest.approx(0.0893)


def test_unit_costs_by_hand() -> None:
    s = summarize_cost(1.495, requests=1000, output_tokens=250_000, total_tokens=1_000_000)
    assert s.usd_per_m_output_tokens == pytest.approx(5.98)  # 1.495 / 250k * 1e6
    assert s.usd_per_m_total_tokens == pytest.approx(1.495)
    assert s.usd_per_request == pytest.approx(0.001495)


def test_no_traffic_has_no_unit_cost() -> None:
    s = summarize_cost(0.5, requests=0, output_tokens=0, total_tokens=0)
    assert (s.usd_per_m_output_tokens, s.usd_per_m_total_tokens, s.usd_per_request) == (None, None, None)
    assert s.cost_usd == 0.5


def test_attribution_by_busy_time_adds_up() -> None:
    shares = attribute_by_busy_time(1.0, [0.5, 1.5, 2.0])
    assert shares == pytest.approx([0.125, 0.375, 0.5])
    assert sum(shares) == pytest.approx(1.0)
    assert attribute_by_busy_time(0.9, [0.0, 0.0, 0.0]) == pytest.approx([0.3, 0.3, 0.3])
    assert attribute_by_busy_time(1.0, []) == []


@pytest.mark.parametrize("args", [(-1.0, 1, 10.0), (1.0, -1, 10.0), (1.0, 1, -10.0)])
def test_negative_inputs_are_rejected(args: tuple[float, int, float]) -> None:
    with pytest.raises(ValueError):
        pool_cost_usd(*args)
