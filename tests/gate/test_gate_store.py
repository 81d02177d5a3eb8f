"""`inferwatch gate` on a real DuckDB store filled with synthetic rows: a slower, failing, regressed and drifting
candidate fails naming the critical metric; an identical one passes; an empty window is never a pass; the
verdict is stored; bad options exit 3."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from collector.fleet.report import Window, fleet_report
from collector.store.api import Store
from collector.vocabulary import GateVerdict
from gate.classify import MetricResult
from gate.config import load_gate_config
from gate.data import Span
from gate.judge import run_gate
from tests.conftest import inferwatch

# made again when the store is filled: the CLI judges the window before *its* now, and this module may run
# long after it was imported (the whole suite collects first, then runs for half an hour)
NOW = datetime.now(UTC)


def requests(pool: str, ttft_scale: float, errors: int, n: int = 200, seed: int = 0) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        ttft = float(ttft_scale * rng.lognormal(np.log(0.05), 0.2))
        rows.append({
            "id": f"{pool}-{i}", "pool": pool, "source": "load", "started_at": NOW - timedelta(seconds=60 + i),
            "status": "error" if i < errors else "ok", "ttft_s": ttft, "tpot_s": 0.01, "e2e_s": ttft + 0.05,
            "prompt_tokens": 10, "completion_tokens": 5, "cached_tokens": 0, "cost_usd": 1e-6,
        })  # fmt: skip
    return rows


def evals(pool: str, wrong: int, run_id: str = "ev1", n: int = 300) -> list[dict[str, object]]:
    return [{"run_id": run_id, "pool": pool, "suite": "arith-v1", "item_id": f"i{i}", "correct": i >= wrong,
             "recorded_at": NOW - timedelta(seconds=30)} for i in range(n)]  # fmt: skip


def canary(pool: str, unexpected: bool) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    at = NOW - timedelta(seconds=20)
    probes = [{"run_id": "cn1", "pool": pool, "reference_pool": "ref", "probe_id": "p1", "mode": "greedy@1",
               "tokens_json": "[]", "recorded_at": at}]  # fmt: skip
    drift = [{"run_id": "cn1", "pool": pool, "metric": metric, "value": value, "band_high": 0.0, "p_value": 0.01,
              "verdict": verdict, "evidence_json": json.dumps({"mode": "greedy", "evidence": f"{metric} evidence"}),
              "recorded_at": at}
             for metric, value, verdict in (("unexpected_chars", 0.2 if unexpected else 0.0,
                                             "drift" if unexpected else "ok"), ("tf_mean_kl", 0.01, "ok"))]  # fmt: skip
    return probes, drift


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    global NOW
    NOW = datetime.now(UTC)
    path = tmp_path_factory.mktemp("gate") / "store.duckdb"
    with Store(path) as store:
        # every pool at 3.6 $/h, priced before the window (the collector's snapshot at its start)
        store.append("pools", [{"pool": pool, "revision": "r1", "hardware": "cpu", "accelerator": "cpu",
                                "model": f"m@{pool}", "dtype": "float32", "spec_json": "{}", "replicas": 1,
                                "price_per_hour": 3.6, "recorded_at": NOW - timedelta(hours=1)}
                               for pool in ("ref", "twin", "bad", "coal")])  # fmt: skip
        store.append("requests", requests("ref", 1.0, errors=0, seed=1) + requests("twin", 1.0, errors=0, seed=2)
                     + requests("bad", 1.6, errors=20, seed=3))  # fmt: skip
        store.append("eval_items", evals("ref", 3) + evals("twin", 3) + evals("bad", 40))
        for pool, unexpected in (("twin", False), ("bad", True)):
            probes, drift = canary(pool, unexpected)
            store.append("probes", probes)
            store.append("drift", drift)
    return path


def test_a_regressed_candidate_fails_naming_the_critical_metrics(store_path: Path) -> None:
    with Store(store_path) as store:
        result = run_gate(store, "ref", "bad", Span(NOW - timedelta(minutes=15), NOW), load_gate_config())
    by_metric = {r.metric: r for r in result.results}
    assert result.verdict is GateVerdict.fail and result.exit_code == 1
    assert by_metric["ttft"].critical and by_metric["ttft"].effect == pytest.approx(0.6, abs=0.1)  # +60 % > 50 %
    assert by_metric["error_rate"].critical and by_metric["error_rate"].effect == pytest.approx(0.10)  # 20/200
    assert by_metric["eval:arith-v1"].critical and by_metric["eval:arith-v1"].evidence["reference_only"] == 37
    assert by_metric["drift:unexpected_chars"].critical
    assert not by_metric["drift:tf_mean_kl"].critical and by_metric["drift:tf_mean_kl"].classification == "pass"
    assert result.reason.startswith("critical: ttft")
    # the window's cost over its ok tokens: 180 ok of bad against 200 of ref, same price: +11.1 % > 5 % allowed
    assert by_metric["cost_per_mtok"].classification == "high" and not by_metric["cost_per_mtok"].critical
    assert by_metric["cost_per_mtok"].effect == pytest.approx(200 / 180 - 1)
    # goodput against data/slo.yaml (ttft 2 s, tpot 100 ms, e2el 10 s): every ok request within it, the 20
    # errors misses: 200/200 -> 180/200, -10 pts (Fisher p < 1e-5): beyond the allowed 5, not the critical 20
    good = by_metric["goodput"]
    assert (good.baseline, good.candidate, good.effect) == (1.0, 0.9, pytest.approx(-0.10))
    assert good.classification == "low" and not good.critical
    assert good.evidence["slo"] == "ttft <= 2000 ms, tpot <= 100 ms, e2el <= 10000 ms"
    assert result.sources == {"baseline_requests": 200, "candidate_requests": 200, "eval_runs": {"arith-v1": "ev1"},
                              "canary_run": "cn1"}  # fmt: skip


def test_an_identical_candidate_passes(store_path: Path) -> None:
    with Store(store_path) as store:
        result = run_gate(store, "ref", "twin", Span(NOW - timedelta(minutes=15), NOW), load_gate_config())
    assert [r.metric for r in result.results if r.classification != "pass"] == []
    assert result.verdict is GateVerdict.passed and result.score == pytest.approx(100.0)


def test_the_gates_cost_and_cache_are_the_fleets_figures_for_the_window(store_path: Path) -> None:
    span = Span(NOW - timedelta(minutes=15), NOW)
    with Store(store_path) as store:
        result = run_gate(store, "ref", "bad", span, load_gate_config())
        fleet = {r.stats.pool: r for r in fleet_report(store, Window(span.start, span.end, by_revision=False))}
    by_metric = {r.metric: r for r in result.results}
    # 3.6 $/h x 900 s = 0.9 $ over ref's 200 x 15 tokens: 300 $/1M tokens, as the fleet table has it
    assert by_metric["cost_per_mtok"].baseline == pytest.approx(0.9 / 3000 * 1e6)
    assert by_metric["cost_per_mtok"].baseline == pytest.approx(fleet["ref"].usd_per_m_total_tokens)
    assert by_metric["cost_per_mtok"].candidate == pytest.approx(fleet["bad"].usd_per_m_total_tokens)
    assert by_metric["cache_hit_ratio"].baseline == fleet["ref"].request_cache_hit_ratio == 0.0


def test_a_coalescing_candidate_is_judged_on_the_engines_tpot(tmp_path: Path, store_path: Path) -> None:
    # coal: every answer in one read (client TPOT 0), the engine's TPOT 3x ref's 10 ms
    rows = requests("coal", 1.0, errors=0, seed=4)
    for r in rows:
        r |= {"tpot_s": 0.0, "engine_tpot_s": 0.03, "token_events": 5, "chunk_arrivals": 1}
    span = Span(NOW - timedelta(minutes=15), NOW)
    with Store(store_path) as store:
        store.append("requests", rows)
        result = run_gate(store, "ref", "coal", span, load_gate_config())
    tpot = next(r for r in result.results if r.metric == "tpot")
    assert tpot.evidence["tpot_basis"] == {"baseline": "client", "candidate": "engine"}
    assert (tpot.baseline, tpot.candidate) == (pytest.approx(0.01), pytest.approx(0.03))
    assert tpot.classification == "high" and tpot.effect == pytest.approx(2.0)
    # without the engine's timings a coalesced stream has no TPOT to judge: nodata with the reason, never a pass
    with Store(store_path) as store:
        store.append("requests", [{**r, "id": f"bare-{r['id']}", "pool": "bare", "engine_tpot_s": None} for r in rows])
        bare = run_gate(store, "ref", "bare", span, load_gate_config())
    tpot = next(r for r in bare.results if r.metric == "tpot")
    assert tpot.classification == "nodata"
    assert (
        tpot.reason
        == "bare: pool bare coalesces its stream and sends no per-request metrics (vLLM --enable-per-request-metrics)"
    )


def test_cost_is_compared_only_over_alike_work(store_path: Path, tmp_path: Path) -> None:
    # long: ref's requests but 50 output tokens each (ref: 5), and half the rate (100 requests in the window)
    rows = [{**r, "id": f"long-{r['id']}", "pool": "long", "completion_tokens": 50}
            for r in requests("ref", 1.0, errors=0, seed=1)[:100]]  # fmt: skip
    span = Span(NOW - timedelta(minutes=15), NOW)
    with Store(store_path) as store:
        store.append("pools", [{"pool": "long", "revision": "r1", "hardware": "cpu", "accelerator": "cpu",
                                "model": "m@long", "dtype": "float32", "spec_json": "{}", "replicas": 1,
                                "price_per_hour": 3.6, "recorded_at": NOW - timedelta(hours=1)}])  # fmt: skip
        store.append("requests", rows)
        result = run_gate(store, "ref", "long", span, load_gate_config())
    cost = next(r for r in result.results if r.metric == "cost_per_mtok")
    assert cost.classification == "nodata" and cost.baseline is None
    # 200 and 100 requests over the 900 s window; 5 and 50 completion tokens per request
    assert cost.reason.startswith(
        "the pools served unlike work in the window (baseline vs candidate: load 0.222 vs 0.111 requests/s (more "
        "than 25% apart); completion tokens per request 5 vs 50 (more than 10% apart)): compare cost over"
    )
    # the tolerances are the config's: loose enough, the cost is judged: 0.9 $ over 100 x 60 tokens against ref's
    # 200 x 15, half the $ per token
    loose = tmp_path / "loose.yaml"
    loose.write_text("like_for_like: {mix: 10, load: 1}\n")
    judged = run_gate_at(store_path, "long", loose)
    assert judged.classification != "nodata" and judged.effect == pytest.approx(3000 / 6000 - 1)


def run_gate_at(store_path: Path, candidate: str, config: Path) -> MetricResult:
    with Store(store_path) as store:
        result = run_gate(store, "ref", candidate, Span(NOW - timedelta(minutes=15), NOW), load_gate_config(config))
    return next(r for r in result.results if r.metric == "cost_per_mtok")


def test_value_sources_judge_latency_on_those_requests_and_errors_on_all(store_path: Path) -> None:
    span = Span(NOW - timedelta(minutes=15), NOW, value_sources=("canary",))
    with Store(store_path) as store:
        result = run_gate(store, "ref", "bad", span, load_gate_config())
    by_metric = {r.metric: r for r in result.results}
    # every synthetic request is `load`: no latency values from canary requests, but the errors still count
    assert by_metric["ttft"].classification == "nodata"
    assert by_metric["error_rate"].critical and by_metric["error_rate"].effect == pytest.approx(0.10)


def test_cli_formats_store_the_verdict_and_exit_codes(store_path: Path, tmp_path: Path) -> None:
    base = ["gate", "--store", str(store_path), "--home", str(tmp_path), "--baseline", "ref"]
    failed = inferwatch(*base, "--candidate", "bad")
    assert failed.returncode == 1, failed.stderr
    assert "FAIL" in failed.stdout and "ttft !" in failed.stdout
    junit = tmp_path / "gate.xml"
    passed = inferwatch(*base, "--candidate", "twin", "--format", "junit", "--output", str(junit))
    assert passed.returncode == 0 and "PASS" in passed.stdout and "<testsuite" in junit.read_text()
    md = inferwatch(*base, "--candidate", "twin", "--format", "md")
    assert md.stdout.startswith("## Rollout gate: `twin` against `ref` — **PASS**")
    with Store(store_path) as store:
        verdicts = store.query("SELECT candidate, verdict, exit_code FROM gates ORDER BY decided_at").to_pylist()
    assert verdicts[:2] == [{"candidate": "bad", "verdict": "fail", "exit_code": 1},
                            {"candidate": "twin", "verdict": "pass", "exit_code": 0}]  # fmt: skip


def test_an_empty_window_is_never_a_pass(store_path: Path, tmp_path: Path) -> None:
    done = inferwatch("gate", "--store", str(store_path), "--home", str(tmp_path), "--baseline", "ref",
                      "--candidate", "nosuchpool")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "NODATA" in done.stdout and "no metric has data" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidate", "ref"], "--baseline and --candidate are both 'ref'"),
        (["--candidate", "bad", "--config", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read"),
    ],
)
def test_bad_options_exit_3(store_path: Path, tmp_path: Path, args: list[str], message: str) -> None:
    done = inferwatch("gate", "--store", str(store_path), "--home", str(tmp_path), "--baseline", "ref", *args)
    assert done.returncode == 3 and message in done.stderr, done.stderr
