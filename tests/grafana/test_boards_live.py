"""The boards against what they query: a real Prometheus (Debian package) scrapes a live collector and the real
engine after a load burst, and every panel's query, variables substituted as Grafana would, returns data through
the Prometheus HTTP API.

The drift, eval and gate gauges are what the collector exports from the store's latest verdicts; the test writes
those verdict rows into the collector's store itself (tests/dashboards/seed.py) rather than running the canary
and an eval suite here, which would take minutes and do nothing more for the boards.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from collector.loadgen.job import WorkloadSpec, build_workload, run_through_gateway, served_models
from collector.loadgen.runner import LoadConfig
from collector.state import CollectorState
from collector.store.door import open_store
from engine.state import EngineState
from tests.conftest import free_port
from tests.dashboards.seed import canary, evals, gates
from tests.grafana.boards import GRAFANA, Query, queries

PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
pytestmark = [
    pytest.mark.engine,
    pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason="needs the Debian prometheus package"),
]
POOL = "ref"  # the pool of the single-pool board


def scrape_config(collector: str, engine: str, rules: Path) -> dict[str, Any]:
    """grafana/prometheus.yml with the live targets, scraped every second."""
    config: dict[str, Any] = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["rule_files"] = [str(rules)]
    targets = {"inferwatch-collector": collector, "inferwatch-engine": engine}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    return config


@pytest.fixture
def prometheus(engine: EngineState, live_collector: CollectorState, tmp_path: Path) -> Iterator[str]:
    assert engine.metrics_url, "the engine exports no metrics"
    engine_target = httpx.URL(engine.metrics_url)
    config = scrape_config(live_collector.url.removeprefix("http://"), f"{engine_target.host}:{engine_target.port}",
                           GRAFANA / "rules" / "inferwatch-alerts.yml")  # fmt: skip
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([str(PROMTOOL), "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def burst(collector: CollectorState) -> None:
    """Load through the gateway on every pool, and the verdict rows the drift and gate gauges come from."""
    config = LoadConfig(f"{collector.url}/v1", served_models(collector.url), num_requests=48, rate=24.0, seed=3)
    now = datetime.now(UTC)
    with open_store(collector.store) as store:  # the load's rows land by the collector's committer; it polls
        run_through_gateway(config, build_workload(WorkloadSpec(dataset="mixed", count=48, output_len=8)), store)
        for table, rows in [*canary(now), ("eval_runs", evals(now)), ("gates", gates(now))]:
            store.append(table, rows)  # inserted at once


def result(prometheus: str, query: Query) -> list[Any]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": query.expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{query.board} / {query.panel}: {body}"
    found: list[Any] = body["data"]["result"]
    return found


def problems(prometheus: str, every: list[Query], engine: EngineState) -> list[str]:
    """What the boards show wrong right now (empty when all is well): a panel without data, or the wrong series."""
    empty = [q for q in every if not result(prometheus, q)]
    if empty:
        return ["panels without data:", *(f"{q.board} / {q.panel}: {q.expr}" for q in empty)]
    found = []
    # the fleet board shows every pool of the engine; the pool board only the chosen one, gateway and engine side
    by_panel = {(q.board, q.panel): q for q in every}
    fleet = {s["metric"]["pool"] for s in result(prometheus, by_panel["fleet-overview", "Requests/s"])}
    if fleet != {p.name for p in engine.pools}:
        found.append(f"fleet-overview / Requests/s shows pools {sorted(fleet)}")
    vllm = {s["metric"]["model_name"] for s in result(prometheus, by_panel["pool-detail", "vLLM TTFT p50/p99"])}
    if vllm != {f"arith@{POOL}"}:
        found.append(f"pool-detail / vLLM TTFT p50/p99 shows models {sorted(vllm)}")
    flagged = result(prometheus, by_panel["drift-gates", "Drift flagged (latest canary run: 1 drift, 0 ok)"])
    seen = {(s["metric"]["pool"], s["metric"]["metric"], s["value"][1]) for s in flagged}
    if not seen >= {("boost", "greedy_divergence", "1"), ("bf16", "greedy_divergence", "0")}:
        found.append(f"drift-gates / Drift flagged shows {sorted(seen)}")
    return found


def test_every_panel_of_every_board_has_data(
    prometheus: str, engine: EngineState, live_collector: CollectorState
) -> None:
    burst(live_collector)
    every = list(queries(POOL))
    assert len(every) >= 30
    # a few scrapes after the burst, the collector's and the engine's; asked again while any is wrong, since a
    # scrape that timed out on a busy machine leaves the target's series stale (empty) until the next one
    deadline = time.monotonic() + 90
    while (found := problems(prometheus, every, engine)) and time.monotonic() < deadline:
        time.sleep(2)
    assert not found, "\n".join(found)
