"""Load spread over several gateways: two real collectors (each before its own scripted upstream, so that the
upstream's call count says what each gateway served) writing one DuckLake on PostgreSQL; request i goes to
gateway i mod 2, each row lands via the gateway that served it, and the store holds every request once. A
gateway that refuses connections gives errors naming its URL. `inferwatch load` spreads over every gateway
of its home by default."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from collector import daemon
from collector.loadgen.job import WorkloadSpec, build_workload, run_through_gateway
from collector.loadgen.runner import LoadConfig, gateway_rows, run_load
from collector.service import CollectorConfig
from collector.state import CollectorState
from collector.store.door import open_reader, open_store
from collector.store.postgres import PostgresServer
from collector.vocabulary import Status
from tests.collector.faulty_upstream import FaultyUpstream, write_engine
from tests.collector.store.backends import store_url
from tests.conftest import DATA, free_port, inferwatch

ITEMS = build_workload(WorkloadSpec(dataset="arith", count=4, seed=1))


def start_replicas(home: Path, upstreams: Sequence[FaultyUpstream], store: str, **config: Any) -> list[CollectorState]:
    """Gateway i before upstream i, recorded as replica i of `home` (collector.json, collector.2.json, ...), as
    `collector up --replicas` records them; all on one store."""
    states = []
    for i, upstream in enumerate(upstreams):
        (home / f"gw{i}").mkdir(parents=True, exist_ok=True)
        cfg = CollectorConfig(
            store_url=store, engine_state=str(write_engine(home / f"gw{i}", upstream.url)),
            prices=str(DATA / "prices.yaml"), port=free_port(), journal_dir=str(home / "journal" / f"gw-{i}"),
            **config,
        )  # fmt: skip
        states.append(daemon.up(cfg, daemon.state_file(home / "collector.json", i), log=lambda _: None))
    return states


def stop_replicas(home: Path) -> None:
    for path in daemon.state_files(home / "collector.json"):
        daemon.down(path)


class Fleet:
    def __init__(self, home: Path, store: str, upstreams: list[FaultyUpstream], states: list[CollectorState]):
        self.home, self.store, self.upstreams, self.states = home, store, upstreams, states

    def served(self) -> list[int]:
        """Requests each gateway's upstream has received for the pool `ok` so far."""
        return [u.calls.get("ok", 0) for u in self.upstreams]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("spread")
    url = store_url("ducklake-postgres", home, postgres)
    open_store(url).close()  # created once, before the gateways race to migrate it
    with FaultyUpstream() as a, FaultyUpstream() as b:
        try:
            yield Fleet(home, url, [a, b], start_replicas(home, [a, b], url, commit_interval_s=0.2))
        finally:
            stop_replicas(home)


def test_spread_urls_are_checked_and_listed_in_order() -> None:
    config = LoadConfig("http://a:1/v1", ("m",), spread_over=("http://b:2", "http://c:3/v1/"))
    assert config.base_urls == ("http://a:1/v1", "http://b:2", "http://c:3/v1/")
    assert config.completions_urls == ("http://a:1/v1/completions", "http://b:2/v1/completions",
                                       "http://c:3/v1/completions")  # fmt: skip
    with pytest.raises(ValueError, match=r"base_url must be an http\(s\) URL, got 'b:2'"):
        LoadConfig("http://a:1/v1", ("m",), spread_over=("b:2",))


def test_requests_go_round_robin_over_the_gateways_and_each_lands_once(fleet: Fleet) -> None:
    urls = [f"{s.url}/v1" for s in fleet.states]
    before = fleet.served()
    config = LoadConfig(urls[0], ("arith@ok",), num_requests=10, spread_over=(urls[1],), progress=False)
    with open_reader(fleet.store) as store:
        result, reports = run_through_gateway(config, ITEMS, store, scrape_timeout_s=0.1)
        (stored,) = store.query("SELECT count(*) AS n FROM requests WHERE run_id = ?", [config.run_id])["n"].to_pylist()
    assert [r.url for r in result.requests] == [f"{u}/completions" for u in urls] * 5  # request i: gateway i % 2
    assert [r.status for r in result.requests] == [Status.ok] * 10
    assert [after - b for after, b in zip(fleet.served(), before, strict=True)] == [5, 5]  # as each upstream counts
    assert gateway_rows(result) == [{"gateway": f"{u}/completions", "requests": 5, "errors": 0} for u in urls]
    assert stored == 10
    assert [(r.stats.pool, r.stats.requests, r.stats.errors) for r in reports] == [("ok", 10, 0)]


def test_a_gateway_that_refuses_connections_gives_errors_naming_it(fleet: Fleet) -> None:
    live, dead = f"{fleet.states[0].url}/v1", f"http://127.0.0.1:{free_port()}/v1"
    before = fleet.served()
    result = run_load(LoadConfig(live, ("arith@ok",), num_requests=6, spread_over=(dead,), progress=False), ITEMS)
    assert [r.status for r in result.requests] == [Status.ok, Status.error] * 3
    failed = [r.error or "" for r in result.requests if r.status is Status.error]
    assert all(e.startswith(f"{dead}/completions: ClientConnectorError: Cannot connect") for e in failed), failed
    assert [after - b for after, b in zip(fleet.served(), before, strict=True)] == [3, 0]
    assert gateway_rows(result) == [
        {"gateway": f"{live}/completions", "requests": 3, "errors": 0},
        {"gateway": f"{dead}/completions", "requests": 3, "errors": 3},
    ]


def test_inferwatch_load_spreads_over_every_gateway_of_its_home(fleet: Fleet) -> None:
    before = fleet.served()
    done = inferwatch("load", "--home", str(fleet.home), "--pools", "ok", "--num-requests", "8", "--dataset",
                      "arith", "--seed", "1", timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [after - b for after, b in zip(fleet.served(), before, strict=True)] == [4, 4]
    assert "spread over 2 gateways" in done.stdout
    run = re.search(r"load run (\w+): 8 requests", done.stdout)
    assert run, done.stdout
    with open_reader(fleet.store) as store:
        rows = store.query("SELECT pool, count(*) AS n FROM requests WHERE run_id = ? GROUP BY pool", [run[1]])
    assert rows.to_pylist() == [{"pool": "ok", "n": 8}]
