"""The sweep's saturation and knee on hand-made steps (collector/loadgen/sweep.py)."""

from __future__ import annotations

from collector.loadgen.sweep import Step, judge_steps, knee


def step(rate: float, served: float, ttft_ms: float, goodput: float = 1.0, queue_ms: float | None = None) -> Step:
    return Step(rate, served, ttft_ms / 1e3, None if queue_ms is None else queue_ms / 1e3, goodput, 10.0 * rate)


def test_a_pool_that_keeps_up_is_never_saturated() -> None:
    steps = [step(1, 1.0, 50), step(2, 2.0, 52), step(4, 3.9, 55)]
    verdicts = judge_steps(steps)
    assert [v.saturated for v in verdicts] == [False, False, False]
    found = knee(verdicts)
    assert found.step == steps[-1] and found.reason.startswith("every step kept up")


def test_flat_throughput_and_rising_ttft_is_saturation() -> None:
    # capacity ~3 req/s: 4 offered -> 3.0 served (+1.0 for +2 offered: under half) while TTFT p50 50 -> 400 ms (8x)
    steps = [step(1, 1.0, 50), step(2, 2.0, 60), step(4, 3.0, 400), step(8, 3.1, 2500, goodput=0.4)]
    verdicts = judge_steps(steps)
    assert [v.saturated for v in verdicts] == [False, False, True, True]
    assert verdicts[2].reason == (
        "throughput flat (3 requests/s served of 4 offered, +1 for +2 offered) while requests wait (TTFT p50 8.0x "
        "the lowest step's)"
    )
    found = knee(verdicts)
    assert found.step == steps[1] and found.step.usd_per_mtok == 20.0
    assert found.reason.startswith("at 4 requests/s: throughput flat")


def test_a_queue_seen_by_the_engine_counts_and_noise_does_not() -> None:
    # TTFT 2 -> 4 ms is 2x but only 2 ms: noise; the engine's queue 1 -> 30 ms is a queue
    flat_fast = [step(1, 1.0, 2), step(4, 1.5, 4)]
    assert [v.saturated for v in judge_steps(flat_fast)] == [False, False]
    queued = [step(1, 1.0, 2, queue_ms=1), step(4, 1.5, 4, queue_ms=30)]
    verdict = judge_steps(queued)[1]
    assert verdict.saturated and "engine queue p50 30.0x" in verdict.reason


def test_more_throughput_with_higher_ttft_is_load_not_saturation() -> None:
    # TTFT doubles but the pool served all it was offered: busier, not past the knee
    steps = [step(1, 1.0, 50), step(4, 4.0, 120)]
    assert [v.saturated for v in judge_steps(steps)] == [False, False]


def test_the_knee_stops_at_the_first_step_that_misses_the_slo() -> None:
    steps = [step(1, 1.0, 50), step(2, 2.0, 60, goodput=0.85), step(4, 4.0, 70)]
    found = knee(judge_steps(steps, target_goodput=0.9))
    assert found.step == steps[0] and found.reason == "at 2 requests/s: goodput 85.0 % below the target"
    none = knee(judge_steps([step(1, 0.5, 3000, goodput=0.1)], ttft_slo_s=2.0))
    assert none.step is None and none.reason.startswith("not even the lowest step kept up: at 1 requests/s: served")
