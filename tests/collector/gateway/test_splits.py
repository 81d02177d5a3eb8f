"""The collector's /admin/splits over real HTTP, and the rollout's leased split against it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from collector.client.credentials import client_headers
from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.state import CollectorState, health
from gate.rollout.lease import LeasedSplit
from tests.collector.faulty_upstream import collector_over_faulty_upstream


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorState]:
    home = tmp_path_factory.mktemp("split-admin")
    with collector_over_faulty_upstream(home) as state:
        yield state


def served_by(collector: CollectorState, model: str = "arith@ok", source: str = "traffic") -> str:
    response = httpx.post(f"{collector.url}/v1/completions", json={"model": model, "prompt": "1+2="},
                          headers={"x-inferwatch-source": source}, timeout=10)  # fmt: skip
    assert response.status_code == 200, response.text
    return response.headers["x-inferwatch-pool"]


def test_a_split_set_over_http_moves_traffic_and_load_but_not_the_canary(collector: CollectorState) -> None:
    client = SplitClient(collector.url)
    assert client.set(Split("ok", "sums", 1.0)) == {"baseline": "ok", "candidate": "sums", "weight": 1.0, "ttl_s": None}
    try:
        assert served_by(collector) == "sums"
        assert served_by(collector, source="load") == "sums"
        assert served_by(collector, source="canary") == "ok"
        assert served_by(collector, source="eval") == "ok"
        assert health(collector.url)["splits"] == ["ok=sums:1"]  # type: ignore[index]
    finally:
        assert client.clear("ok") == {"baseline": "ok", "candidate": "sums", "weight": 1.0, "ttl_s": None}
    assert served_by(collector) == "ok"
    assert client.clear("ok") is None
    assert client.list() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"baseline": "ok", "candidate": "sums"}, "field weight: a number is required, got None"),
        ({"baseline": "ok", "candidate": "nope", "weight": 0.5}, "no pool 'nope'"),
        ({"baseline": "ok", "candidate": "sums", "weight": 2}, "between 0 and 1"),
        ({"baseline": "ok", "candidate": "sums", "weight": 0.5, "ttl_s": "1m"}, "field ttl_s: a number is required"),
        ({"baseline": "ok", "candidate": "sums", "weight": 0.5, "colour": 1}, "unknown field(s) colour"),
        ({"candidate": "sums", "weight": 0.5}, "field baseline: a pool name is required"),
        ([1, 2], "the body must be a JSON object"),
    ],
)
def test_bad_splits_are_a_400_naming_the_field(collector: CollectorState, body: object, message: str) -> None:
    response = httpx.put(f"{collector.url}/admin/splits", json=body, headers=client_headers("admin"), timeout=10)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert SplitClient(collector.url).list() == []


def test_a_leased_split_lapses_when_its_owner_stops_renewing(collector: CollectorState) -> None:
    client = SplitClient(collector.url)
    client.set(Split("ok", "sums", 1.0), ttl_s=1.0)  # as a rollout that was killed right after
    assert served_by(collector) == "sums"
    time.sleep(1.2)
    assert served_by(collector) == "ok"
    assert client.list() == []


def test_the_rollout_lease_is_renewed_while_it_runs_and_cleared_however_it_ends(collector: CollectorState) -> None:
    client = SplitClient(collector.url)
    with pytest.raises(KeyboardInterrupt), LeasedSplit([client], Split("ok", "sums", 1.0), 3.0, print):
        time.sleep(4.5)  # past the lease: renewed every second, so still in force
        assert served_by(collector) == "sums"
        raise KeyboardInterrupt  # as Ctrl-C mid-rollout
    assert client.list() == [] and served_by(collector) == "ok"
    with LeasedSplit([client], Split("ok", "sums", 0.5), 3.0, print) as lease:
        lease.keep(Split("ok", "sums", 1.0))  # promoted: stays, without a lease
    assert client.list() == [{"baseline": "ok", "candidate": "sums", "weight": 1.0, "ttl_s": None}]
    client.clear("ok")


def test_no_collector_is_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"collector at http://127\.0\.0\.1:9: no answer to GET /admin/splits"):
        SplitClient("http://127.0.0.1:9").list()
