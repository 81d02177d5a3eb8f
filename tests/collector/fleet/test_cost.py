from __future__ import annotations

import pytest

from collector.fleet.cost import BusyCostMeter, pool_cost_usd, summarize_cost


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


@pytest.mark.parametrize("args", [(-1.0, 1, 10.0), (1.0, -1, 10.0), (1.0, 1, -10.0)])
def test_negative_inputs_are_rejected(args: tuple[float, int, float]) -> None:
    with pytest.raises(ValueError):
        pool_cost_usd(*args)


def test_busy_cost_meter_shares_overlapping_time() -> None:
    # 3.6 $/h x 1 replica = 0.001 $/s. A runs 0-2 s, B 1-3 s, C alone 10-11 s.
    # A: 1 s alone (0.001) + 1 s shared by two (0.0005) = 0.0015; B likewise; C 0.001. Busy 4 s = 0.004.
    meter = BusyCostMeter(3.6)
    a = meter.start(0.0)
    b = meter.start(1.0)
    cost_a = meter.finish(a, 2.0)
    cost_b = meter.finish(b, 3.0)
    c = meter.start(10.0)
    cost_c = meter.finish(c, 11.0)
    assert cost_a == pytest.approx(0.0015, abs=1e-15)
    assert cost_b == pytest.approx(0.0015, abs=1e-15)
    assert cost_c == pytest.approx(0.001, abs=1e-15)
    assert cost_a + cost_b + cost_c == pytest.approx(pool_cost_usd(3.6, 1, 4.0))


def test_busy_cost_meter_takes_a_late_clock_reading_as_now() -> None:
    # 3.6 $/h = 0.001 $/s. A starts at 5; B read its clock at 4 but reaches the meter after A: it starts at 5.
    meter = BusyCostMeter(3.6)
    a = meter.start(5.0)
    b = meter.start(4.0)
    assert meter.finish(a, 7.0) == pytest.approx(0.001)  # 2 s shared by two
    assert meter.finish(b, 7.0) == pytest.approx(0.001)


def test_busy_cost_meter_refuses_misuse() -> None:
    meter = BusyCostMeter(1.0)
    with pytest.raises(ValueError, match="finish without start"):
        meter.finish(0.0, 1.0)
    with pytest.raises(ValueError, match="usd_per_hour must be >= 0"):
        BusyCostMeter(-1.0)
