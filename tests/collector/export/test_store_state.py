"""The store's verdicts on /metrics: read from a real DuckDB store at every scrape, through the real exposition."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.export.store_state import StoreState
from collector.store.api import Store
from collector.vocabulary import DriftVerdict, EvalVerdict, GateVerdict

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ROUTED = {
    "ref": PoolLabels("ref", "cpu", "arith@ref", "r1"),
    "bf16": PoolLabels("bf16", None, "arith@bf16", "r2"),  # hardware unknown: exported as "unknown"
}
REF = {"pool": "ref", "hardware": "cpu", "model": "arith@ref", "revision": "r1"}
BF16 = {"pool": "bf16", "hardware": "unknown", "model": "arith@bf16", "revision": "r2"}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def drift(pool: str, metric: str, value: float | None, verdict: DriftVerdict, seconds_ago: float) -> dict[str, Any]:
    return {"run_id": f"c-{seconds_ago}", "pool": pool, "metric": metric, "value": value, "verdict": verdict,
            "recorded_at": NOW - timedelta(seconds=seconds_ago)}  # fmt: skip


def eval_run(pool: str, accuracy: float | None, delta: float | None, verdict: EvalVerdict) -> dict[str, Any]:
    return {"run_id": "ev1", "suite": "arith-v1", "pool": pool, "reference_pool": "ref", "origin": "inferwatch",
            "items": 8, "scored": 8, "errors": 0, "correct": 6, "accuracy": accuracy, "delta": delta,
            "verdict": verdict, "reason": "by hand", "recorded_at": NOW}  # fmt: skip


def gate(candidate: str, score: float | None, exit_code: int, verdict: GateVerdict) -> dict[str, Any]:
    return {"gate_id": f"g-{candidate}", "baseline": "ref", "candidate": candidate, "verdict": verdict,
            "score": score, "exit_code": exit_code, "detail_json": "{}", "decided_at": NOW}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.duckdb") as s:
        s.append("drift", [
            drift("ref", "tf_mean_kl", 0.001, DriftVerdict.ok, 60),
            drift("bf16", "unexpected_chars", 0.0925, DriftVerdict.drift, 60),
            drift("bf16", "unexpected_chars", 0.5, DriftVerdict.ok, 600),  # older: not the latest
            drift("bf16", "sampled_answer_shift", None, DriftVerdict.nodata, 60),
            drift("gone", "tf_mean_kl", 0.2, DriftVerdict.drift, 60),  # a pool the gateway does not route
        ])  # fmt: skip
        s.append("eval_runs", [
            eval_run("ref", 0.9, None, EvalVerdict.reference),
            eval_run("bf16", 0.75, -0.125, EvalVerdict.regressed),
        ])  # fmt: skip
        s.append("gates", [gate("bf16", 20.0, 1, GateVerdict.fail)])
        yield s


def exported(store: Store) -> GatewayMetrics:
    """The gateway's metrics with the store's state on their registry, as collector/service.py wires them."""
    metrics = GatewayMetrics()
    StoreState(store, ROUTED.get, registry=metrics.registry)
    return metrics


def scrape(metrics: GatewayMetrics) -> Samples:
    """One scrape of /metrics, parsed back: (name, labels) -> value."""
    body, _ = metrics.exposition()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def series(got: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in got.items() if n == name}


def of(labels: dict[str, str], **more: str) -> frozenset[tuple[str, str]]:
    return frozenset({**labels, **more}.items())


def promtool_check(metrics: GatewayMetrics) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian prometheus package (scripts/install-system.sh)"
    body, _ = metrics.exposition()
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


def test_the_latest_verdicts_of_routed_pools_are_exported(store: Store) -> None:
    metrics = exported(store)
    got = scrape(metrics)
    # bf16's latest unexpected_chars run (60 s ago) says drift, value 0.0925; the run 600 s ago is not exported.
    # sampled_answer_shift had no value: flagged 0 and no value series. Pool "gone" is not routed: not exported.
    assert series(got, "inferwatch_drift_value") == {
        of(REF, metric="tf_mean_kl"): 0.001, of(BF16, metric="unexpected_chars"): 0.0925,
    }  # fmt: skip
    assert series(got, "inferwatch_drift_flagged") == {
        of(REF, metric="tf_mean_kl"): 0.0, of(BF16, metric="unexpected_chars"): 1.0,
        of(BF16, metric="sampled_answer_shift"): 0.0,
    }  # fmt: skip
    assert series(got, "inferwatch_eval_accuracy") == {
        of(REF, suite="arith-v1"): 0.9, of(BF16, suite="arith-v1"): 0.75,
    }  # fmt: skip
    assert series(got, "inferwatch_eval_accuracy_delta") == {of(BF16, suite="arith-v1"): -0.125}
    assert series(got, "inferwatch_eval_regressed") == {of(REF, suite="arith-v1"): 0.0, of(BF16, suite="arith-v1"): 1.0}
    assert series(got, "inferwatch_gate_score") == {of(BF16, baseline="ref"): 20.0}
    assert series(got, "inferwatch_gate_exit_code") == {of(BF16, baseline="ref"): 1.0}
    errors = series(got, "inferwatch_export_errors_total")
    assert len(errors) == 8 and set(errors.values()) == {0.0}  # one series per family, from 0
    assert series(got, "inferwatch_pool_figure") == {}  # no request in the last 5 minutes: no figure
    promtool_check(metrics)


def test_each_pools_figures_over_the_last_5_minutes_are_the_fleets(store: Store) -> None:
    now = datetime.now(UTC)
    rows = [{"id": f"r{i}", "pool": "ref", "revision": "r1", "hardware": "cpu", "source": "load", "status": "ok",
             "started_at": now - timedelta(seconds=60 + i), "ttft_s": ttft, "tpot_s": 0.01, "e2e_s": 0.5,
             "prompt_tokens": 100, "cached_tokens": 25, "completion_tokens": 10}
            for i, ttft in enumerate((0.1, 0.2, 0.3))]  # fmt: skip
    rows.append({"id": "e", "pool": "ref", "revision": "r1", "source": "load", "status": "error",
                 "started_at": now - timedelta(seconds=30), "e2e_s": 0.1})  # fmt: skip
    rows.append({"id": "old", "pool": "ref", "revision": "r1", "source": "load", "status": "ok",
                 "started_at": now - timedelta(seconds=900), "ttft_s": 9.0, "e2e_s": 9.0})  # fmt: skip
    store.append("requests", rows)
    store.append("pools", [{"pool": "ref", "revision": "r1", "hardware": "cpu", "accelerator": "cpu", "model": "m",
                            "dtype": "float32", "spec_json": "{}", "replicas": 1, "price_per_hour": 3.6,
                            "recorded_at": now - timedelta(hours=1)}])  # fmt: skip
    got = series(scrape(exported(store)), "inferwatch_pool_figure")
    figure = {dict(labels)["figure"]: v for labels, v in got.items() if dict(labels)["window"] == "5m"}
    assert {dict(labels)["pool"] for labels in got} == {"ref"}
    # the 3 ok requests of the last 5 minutes (not the one 15 minutes ago): TTFT 0.1 0.2 0.3, p50 0.2;
    # 1 error of 4; 3.6 $/h x 300 s = 0.3 $ over 330 tokens; 75 of 300 prompt tokens cached;
    # goodput (data/slo.yaml: ttft 2 s, tpot 100 ms, e2e 10 s): the 3 ok of 4
    assert figure["ttft_p50"] == pytest.approx(0.2)
    assert figure["error_rate"] == pytest.approx(0.25)
    assert figure["usd_per_mtok"] == pytest.approx(0.3 / 330 * 1e6, rel=1e-3)  # the window ends at the scrape
    assert figure["cache_hit_ratio"] == pytest.approx(0.25)
    assert figure["goodput"] == pytest.approx(0.75)
    assert "queue_p50" not in figure  # no engine timings: no series (not a zero)
    from collector.fleet.figures import Window, pool_figures

    (fleet,) = pool_figures(store, Window.last(300, by_revision=False))
    assert figure["ttft_p50"] == fleet.value("ttft_p50") and figure["cache_hit_ratio"] == fleet.value("cache_hit_ratio")


def test_a_newer_run_or_rows_gone_remove_the_old_series_at_the_next_scrape(store: Store) -> None:
    metrics = exported(store)
    assert scrape(metrics)[("inferwatch_drift_flagged", of(BF16, metric="unexpected_chars"))] == 1.0
    # a newer canary run finds no drift and no value; a newer gate passes without a score
    store.append("drift", [drift("bf16", "unexpected_chars", None, DriftVerdict.ok, 0)])
    store.append("gates", [{**gate("bf16", None, 0, GateVerdict.passed), "decided_at": NOW + timedelta(seconds=1)}])
    got = scrape(metrics)
    assert got[("inferwatch_drift_flagged", of(BF16, metric="unexpected_chars"))] == 0.0
    assert ("inferwatch_drift_value", of(BF16, metric="unexpected_chars")) not in got  # not the old 0.0925
    assert series(got, "inferwatch_gate_score") == {}
    assert series(got, "inferwatch_gate_exit_code") == {of(BF16, baseline="ref"): 0.0}
    # the pool's rows are gone from the store (another connection of this process, as retention would)
    with duckdb.connect(store.path) as con:
        con.execute("DELETE FROM drift WHERE pool = 'bf16'")
        con.execute("DELETE FROM eval_runs")
    got = scrape(metrics)
    assert series(got, "inferwatch_drift_flagged") == {of(REF, metric="tf_mean_kl"): 0.0}
    assert series(got, "inferwatch_drift_value") == {of(REF, metric="tf_mean_kl"): 0.001}
    # a family without data exports nothing, not even its HELP line
    body, _ = metrics.exposition()
    assert b"# HELP inferwatch_eval_accuracy " not in body and b"\ninferwatch_eval_accuracy{" not in body
    promtool_check(metrics)


def test_a_failing_query_leaves_out_its_families_only_and_is_logged_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = exported(store)
    metrics.inc_in_flight(ROUTED["ref"])
    with duckdb.connect(store.path) as con:
        con.execute("DROP TABLE eval_runs")  # a table missing
        con.execute("ALTER TABLE gates DROP COLUMN score")  # a query that no longer fits the schema
    with caplog.at_level(logging.DEBUG, logger="collector.export.store_state"):
        for _ in range(3):
            got = scrape(metrics)
    assert not [name for name, _ in got if name.startswith(("inferwatch_eval_", "inferwatch_gate_"))]
    assert got[("inferwatch_drift_flagged", of(BF16, metric="unexpected_chars"))] == 1.0
    assert got[("inferwatch_requests_in_flight", of(REF))] == 1.0  # the gateway's own metrics are still there
    errors = series(got, "inferwatch_export_errors_total")
    failed = ("inferwatch_eval_accuracy", "inferwatch_eval_accuracy_delta", "inferwatch_eval_regressed",
              "inferwatch_gate_score", "inferwatch_gate_exit_code")  # fmt: skip
    assert errors == {
        **{frozenset({("metric", name)}): 3.0 for name in failed},
        frozenset({("metric", "inferwatch_drift_value")}): 0.0,
        frozenset({("metric", "inferwatch_drift_flagged")}): 0.0,
        frozenset({("metric", "inferwatch_pool_figure")}): 0.0,
    }
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2  # once per failing query, not once per scrape
    assert "eval_runs does not exist" in warnings[0].getMessage()
    assert "score" in warnings[1].getMessage()
    promtool_check(metrics)


def test_a_query_that_works_again_is_exported_again_and_says_so(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    metrics = exported(store)
    with duckdb.connect(store.path) as con:
        con.execute("ALTER TABLE gates RENAME TO gates_away")
    assert series(scrape(metrics), "inferwatch_gate_exit_code") == {}
    with duckdb.connect(store.path) as con:
        con.execute("ALTER TABLE gates_away RENAME TO gates")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="collector.export.store_state"):
        got = scrape(metrics)
    assert series(got, "inferwatch_gate_exit_code") == {of(BF16, baseline="ref"): 1.0}
    [recovered] = [r.getMessage() for r in caplog.records]
    assert recovered.startswith("/metrics gates works again (it was: leaves out inferwatch_gate_score, ")
    assert got[("inferwatch_export_errors_total", frozenset({("metric", "inferwatch_gate_score")}))] == 1.0


def test_registering_does_not_query_the_store_and_each_registry_is_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(tmp_path / "s.duckdb") as s, duckdb.connect(s.path) as con:
        con.execute("DROP TABLE drift")
        registry = CollectorRegistry()
        with caplog.at_level(logging.DEBUG, logger="collector.export.store_state"):
            StoreState(s, ROUTED.get, registry=registry)  # describe() names the families: no query yet
            assert caplog.records == []
            # a second one on the same registry would export every family twice
            with pytest.raises(ValueError, match="Duplicated timeseries"):
                StoreState(s, ROUTED.get, registry=registry)
            assert caplog.records == []
            drift_errors = {"metric": "inferwatch_drift_value"}
            assert registry.get_sample_value("inferwatch_export_errors_total", drift_errors) == 1.0
            assert GatewayMetrics().registry.get_sample_value("inferwatch_export_errors_total", drift_errors) is None
