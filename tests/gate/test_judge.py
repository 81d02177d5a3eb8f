"""The rollout judge on synthetic data: error rates of its statistics, classifications worked out by hand, the
score and verdict, the config's errors, and the reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from collector.vocabulary import GateVerdict
from gate import report
from gate.classify import (
    Classification,
    Direction,
    MetricResult,
    Thresholds,
    classify_rate,
    classify_values,
    hodges_lehmann,
)
from gate.config import GateConfigError, load_gate_config
from gate.data import Span
from gate.judge import GateResult, decide

TTFT = Thresholds(Direction.increase, allowed=0.10, critical=0.50)


def lognormal(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """TTFT-like values: median 100 ms, a quarter of a log unit of spread."""
    return scale * rng.lognormal(np.log(0.1), 0.25, n)


def test_false_fail_rate_on_null_data_is_at_most_5_percent() -> None:
    rng = np.random.default_rng(1)
    trials = [classify_values("ttft", "latency", lognormal(rng, 50), lognormal(rng, 50), TTFT) for _ in range(400)]
    fails = sum(t.classification is not Classification.passed for t in trials)
    assert fails / 400 <= 0.05  # measured: 10 of 400


def test_a_20_percent_ttft_shift_is_detected_with_50_requests_per_side() -> None:
    rng = np.random.default_rng(2)
    trials = [classify_values("ttft", "latency", lognormal(rng, 50), lognormal(rng, 50, 1.2), TTFT) for _ in range(400)]
    detected = sum(t.classification is Classification.high for t in trials)
    assert detected / 400 >= 0.9  # measured: 374 of 400
    assert not any(t.critical for t in trials)  # +20 % is beyond the allowed 10 %, not the critical 50 %


def test_hodges_lehmann_by_hand() -> None:
    # candidate - baseline over all pairs: -1 0 0 1 1 1 2 2 3, median 1
    shift = hodges_lehmann(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    assert shift.estimate == 1.0 and shift.low <= 1.0 <= shift.high


def test_directions_allowed_and_critical_changes() -> None:
    base = [0.100 + 0.001 * i for i in range(40)]
    slower = [2.0 * x for x in base]  # +100 %: significant and beyond the critical 50 %
    result = classify_values("ttft", "latency", base, slower, TTFT)
    assert result.classification is Classification.high and result.critical
    assert result.effect == pytest.approx(1.0, abs=0.05) and "beyond the critical 50.0%" in result.reason
    faster = classify_values("ttft", "latency", base, [0.5 * x for x in base], TTFT)
    assert faster.classification is Classification.passed and faster.reason.startswith("better")
    hits = Thresholds(Direction.decrease, allowed=0.05, critical=None)
    lower = classify_values("cache_hit_ratio", "cost", [0.8 + 0.001 * i for i in range(40)],
                            [0.4 + 0.001 * i for i in range(40)], hits)  # fmt: skip
    assert lower.classification is Classification.low and not lower.critical  # critical: null never fails alone
    slight = classify_values("ttft", "latency", base, [1.05 * x for x in base], TTFT)
    assert slight.classification is Classification.passed  # +5 %: within the allowed 10 %


def test_too_few_values_and_constant_samples() -> None:
    few = classify_values("ttft", "latency", [0.1] * 5, [0.1] * 50, TTFT)
    assert few.classification is Classification.nodata and "5 baseline and 50 candidate values; need 20" in few.reason
    same = classify_values("cache_hit_ratio", "cost", [0.0] * 30, [0.0] * 30, TTFT)
    assert same.classification is Classification.passed and same.effect == 0.0


def test_error_rate_uses_fisher_and_absolute_points() -> None:
    t = Thresholds(Direction.increase, allowed=0.01, critical=0.05)
    worse = classify_rate("error_rate", "errors", (0, 100), (10, 100), t)
    # Fisher's exact test on [[10, 90], [0, 100]]: p = 2 * C(100,10) C(100,0) / C(200,10) summed over the tail
    assert worse.classification is Classification.high and worse.critical and worse.effect == pytest.approx(0.10)
    assert worse.p_value is not None and worse.p_value < 0.01
    same = classify_rate("error_rate", "errors", (1, 100), (2, 100), t)
    assert same.classification is Classification.passed and same.p_value == pytest.approx(1.0)


def result(metric: str, group: str, cls: Classification, critical: bool = False) -> MetricResult:
    return MetricResult(metric, group, cls, critical, f"{metric} says {cls.value}")


def test_score_and_verdict_by_hand() -> None:
    config = load_gate_config()  # groups latency 30, errors 20, cost 10, quality 25, drift 15
    ok = [
        result("ttft", "latency", Classification.passed), result("e2e", "latency", Classification.passed),
        result("error_rate", "errors", Classification.passed), result("cost_per_mtok", "cost", Classification.passed),
        result("eval:arith-v1", "quality", Classification.passed), result("drift:x", "drift", Classification.passed),
    ]  # fmt: skip
    assert decide(config, ok).verdict is GateVerdict.passed and decide(config, ok).score == pytest.approx(100)
    # one of two latency metrics high: latency's share 0.5 -> 100 - 30 * 0.5 = 85: marginal
    half = [result("ttft", "latency", Classification.high), *ok[1:]]
    decision = decide(config, half)
    assert decision.verdict is GateVerdict.marginal and decision.score == pytest.approx(85.0)
    assert "ttft high: ttft says high" in decision.reason
    # a critical result fails whatever the score
    critical = [*ok[:-1], result("drift:unexpected_chars", "drift", Classification.high, critical=True)]
    assert decide(config, critical).verdict is GateVerdict.fail
    # a group without data leaves the score; a must-have metric without data keeps the gate from passing
    no_eval = [*ok[:4], result("eval_accuracy", "quality", Classification.nodata), ok[5]]
    decision = decide(config, no_eval)
    assert decision.score == pytest.approx(100) and decision.verdict is GateVerdict.marginal
    assert decision.reason == "no data for eval_accuracy" and decision.groups["quality"] is None
    nothing = [result("ttft", "latency", Classification.nodata)]
    assert decide(config, nothing).verdict is GateVerdict.nodata


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metrics: {ttft: {allowed: -1}}", "field metrics.ttft.allowed: Input should be greater than or equal to 0"),
        ("metrics: {ttft: {group: speed}}", "metrics.ttft.group: no group 'speed'; groups are latency"),
        ("metrics: {ttft: {allowed: 0.5, critical: 0.2}}", "critical (0.2) must not be below allowed (0.5)"),
        ("thresholds: {pass: 50, marginal: 80}", "marginal (80.0) must not be above pass (50.0)"),
        ("metrics: {latency: {}}", "field metrics.latency: Extra inputs are not permitted"),
        ("alpha: lots", "field alpha: Input should be a valid number"),
        ("- a list", "the top level must be a mapping, got list"),
    ],
)
def test_an_invalid_config_names_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text + "\n")
    with pytest.raises(GateConfigError) as caught:
        load_gate_config(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_a_config_overlays_the_defaults_and_null_switches_a_metric_off(tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text("metrics: {ttft: {allowed: 0.2}, drift: null}\n")
    config = load_gate_config(path)
    assert config.metrics.ttft is not None and config.metrics.ttft.allowed == 0.2
    assert config.metrics.ttft.critical == 0.5 and config.metrics.drift is None


def test_reports() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    results = [result("ttft", "latency", Classification.high), result("eval_accuracy", "quality", Classification.low,
               critical=True), result("tpot", "latency", Classification.nodata), result("e2e", "latency",
               Classification.passed)]  # fmt: skip
    gate = GateResult("g1", "ref", "noisy", Span(now - timedelta(minutes=15), now), GateVerdict.fail, 40.0,
                      "critical: eval_accuracy", results)  # fmt: skip
    suite = ElementTree.fromstring(report.junit(gate)).find("testsuite")
    assert suite is not None and suite.get("tests") == "5" and suite.get("failures") == "3"
    assert suite.get("skipped") == "1"
    failure = suite.find("testcase[@name='eval_accuracy']/failure")
    assert failure is not None and failure.get("type") == "critical"
    md = report.markdown(gate)
    assert "**FAIL**" in md and "| ❌ | **eval_accuracy** (critical) | quality |" in md
    assert json.loads(report.as_json(gate))["metrics"][0]["classification"] == "high"
    assert "exit 1" in report.headline(gate)
