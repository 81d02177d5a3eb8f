"""The store's state on /metrics against a hostile or broken store: label values from the store are bounded (length,
characters, label sets per family), and a store that cannot answer is a fault (inferwatch_store_state_up 0, the
reason in collector/health.py's registry) while /metrics still answers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.export.metrics import GatewayMetrics
from collector.export.store_state import MAX_SERIES, StoreState, label_value
from collector.health import Faults
from collector.store.api import Store
from collector.vocabulary import DriftVerdict, GateVerdict
from tests.collector.export.test_store_state import BF16, REF, ROUTED, drift, gate, of, scrape, series


def exposition(metrics: GatewayMetrics) -> str:
    body, _ = metrics.exposition()
    return body.decode()


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install the Debian prometheus package (scripts/install-system.sh)"
    done = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


@pytest.mark.parametrize(
    ("raw", "bounded"),
    [
        ("tf_mean_kl", "tf_mean_kl"),
        ("a\x00b\nc\rd\te", "a?b?c?d?e"),  # control characters
        ("x\u202ey\u200bz", "x?y?z"),  # a bidi override and a zero-width space (format characters)
        ("a\u2028b\u2029c", "a?b?c"),  # line and paragraph separators
        ('q"u\\o{te}', 'q"u\\o{te}'),  # printable: the exposition escapes " and \ itself
        ("é" * 128, "é" * 128),  # 128 characters: as it is
        ("é" * 129, "é" * 127 + "…"),  # 129: cut to 128, the last one "…"
        (42, "42"),
    ],
)
def test_label_values_from_the_store_are_bounded(raw: object, bounded: str) -> None:
    assert label_value(raw) == bounded


def test_a_hostile_store_gives_bounded_series_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    long_a, long_b = "m" * 200 + "a", "m" * 200 + "b"  # different in the store, equal once cut to 128
    with Store(tmp_path / "s.duckdb") as store:
        store.append("drift", [
            drift("ref", name, 0.5, DriftVerdict.drift, 60)
            for name in ("a", "b\n# TYPE fake gauge", 'c"} 1\nevil{x="', "d", long_a, long_b)
        ])  # fmt: skip
        metrics = GatewayMetrics()
        StoreState(store, ROUTED.get, registry=metrics.registry, max_series=4)
        text = exposition(metrics)
        got = scrape(metrics)
    # ordered by metric: 'a', 'b\n...', 'c"...', 'd' are the first 4 label sets; long_a and long_b are left out
    assert series(got, "inferwatch_drift_value") == {
        of(REF, metric="a"): 0.5, of(REF, metric="b?# TYPE fake gauge"): 0.5,
        of(REF, metric='c"} 1?evil{x="'): 0.5, of(REF, metric="d"): 0.5,
    }  # fmt: skip
    assert series(got, "inferwatch_store_state_dropped_series") == {
        frozenset({("metric", "inferwatch_drift_value")}): 2.0,
        frozenset({("metric", "inferwatch_drift_flagged")}): 2.0,
        **{frozenset({("metric", name)}): 0.0 for name in (
            "inferwatch_eval_accuracy", "inferwatch_eval_accuracy_delta", "inferwatch_eval_regressed",
            "inferwatch_gate_score", "inferwatch_gate_exit_code", "inferwatch_pool_figure")},
    }  # fmt: skip
    assert "\n# TYPE fake gauge" not in text and '\nevil{x="' not in text
    promtool_check(text)


def test_equal_once_cut_is_exported_once(tmp_path: Path) -> None:
    long_a, long_b = "m" * 200 + "a", "m" * 200 + "b"
    with Store(tmp_path / "s.duckdb") as store:
        store.append("drift", [drift("bf16", long_a, 0.25, DriftVerdict.ok, 60),
                               drift("bf16", long_b, 0.75, DriftVerdict.drift, 60)])  # fmt: skip
        metrics = GatewayMetrics()
        StoreState(store, ROUTED.get, registry=metrics.registry)
        got = scrape(metrics)
    # long_a comes first (ORDER BY metric): its value is the one exported under the cut name
    assert series(got, "inferwatch_drift_value") == {of(BF16, metric="m" * 127 + "…"): 0.25}
    assert got[("inferwatch_store_state_dropped_series", frozenset({("metric", "inferwatch_drift_value")}))] == 1.0


def test_at_most_max_series_label_sets_per_family(tmp_path: Path) -> None:
    names = [f"metric_{i:04d}" for i in range(MAX_SERIES + 200)]
    with Store(tmp_path / "s.duckdb") as store:
        store.append("drift", [drift("ref", name, 1.0, DriftVerdict.ok, 60) for name in names])
        metrics = GatewayMetrics()
        StoreState(store, ROUTED.get, registry=metrics.registry)
        got = scrape(metrics)
    exported = series(got, "inferwatch_drift_value")
    assert len(exported) == 1000 and of(REF, metric="metric_0999") in exported
    assert of(REF, metric="metric_1000") not in exported
    assert got[("inferwatch_store_state_dropped_series", frozenset({("metric", "inferwatch_drift_flagged")}))] == 200


def test_a_failing_query_is_a_fault_until_it_works_and_metrics_still_answers(tmp_path: Path) -> None:
    faults = Faults()
    with Store(tmp_path / "s.duckdb") as store:
        store.append("gates", [gate("bf16", 20.0, 1, GateVerdict.fail)])
        metrics = GatewayMetrics()
        metrics.inc_in_flight(ROUTED["ref"])
        StoreState(store, ROUTED.get, registry=metrics.registry, faults=faults)
        assert scrape(metrics)[("inferwatch_store_state_up", frozenset())] == 1.0 and faults.current() == []
        with duckdb.connect(store.path) as con:
            con.execute("ALTER TABLE gates RENAME TO gates_away")
        got = scrape(metrics)
        assert got[("inferwatch_store_state_up", frozenset())] == 0.0
        assert got[("inferwatch_requests_in_flight", of(REF))] == 1.0  # the gateway's own metrics are there
        [fault] = faults.current()
        assert fault.part == "/metrics gates"
        assert fault.reason.startswith("leaves out inferwatch_gate_score, inferwatch_gate_exit_code: the store cannot")
        assert "gates does not exist" in fault.reason
        with duckdb.connect(store.path) as con:
            con.execute("ALTER TABLE gates_away RENAME TO gates")
        got = scrape(metrics)
    assert got[("inferwatch_store_state_up", frozenset())] == 1.0 and faults.current() == []
    assert series(got, "inferwatch_gate_exit_code") == {of(BF16, baseline="ref"): 1.0}


def test_a_store_file_replaced_by_garbage_is_a_fault_of_every_query(tmp_path: Path) -> None:
    faults = Faults()
    path = tmp_path / "s.duckdb"
    with Store(path) as store:
        metrics = GatewayMetrics()
        StoreState(store, ROUTED.get, registry=metrics.registry, faults=faults)
        path.write_bytes(b"this is not a DuckDB file " * 400)
        text = exposition(metrics)
    got = {(s.name, frozenset(s.labels.items())): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    assert got[("inferwatch_store_state_up", frozenset())] == 0.0
    assert [f.part for f in faults.current()] == ["/metrics drift", "/metrics evals", "/metrics figures",
                                                  "/metrics gates"]  # fmt: skip
    assert all(
        f"the store cannot answer (StoreError: {path}" in f.reason or str(path) in f.reason for f in faults.current()
    )  # the store's error names the file (Part B words what to do)
    promtool_check(text)
