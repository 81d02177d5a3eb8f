"""What each metric reads from a real DuckDB store seeded with known rows; every value computed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.alerts.evaluate import Sample
from collector.alerts.rules import AlertConfig
from collector.alerts.sources import read_samples
from collector.store.api import Store

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def request(i: str, pool: str, seconds_ago: float, **values: Any) -> dict[str, Any]:
    return {"id": i, "pool": pool, "revision": "r1", "source": "load", "started_at": ago(seconds_ago), "status": "ok",
            **values}  # fmt: skip


def ok(i: str, pool: str, seconds_ago: float, ttft: float, cached: int) -> dict[str, Any]:
    return request(i, pool, seconds_ago, ttft_s=ttft, tpot_s=0.01, e2e_s=1.0, prompt_tokens=100, cached_tokens=cached,
                   completion_tokens=10)  # fmt: skip


def eval_run(pool: str, verdict: str, delta: float | None, accuracy: float | None = 0.8) -> dict[str, Any]:
    return {"run_id": "ev1", "suite": "arith-v1", "pool": pool, "reference_pool": "ref", "origin": "inferwatch",
            "items": 8, "scored": 8, "errors": 0, "correct": 6, "accuracy": accuracy, "delta": delta,
            "verdict": verdict, "reason": "by hand", "recorded_at": ago(60)}  # fmt: skip


def gate(candidate: str, exit_code: int, seconds_ago: float, score: float) -> dict[str, Any]:
    verdict = {0: "pass", 1: "fail", 2: "marginal"}[exit_code]
    return {"gate_id": f"g-{candidate}-{seconds_ago}", "baseline": "ref", "candidate": candidate, "verdict": verdict,
            "score": score, "exit_code": exit_code, "detail_json": "{}", "decided_at": ago(seconds_ago)}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.duckdb") as s:
        s.append("pools", [
            {"pool": "a", "revision": "r1", "hardware": "cpu", "accelerator": "cpu", "model": "m@a", "replicas": 1,
             "price_per_hour": 3.6, "spec_json": "{}", "recorded_at": ago(900)},
        ])  # fmt: skip
        s.append("requests", [
            ok("a1", "a", 250, 0.1, 50), ok("a2", "a", 200, 0.4, 50), ok("a3", "a", 150, 0.2, 0),
            ok("a4", "a", 100, 0.3, 0), request("a5", "a", 50, status="error", e2e_s=0.5),
            ok("old", "a", 400, 9.0, 0),  # before the 5-minute window
            ok("b1", "b", 100, 0.1, 0),  # one request: under min_requests 2
        ])  # fmt: skip
        drift = {"run_id": "c1", "value": 1.0, "recorded_at": ago(60)}
        s.append("drift", [
            {**drift, "pool": "boost", "metric": "greedy_hard_mismatch", "verdict": "drift"},
            {**drift, "pool": "boost", "metric": "unexpected_chars", "verdict": "drift"},
            {**drift, "pool": "boost", "metric": "tf_mean_kl", "verdict": "ok"},
            {**drift, "pool": "boost", "metric": "tf_mean_kl", "verdict": "drift", "recorded_at": ago(600)},  # older
            {**drift, "pool": "bf16", "metric": "greedy_hard_mismatch", "verdict": "ok"},
            {**drift, "pool": "empty", "metric": "greedy_hard_mismatch", "verdict": "nodata"},
        ])  # fmt: skip
        s.append("eval_runs", [
            eval_run("ref", "reference", None, 0.9), eval_run("noisy", "regressed", -0.125),
            eval_run("bf16", "pass", -0.002), eval_run("empty", "nodata", None, None),
        ])  # fmt: skip
        s.append("gates", [gate("noisy", 0, 600, 90.0), gate("noisy", 1, 60, 20.0), gate("bf16", 2, 60, 70.0)])
        yield s


def rules(*specs: tuple[str, str, dict[str, Any]]) -> AlertConfig:
    return AlertConfig.model_validate(
        {"rules": [{"name": name, "metric": metric, "condition": "> 0", **extra} for name, metric, extra in specs]}
    )


def values(samples: list[Sample]) -> dict[tuple[str, ...], tuple[Any, str]]:
    return {tuple(s.subject.values()): (s.value, s.evidence) for s in samples}


def test_request_metrics_over_the_window(store: Store) -> None:
    window = {"window": "5m", "min_requests": 2}
    config = rules(("p99", "ttft_p99", window), ("p50", "ttft_p50", window), ("err", "error_rate", window),
                   ("cost", "cost_per_mtok", window), ("hit", "cache_hit_ratio", window))  # fmt: skip
    got = {name: values(samples) for name, samples in read_samples(store, config.rules, NOW).items()}
    # pool a in the last 300 s: ok TTFTs 0.1 0.2 0.3 0.4 (and one error); p99 at rank 0.99 * 3 = 2.97
    assert got["p99"][("a", "r1")] == (pytest.approx(0.3 + 0.97 * 0.1), "4 ok requests over 5m")
    assert got["p50"][("a", "r1")][0] == pytest.approx(0.25)
    assert got["err"][("a", "r1")] == (pytest.approx(1 / 5), "1 of 5 requests failed over 5m")
    # 3.6 $/h x 1 replica x 300 s = 0.3 $ for 4 x (100 + 10) tokens
    assert got["cost"][("a", "r1")] == (pytest.approx(0.3 / 440 * 1e6), "$0.3 over 5m for 440 tokens")
    assert got["hit"][("a", "r1")] == (
        pytest.approx(100 / 400),
        "100 of 400 prompt tokens from the prefix cache over 5m",
    )
    # pool b: 1 request, no price
    assert got["err"][("b", "r1")] == (None, "1 requests over 5m, fewer than min_requests 2")


def test_goodput_against_the_default_slo(store: Store) -> None:
    (good,) = read_samples(store, rules(("good", "goodput", {"window": "5m", "min_requests": 2})).rules, NOW).values()
    # pool a in the last 5 minutes: 4 ok (TTFT <= 0.4 s, TPOT 10 ms, e2e 1 s: all within data/slo.yaml) and 1 error
    assert values(good)[("a", "r1")] == (
        pytest.approx(4 / 5),
        "4 of 5 requests within ttft <= 2000 ms, tpot <= 100 ms, e2el <= 10000 ms over 5m",
    )


def test_no_price_is_no_data_not_zero(store: Store) -> None:
    (cost,) = read_samples(store, rules(("cost", "cost_per_mtok", {})).rules, NOW).values()
    assert values(cost)[("b", "r1")] == (None, "no price for pool b in the store")


def test_verdict_metrics_read_the_latest_runs(store: Store) -> None:
    config = rules(("drift", "drift", {}), ("reg", "eval_regressed", {}), ("drop", "eval_accuracy_drop", {}),
                   ("gate", "gate_failed", {}))  # fmt: skip
    got = {name: values(samples) for name, samples in read_samples(store, config.rules, NOW).items()}
    assert got["drift"] == {
        ("bf16",): (0.0, "no drift on the 1 metrics measured"),
        ("boost",): (2.0, "drift on greedy_hard_mismatch, unexpected_chars"),  # tf_mean_kl's latest verdict is ok
        ("empty",): (None, "the latest canary run had no data on any metric"),
    }
    # the reference and a run that scored nothing have no value to judge
    assert got["reg"] == {("bf16", "arith-v1"): (0.0, "latest run: pass"),
                          ("noisy", "arith-v1"): (1.0, "latest run: regressed")}  # fmt: skip
    assert got["drop"] == {
        ("bf16", "arith-v1"): (pytest.approx(0.002), "accuracy 0.8, -0.002 vs the reference"),
        ("noisy", "arith-v1"): (0.125, "accuracy 0.8, -0.125 vs the reference"),
    }
    assert got["gate"] == {
        ("bf16", "ref"): (0.0, "latest gate against ref: exit code 2, score 70.0"),
        ("noisy", "ref"): (1.0, "latest gate against ref: exit code 1, score 20.0"),  # the earlier pass is older
    }
