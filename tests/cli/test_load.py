"""`inferwatch load` and `inferwatch fleet` as a user runs them, against a collector in front of a scripted upstream."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import daemon
from collector.fleet.report import Window, fleet_report
from collector.loadgen.job import WorkloadSpec, build_workload
from collector.state import CollectorState
from collector.store.door import open_reader
from inferwatch.cli.options import parse_duration
from tests.collector.faulty_upstream import FaultyUpstream, start_collector
from tests.conftest import flush_collector, inferwatch


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, CollectorState]]:
    home = tmp_path_factory.mktemp("cli-load")
    with FaultyUpstream() as upstream:
        state = start_collector(home, upstream)
        yield home, state
        daemon.down(home / "collector.json")


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "15m", "2h", "1d", "30", "0.5m")] == [90, 900, 7200, 86400, 30, 30]
    for bad in ("", "m", "fifteen", "-5m", "0s"):
        with pytest.raises(argparse.ArgumentTypeError, match="duration"):
            parse_duration(bad)


def test_mixed_workload_alternates_prefix_and_arith() -> None:
    items = build_workload(WorkloadSpec(dataset="mixed", count=5, prefix_len=256, seed=3))
    assert len(items) == 5
    assert [item.expected is None for item in items] == [True, False, True, False, True]
    assert items[0].prompt_tokens == 1 + 256 + 16 and items[1].prompt.endswith("=")


def test_load_reports_each_pool_and_the_rows_land_in_the_store(collector: tuple[Path, CollectorState]) -> None:
    home, state = collector
    done = inferwatch("load", "--home", str(home), "--pools", "ok,err500", "--num-requests", "10",
                      "--dataset", "arith", "--rate", "50", "--seed", "1", timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    run = re.search(r"load run (\w+): 10 requests", done.stdout)
    assert run, done.stdout
    assert "HTTP 502" in done.stdout and "err500" in done.stdout  # the error table names the pool and the cause
    flush_collector(state.url)  # every answered request committed
    with open_reader(state.store) as store:
        reports = {r.stats.pool: r for r in fleet_report(store, Window(run_ids=(run.group(1),)))}
    # round-robin over two pools: 5 each; the scripted pool answers 3 completion tokens of a 7-token prompt
    assert (reports["ok"].stats.requests, reports["ok"].stats.errors, reports["ok"].stats.completion_tokens) == (
        5,
        0,
        15,
    )
    assert (reports["err500"].stats.requests, reports["err500"].stats.errors) == (5, 5)
    ok = reports["ok"]
    # the collector recorded the cpu price of data/prices.yaml for the pool at start-up
    assert ok.window_cost_usd == pytest.approx(0.0893 * ok.window_s / 3600)
    assert ok.usd_per_m_output_tokens == pytest.approx(ok.window_cost_usd / 15 * 1e6)
    assert ok.request_cache_hit_ratio == 0.0

    fleet = inferwatch("fleet", "--home", str(home), "--store", state.store, "--run", run.group(1))
    assert fleet.returncode == 0, fleet.stderr
    assert re.search(r"│ ok\s+│ rev-ok", fleet.stdout) and "err500" in fleet.stdout


def test_a_sweep_runs_a_step_per_rate_and_reports_the_knee(collector: tuple[Path, CollectorState]) -> None:
    home, state = collector
    # nearly periodic arrivals (gamma shape 50): 12 requests per step at 4 then 8 requests/s to the ok pool
    done = inferwatch("load", "--home", str(home), "--pools", "ok", "--num-requests", "12", "--dataset", "arith",
                      "--sweep", "4,8", "--burstiness", "50", "--seed", "2", timeout=180)  # fmt: skip
    assert done.returncode == 0, done.stderr
    runs = re.findall(r"step (\d+) requests/s \(run (\w+-\d)\)", done.stdout)
    assert [rate for rate, _ in runs] == ["4", "8"] and [run[-2:] for _, run in runs] == ["-1", "-2"], done.stdout
    assert "capacity per pool" in done.stdout and "where it stops" in done.stdout
    flush_collector(state.url)
    with open_reader(state.store) as store:
        for _, run in runs:
            (report,) = fleet_report(store, Window(run_ids=(run,)))
            assert (report.stats.pool, report.stats.requests, report.stats.errors) == ("ok", 12, 0)
            # 12 requests about 1/rate apart: served at about the offered rate, far from the knee of this upstream
            assert report.figures is not None and report.ok / report.figures.span_s > 2


@pytest.mark.parametrize("rates", ["8,4", "0,2", "two", "4,4", "inf"])
def test_a_bad_sweep_exits_3_naming_the_flag(collector: tuple[Path, CollectorState], rates: str) -> None:
    home, _ = collector
    done = inferwatch("load", "--home", str(home), "--sweep", rates)
    assert done.returncode == 3 and f"argument --sweep: '{rates}'" in done.stderr, done.stderr
    assert "in requests/s" in done.stderr and "e.g. 2,4,8" in done.stderr


def test_load_names_pools_that_do_not_exist(collector: tuple[Path, CollectorState]) -> None:
    home, _ = collector
    done = inferwatch("load", "--home", str(home), "--pools", "ok,nope", "--num-requests", "2")
    assert done.returncode == 1
    assert "no pool 'nope'" in done.stderr and "pools are ok, err500" in done.stderr


def test_bad_load_settings_exit_3_naming_the_flag(collector: tuple[Path, CollectorState]) -> None:
    home, _ = collector
    done = inferwatch("load", "--home", str(home), "--dataset", "random", "--input-len", "600", "--num-requests", "2")
    assert done.returncode == 3 and "max_model_len" in done.stderr
    soon = inferwatch("load", "--home", str(home), "--duration", "soon")
    assert soon.returncode == 3 and "argument --duration" in soon.stderr  # a usage error: never 2 (marginal)


def test_without_a_collector_load_says_how_to_start_it(tmp_path: Path) -> None:
    done = inferwatch("load", "--home", str(tmp_path), "--num-requests", "2")
    assert done.returncode == 1 and "inferwatch collector up" in done.stderr


def test_fleet_without_a_store_says_what_to_do(tmp_path: Path) -> None:
    done = inferwatch("fleet", "--home", str(tmp_path))
    assert done.returncode == 3 and "no store there yet" in done.stderr
    assert not (tmp_path / "inferwatch.duckdb").exists()


def test_fleet_with_a_bad_slo_file_names_the_file_and_key(tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("ttft: 500\nitl: 20\n")
    done = inferwatch("fleet", "--home", str(tmp_path), "--slo", str(slo))
    assert done.returncode == 3
    assert f"{slo}: unknown key 'itl'; the keys are ttft, tpot, e2el (milliseconds)" in done.stderr
    slo.write_text("ttft: -5\n")
    done = inferwatch("fleet", "--home", str(tmp_path), "--slo", str(slo))
    assert done.returncode == 3 and "ttft must be a positive number of milliseconds, got -5" in done.stderr
    missing = inferwatch("fleet", "--home", str(tmp_path), "--slo", str(tmp_path / "none.yaml"))
    assert missing.returncode == 3 and "cannot read the SLO file" in missing.stderr
