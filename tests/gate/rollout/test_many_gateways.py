"""The rollout's split on every gateway: two real collectors on one store (tests/collector/loadgen/test_spread.py
starts them). Set on both, cleared on both however the block ends; a gateway down at the start fails the
rollout naming it and leaves the other clean; a renewal or a clear that misses a gateway is logged naming it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import daemon
from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.state import CollectorError, CollectorState
from collector.store.door import open_store
from gate.rollout.lease import LeasedSplit
from gate.rollout.plan import RolloutPlan
from gate.rollout.run import RolloutError, check_start, run_rollout
from tests.collector.faulty_upstream import FaultyUpstream
from tests.collector.loadgen.test_spread import start_replicas, stop_replicas
from tests.conftest import DATA, free_port
from tests.gate.rollout.test_run import BURST_THEN_ABORT, NO_POOLS, steps

SPLIT = Split("ok", "sums", 0.5)
LISTED = {"baseline": "ok", "candidate": "sums", "weight": 0.5}


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream) -> Iterator[list[CollectorState]]:
    home = tmp_path_factory.mktemp("many-gateways")
    try:
        yield start_replicas(home, [upstream, upstream], str(home / "store.duckdb"), commit_interval_s=0.2)
    finally:
        stop_replicas(home)


def listed(client: SplitClient) -> list[dict[str, object]]:
    return [{k: s[k] for k in ("baseline", "candidate", "weight")} for s in client.list()]


def test_the_split_is_set_on_every_gateway_and_cleared_on_every_one(gateways: list[CollectorState]) -> None:
    clients = [SplitClient(g.url) for g in gateways]
    with pytest.raises(KeyboardInterrupt), LeasedSplit(clients, SPLIT, 30.0, print):
        assert [listed(c) for c in clients] == [[LISTED], [LISTED]]
        raise KeyboardInterrupt  # as Ctrl-C mid-rollout
    assert [c.list() for c in clients] == [[], []]
    with LeasedSplit(clients, SPLIT, 30.0, print) as lease:
        lease.keep(Split("ok", "sums", 1.0))  # promoted on both, without a lease
    assert [c.list() for c in clients] == [[{"baseline": "ok", "candidate": "sums", "weight": 1.0, "ttl_s": None}]] * 2
    for c in clients:
        c.clear("ok")


def test_a_gateway_down_at_the_start_fails_naming_it_and_leaves_the_others_clean(
    gateways: list[CollectorState],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    clients = [SplitClient(g.url) for g in gateways] + [SplitClient(dead)]
    entered = []
    message = rf"the split ok=sums:0.5 could not be set at {dead}: collector at {dead}: no answer to PUT"
    with pytest.raises(CollectorError, match=message), LeasedSplit(clients, SPLIT, 30.0, print):
        entered.append(True)
    assert entered == []  # the block never ran
    assert [c.list() for c in clients[:2]] == [[], []]  # both were set, then cleared again


def test_a_start_check_names_the_gateway_whose_baseline_is_split(gateways: list[CollectorState]) -> None:
    clients = [SplitClient(g.url) for g in gateways]
    clients[1].set(Split("ok", "sums", 0.3))
    try:
        with pytest.raises(RolloutError, match=rf"pool ok already has a split \(ok=sums:0\.3\) at {gateways[1].url}:"):
            check_start(RolloutPlan("ok", "err500"), clients)
    finally:
        clients[1].clear("ok")
    assert check_start(RolloutPlan("ok", "sums"), clients)["sums"] == "arith@sums"


def test_a_rollout_over_two_gateways_spreads_its_burst_and_clears_both_when_a_step_fails(
    gateways: list[CollectorState], upstream: FaultyUpstream, tmp_path: Path
) -> None:
    plan = RolloutPlan("ok", "err500", weight=0.5, requests=20, rate=200.0, lease_s=30.0)
    urls = [g.url for g in gateways]
    printed: list[str] = []
    with open_store(gateways[0].store) as store:
        with pytest.raises(ValueError, match=r"--reference/--pools: no pool 'ok', 'err500'"):  # the canary step
            run_rollout(plan, NO_POOLS, gateways[0], store, tmp_path, DATA / "prices.yaml", log=printed.append,
                        gateways=urls)  # fmt: skip
        rows = steps(store, plan.rollout_id)
    assert [(r["step"], r["status"]) for r in rows] == BURST_THEN_ABORT
    assert json.loads(rows[1]["detail_json"])["gateways"] == ",".join(urls)
    served = json.loads(rows[2]["detail_json"])["served"]
    assert sum(served.values()) == 20  # the store holds every request of the burst once, whichever gateway
    assert [SplitClient(u).list() for u in urls] == [[], []]


def test_renewals_and_clears_that_miss_a_gateway_are_logged_naming_it(
    tmp_path: Path, upstream: FaultyUpstream, gateways: list[CollectorState]
) -> None:
    (doomed,) = start_replicas(tmp_path, [upstream], gateways[0].store)  # one more gateway, stopped mid-block
    clients = [SplitClient(gateways[0].url), SplitClient(doomed.url)]
    printed: list[str] = []
    try:
        with LeasedSplit(clients, SPLIT, 1.5, printed.append):  # renewed every 0.5 s
            daemon.down(tmp_path / "collector.json")
            time.sleep(2.0)  # past the lease: the live gateway's split was renewed, the stopped one's could not be
            assert listed(clients[0]) == [LISTED]
    finally:
        stop_replicas(tmp_path)
    assert clients[0].list() == []
    renewals = [line for line in printed if line.startswith("could not renew")]
    assert renewals and all(line.startswith(f"could not renew the split ok=sums:0.5 at {doomed.url}: ")
                            for line in renewals)  # fmt: skip
    (cleared,) = [line for line in printed if not line.startswith("could not renew")]
    assert cleared.startswith(f"could not clear the split ok=sums:0.5 at {doomed.url} (it lapses within 1.5s): "
                              f"collector at {doomed.url}: no answer to DELETE /admin/splits/ok (")  # fmt: skip
