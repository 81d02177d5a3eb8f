"""The Streamlit app on a store seeded with known rows (seed.py): what each page shows equals the figures
computed by hand there."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from dashboards.drift_view import VERDICT_COLOURS
from tests.dashboards.conftest import OpenApp

PAGES = ("fleet", "latency_cost", "drift", "evals", "gates_alerts")


def metrics(at: AppTest) -> list[tuple[str, str, str]]:
    return [(m.label, m.value, m.delta) for m in at.metric]


def test_fleet_shows_each_pool_with_changes_against_the_hour_before(app: OpenApp) -> None:
    at = app()
    assert [s.value for s in at.subheader][:2] == ["bf16 · cpu · r2", "ref · cpu · r1"]
    bf16, ref = metrics(at)[:10], metrics(at)[10:20]
    assert ref == [
        ("req/s", "0.00139", "+0.000833"),
        ("TTFT p50", "250 ms", "+100 ms"),
        ("TTFT p99", "397 ms", "+198 ms"),
        ("queue p50", "–", ""),  # no engine timings in these rows
        ("TPOT p50", "25.0 ms", "+10.0 ms"),
        ("TPOT p99", "39.7 ms", "+19.8 ms"),
        ("error rate", "20.0%", "+20.0 pts"),
        ("$/1M tokens", "$8,182", "-$8,182"),
        ("cache hit", "25.0%", "+25.0 pts"),
        ("goodput", "80.0%", "-20.0 pts"),
    ]
    # no previous window for bf16: no changes
    assert bf16 == [
        ("req/s", "0.000278", ""), ("TTFT p50", "500 ms", ""), ("TTFT p99", "500 ms", ""), ("queue p50", "–", ""),
        ("TPOT p50", "50.0 ms", ""), ("TPOT p99", "50.0 ms", ""), ("error rate", "0.0%", ""),
        ("$/1M tokens", "$6,545", ""), ("cache hit", "0.0%", ""), ("goodput", "100.0%", ""),
    ]  # fmt: skip
    table = at.dataframe[0].value
    assert list(table["pool"]) == ["bf16", "ref"] and list(table["requests"]) == [1, 5]


def test_fleet_filters_by_pool_and_revision(app: OpenApp) -> None:
    at = app()
    at.multiselect[0].select("ref").run()
    assert next(s.value for s in at.subheader) == "ref · cpu · r1" and len(at.metric) == 10
    at.multiselect[0].unselect("ref").run()
    at.multiselect[1].select("r2").run()
    assert next(s.value for s in at.subheader) == "bf16 · cpu · r2" and len(at.metric) == 10


def test_fleet_over_the_whole_store_has_no_previous_window(app: OpenApp) -> None:
    at = app(window="everything in the store")
    ref = dict((label, (value, delta)) for label, value, delta in metrics(at)[10:20])
    # all 6 ok ref requests: TTFT 0.1 0.1 0.2 0.2 0.3 0.4 -> p50 0.2 s; 7 requests, 1 error
    assert ref["TTFT p50"] == ("200 ms", "")
    assert ref["error rate"] == ("14.3%", "")


def test_latency_and_cost_buckets(app: OpenApp) -> None:
    at = app("latency_cost")
    latency, cost = at.dataframe[0].value, at.dataframe[1].value
    ref = latency[(latency.pool == "ref") & (latency.metric == "TTFT")]
    assert len(ref) == 1  # the four ok requests of the hour share one minute
    assert ref.iloc[0][["p50", "p90", "p99"]].tolist() == pytest.approx([250.0, 370.0, 397.0])
    ref_cost = cost[cost.pool == "ref"]
    assert ref_cost["$/1M tokens"].tolist() == pytest.approx([0.06 / 440 * 1e6])
    assert ref_cost["$/1M output tokens"].tolist() == pytest.approx([0.06 / 40 * 1e6])
    charts = at.get("vega_lite_chart")
    assert len(charts) == 3


def test_drift_heatmap_is_coloured_by_verdict(app: OpenApp) -> None:
    at = app("drift")
    grid = at.dataframe[0].value
    assert grid.loc["boost", "greedy_divergence"] == "drift"
    assert grid.loc["boost", "sampled_answer_shift"] == "nodata"
    assert grid.loc["bf16", "tf_mean_kl"] == "ok"
    assert grid.loc["bf16", "sampled_answer_shift"] == ""
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    scale = next(layer["encoding"]["color"]["scale"] for layer in spec["layer"] if "color" in layer["encoding"])
    assert dict(zip(scale["domain"], scale["range"], strict=True)) == {
        "ok": "#2e7d32", "drift": "#c62828", "nodata": "#9e9e9e"
    } == VERDICT_COLOURS  # fmt: skip


def test_drift_drill_down_shows_the_first_divergence_and_the_top_logprobs_there(app: OpenApp) -> None:
    at = app("drift")
    assert at.selectbox[0].value == "boost"  # drifting pools first
    assert at.selectbox[1].options[0] == "p1 at concurrency 4: first divergence at token 1 (hard mismatch)"
    divergence = next(m for m in at.metric if m.label == "First divergence (token index)")
    assert (divergence.value, divergence.delta) == ("1", "hard mismatch")
    side = at.dataframe[1].value
    assert side["reference"].tolist() == ["'3' (7)", "'5' (9)", "'</s>' (2)"]
    assert side["pool"].tolist() == ["'3' (7)", "'#' (48)", "'</s>' (2)"]
    assert side[""].tolist() == ["", "◀ first divergence", ""]
    reference_top, pool_top = at.table[1].value, at.table[2].value
    assert reference_top["token"].tolist() == ["'5' (9)", "'4' (8)", "'6' (10)", "'0' (4)", "'1' (5)"]
    assert pool_top["token"].tolist() == ["'5' (9)", "'4' (8)", "'\\#' (48)"]  # Markdown of "'#' (48)"
    assert pool_top["logprob"].tolist() == [-0.03, -4.0, -9.5]


def test_evals_show_accuracy_intervals_and_the_paired_difference(app: OpenApp) -> None:
    at = app("evals")
    rows = {r["pool"]: r for r in at.table[0].value.to_dict("records")}
    # st.table renders Markdown: its text cells are escaped (dashboards/markdown.py), "[" as "\["
    assert rows["ref"]["accuracy"] == "90.0%" and rows["ref"]["95% CI"] == "\\[82.6%, 94.5%\\]"
    assert rows["noisy"]["accuracy"] == "80.0%" and rows["noisy"]["95% CI"] == "\\[71.1%, 86.7%\\]"
    assert rows["noisy"]["Δ vs ref"] == "-10.0 pts" and rows["noisy"]["Δ 95% CI"] == "\\[-17.0 pts, -3.0 pts\\]"
    assert rows["noisy"]["p"] == "0.002" and rows["noisy"]["verdict"] == "regressed"


def test_gates_and_alerts_show_every_verdict_and_delivery(app: OpenApp) -> None:
    at = app("gates_alerts")
    assert "bf16 against ref: FAIL" in [s.value for s in at.subheader]
    assert any("Score **75** / 100, exit code 1." in m.value for m in at.markdown)
    history = at.dataframe[0].value
    assert history[["candidate", "baseline", "verdict", "exit code"]].values.tolist() == [["bf16", "ref", "fail", 1]]
    gate_metrics = at.table[0].value
    assert gate_metrics[["metric", "result", "critical"]].values.tolist() == [["ttft", "high", True]]
    changes, deliveries = at.dataframe[1].value, at.dataframe[2].value
    assert changes[["rule", "status", "labels"]].values.tolist() == [
        ["InferwatchTTFTHigh", "firing", "pool=bf16, severity=warning"]
    ]
    assert deliveries[["attempt", "outcome", "HTTP"]].values.tolist() == [[2, "delivered", 200], [1, "retrying", 503]]
    body = json.loads(at.code[0].value)
    assert body["version"] == "4" and body["alerts"][0]["labels"]["pool"] == "bf16"
