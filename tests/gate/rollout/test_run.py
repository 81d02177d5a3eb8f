"""The rollout's run against a real collector (its gateway before a scripted upstream, tests/collector/
faulty_upstream.py): it refuses to start without both pools or with the baseline split already; a step that
fails mid-way records the abort, naming the step, and leaves every request on the baseline. What a load run
served per pool is read from a real DuckDB store. (The full rollout on the real pools: test_rollout_live.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.state import CollectorState
from collector.store.api import Store
from collector.store.door import open_store
from engine.state import EngineState
from gate.data import Served, served_by_run
from gate.rollout.plan import RolloutPlan
from gate.rollout.run import RolloutError, check_start, run_rollout
from tests.collector.faulty_upstream import collector_over_faulty_upstream
from tests.conftest import DATA

NO_POOLS = EngineState(spec="", ray_address="", ray_head_pid=None, serve_url="", metrics_url=None)
BURST_THEN_ABORT = [("start", "ok"), ("shift", "ok"), ("load", "ok"), ("abort", "error")]


def steps(store: Store, rollout_id: str) -> list[dict[str, Any]]:
    """A rollout's steps as the store holds them, in order."""
    return store.query(
        "SELECT step, status, detail_json FROM rollouts WHERE rollout_id = ? ORDER BY recorded_at", [rollout_id]
    ).to_pylist()


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorState]:
    home = tmp_path_factory.mktemp("rollout-run")
    with collector_over_faulty_upstream(home) as state:
        yield state


def test_a_rollout_needs_both_pools_behind_the_gateway(collector: CollectorState) -> None:
    client = SplitClient(collector.url)
    with pytest.raises(ValueError, match=r"--baseline/--candidate: no pool 'nope'; pools are ok, "):
        check_start(RolloutPlan("ok", "nope"), [client])
    assert check_start(RolloutPlan("ok", "sums"), [client])["ok"] == "arith@ok"


def test_a_rollout_does_not_start_over_a_split_that_holds_the_baseline(collector: CollectorState) -> None:
    client = SplitClient(collector.url)
    client.set(Split("ok", "sums", 0.3))
    try:
        with pytest.raises(RolloutError, match=r"pool ok already has a split \(ok=sums:0\.3\)"):
            check_start(RolloutPlan("ok", "err500"), [client])
    finally:
        client.clear("ok")


def test_a_step_that_fails_aborts_naming_it_and_clears_the_split(collector: CollectorState, tmp_path: Path) -> None:
    plan = RolloutPlan("ok", "err500", weight=0.5, requests=20, rate=200.0, lease_s=30.0)
    printed: list[str] = []
    with open_store(collector.store) as store:
        # the burst goes through; the canary step finds no pool in an engine without pools
        with pytest.raises(ValueError, match=r"--reference/--pools: no pool 'ok', 'err500'"):
            run_rollout(plan, NO_POOLS, collector, store, tmp_path, DATA / "prices.yaml", log=printed.append)
        rows = steps(store, plan.rollout_id)
    assert [(r["step"], r["status"]) for r in rows] == BURST_THEN_ABORT
    assert '"failed_step": "canary"' in rows[3]["detail_json"] and '"traffic": "all on ok"' in rows[3]["detail_json"]
    assert printed[-1].startswith(f"rollout {plan.rollout_id}: abort error: failed_step canary, why ValueError: ")
    assert SplitClient(collector.url).list() == []  # every request on the baseline again
    served = json.loads(rows[2]["detail_json"])
    shown = f"run {served['run']}, served {served['served']}, errors {served['errors']}"
    assert printed[2] == f"rollout {plan.rollout_id}: load ok: {shown}"
    # binomial(20, 0.5) per pool; err500 answers nothing but errors
    assert sum(served["served"].values()) == 20 and set(served["served"]) == {"ok", "err500"}
    assert served["errors"] == served["served"]["err500"]


def test_what_a_run_served_per_pool(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    rows = [
        {"id": f"r{i}", "pool": pool, "source": "load", "started_at": now, "status": status, "run_id": run}
        for i, (pool, status, run) in enumerate([
            ("ref", "ok", "L1"), ("ref", "ok", "L1"), ("ref", "error", "L1"), ("bf16", "error", "L1"),
            ("bf16", "ok", "L2"),
        ])
    ]  # fmt: skip
    with Store(tmp_path / "s.duckdb") as store:
        store.append("requests", rows)
        assert served_by_run(store, "L1") == Served({"bf16": 1, "ref": 3}, errors=2)
        assert served_by_run(store, "none") == Served({}, errors=0)
