"""The dashboard's pure computations, by hand: changes between windows, how figures read, time buckets,
cost per bucket, token labels, the order of divergences; where the app reads (what the launcher passes it);
and `inferwatch dashboard` refusing a busy port."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from collector.fleet.report import PoolPrice
from dashboards.data import Location, location
from dashboards.drift_view import Output, divergences
from dashboards.fleet_figures import FIGURES, PoolFigures, changes, show, show_change
from dashboards.launch import ROOT, environment
from dashboards.series import bucket_seconds, cost_frame
from dashboards.tokens import label, vocabulary
from tests.conftest import DATA, inferwatch

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def figures(pool: str, **values: float | None) -> PoolFigures:
    return PoolFigures(pool, "r1", "cpu", 1, {f.key: values.get(f.key) for f in FIGURES})


def test_changes_only_where_both_windows_have_the_figure() -> None:
    now = [figures("a", ttft_p50_ms=250.0, error_rate=0.2), figures("b", ttft_p50_ms=10.0)]
    before = [figures("a", ttft_p50_ms=150.0, error_rate=None)]
    delta = changes(now, before)
    assert delta["a", "r1"]["ttft_p50_ms"] == pytest.approx(100.0)
    assert delta["a", "r1"]["error_rate"] is None  # nothing to compare with
    assert all(v is None for v in delta["b", "r1"].values())  # b had no previous window


def test_how_figures_read() -> None:
    by_key = {f.key: f for f in FIGURES}
    assert show(by_key["ttft_p50_ms"], 99.96) == "100 ms" and show(by_key["ttft_p50_ms"], 25.04) == "25.0 ms"
    assert show(by_key["usd_per_m_tokens"], 8181.8) == "$8,182" and show(by_key["req_per_s"], 5 / 3600) == "0.00139"
    assert show(by_key["error_rate"], None) == "–"
    assert show_change(by_key["usd_per_m_tokens"], -8181.8) == "-$8,182"
    assert show_change(by_key["cache_hit_ratio"], 0.25) == "+25.0 pts"


def test_buckets_are_round_and_at_most_sixty() -> None:
    assert [bucket_seconds(s) for s in (60, 900, 3600, 6 * 3600, 7 * 86400)] == [1, 15, 60, 600, 21600]


def test_a_bucket_cut_by_the_window_costs_only_its_part() -> None:
    series = pa.Table.from_pylist([
        {"bucket": T0, "pool": "a", "revision": "r1", "requests": 2, "ok": 2, "prompt_tokens": 100,
         "completion_tokens": 10},
        {"bucket": T0 + timedelta(seconds=60), "pool": "a", "revision": "r1", "requests": 1, "ok": 0,
         "prompt_tokens": 0, "completion_tokens": 0},
    ])  # fmt: skip
    frame = cost_frame(series, {("a", "r1"): PoolPrice(3.6, 2)}, 60, T0 + timedelta(seconds=30), T0 + timedelta(1))
    # 3.6 $/h x 2 replicas x 30 s inside the window = 0.06 $ over 110 tokens; the second bucket has no tokens
    assert frame["$/1M tokens"].tolist() == pytest.approx([0.06 / 110 * 1e6])
    assert frame["$/1M output tokens"].tolist() == pytest.approx([0.06 / 10 * 1e6])


def test_tokens_read_through_the_model_vocabulary() -> None:
    vocab = vocabulary(str(DATA / "models" / "arith"))
    assert label("token_id:7", vocab) == "'3' (7)" and label("token_id:2", vocab) == "'</s>' (2)"
    assert label("token_id:7", {}) == "token_id:7" and label(None, vocab) == "∅"
    assert vocabulary("org/hub-model") == {}


def out(pool: str, probe: str, mode: str, tokens: list[str]) -> Output:
    return Output(pool, probe, mode, None, "", tuple(tokens), tuple({t: -0.1} for t in tokens))


def test_hard_mismatches_first_then_divergences_then_agreement() -> None:
    reference = [out("ref", p, "greedy@1", ["a", "b"]) for p in ("p1", "p2", "p3")]
    reference.append(out("ref", "p1", "greedy@4", ["x", "y"]))  # not the baseline: concurrency 1 is
    pool = [
        out("pool", "p1", "greedy@1", ["a", "b"]),  # the same
        out("pool", "p2", "greedy@4", ["a", "c"]),  # c is not in the reference's top: hard, at 1
        out("pool", "p3", "greedy@1", ["a"]),  # stopped early: a divergence at 1, not hard
        out("pool", "p3", "sampled", ["z"]),  # sampled outputs are not compared
    ]
    found = [(d.pool.probe_id, d.first, d.hard) for d in divergences(reference, pool)]
    assert found == [("p2", 1, True), ("p3", 1, False), ("p1", None, False)]


def test_the_app_reads_where_the_launcher_points_it(tmp_path: Path) -> None:
    store = str(tmp_path / "s.duckdb")
    env = environment(store, tmp_path / "collector.json", {"PYTHONPATH": "/elsewhere"})
    assert location(env) == Location(store, tmp_path / "collector.json")
    assert env["PYTHONPATH"] == f"{ROOT}:/elsewhere"


def test_the_command_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = inferwatch("dashboard", "--port", str(port), "--home", str(tmp_path), timeout=60)
    assert done.returncode == 3
    assert f"--port: port {port} on 127.0.0.1 is already in use" in done.stderr
