"""The fleet mode's store (`inferwatch demo --fleet N`): a PostgreSQL of the demo's own, a DuckLake store on it,
both gone after stop."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from collector.store.door import open_reader, open_store
from collector.store.url import parse_store_url
from inferwatch.demo import FleetStore
from inferwatch.settings import Settings


def test_the_fleet_store_is_ducklake_on_a_postgresql_of_its_own_removed_at_stop(tmp_path: Path) -> None:
    said: list[str] = []
    fleet = FleetStore(Settings.from_env({}, home=tmp_path), said.append)
    try:
        url = parse_store_url(fleet.url)
        assert url.backend == "ducklake" and fleet.url.startswith("ducklake:postgres://")
        assert fleet.data.parent == tmp_path / "fleet-lake"
        row = {"id": "r1", "pool": "ref", "source": "load", "started_at": datetime(2026, 12, 2, tzinfo=UTC),
               "status": "ok"}  # fmt: skip
        with open_store(fleet.url) as store:
            store.append("requests", [row])
        with open_reader(fleet.url) as reader:
            assert reader.query("SELECT id FROM requests").column("id").to_pylist() == ["r1"]
    finally:
        fleet.stop(said.append)
    assert not fleet.data.exists()
    assert not fleet.cluster.exists()  # the cluster's directory is gone too
    assert said[0].startswith("fleet mode: PostgreSQL 127.0.0.1:") and "stopped" in said[-1]
