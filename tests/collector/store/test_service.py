"""Reading while the collector ingests: other processes go through the collector's store service."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector import daemon
from collector.state import CollectorState
from collector.store.door import connect, open_store
from collector.store.embedded import Store, StoreError
from collector.store.remote import RemoteStore
from tests.collector.faulty_upstream import FaultyUpstream, start_collector

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CollectorState, Path]]:
    home = tmp_path_factory.mktemp("store-service")
    with FaultyUpstream() as upstream:
        state = start_collector(home, upstream)  # flushes every second, the default
        yield state, home
        daemon.down(home / "collector.json")


def rows(start: int, count: int) -> list[dict[str, object]]:
    return [
        {"id": f"w-{i}", "pool": "ok", "source": "load", "started_at": T0, "status": "ok", "e2e_s": i / 1000}
        for i in range(start, start + count)
    ]


def test_a_reader_in_a_loop_sees_every_written_row_once(collector: tuple[CollectorState, Path]) -> None:
    state, _ = collector
    total, batch = 20_000, 50
    seen: list[tuple[int, int]] = []
    writing = threading.Event()
    writing.set()

    def read_until_written() -> None:
        with connect(state.url) as reader:
            while writing.is_set():
                got = reader.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM requests WHERE id LIKE 'w-%'")
                seen.append((got.column("n")[0].as_py(), got.column("d")[0].as_py()))

    reader = threading.Thread(target=read_until_written)
    reader.start()
    with connect(state.url) as writer:
        for start in range(0, total, batch):
            assert writer.append("requests", rows(start, batch)) == batch
        writing.clear()
        reader.join()
        writer.flush()
        ids = writer.query("SELECT id FROM requests WHERE id LIKE 'w-%'").column("id").to_pylist()
    assert len(seen) > 5, "the reader should have queried many times while the writer ran"
    assert all(n == d for n, d in seen), "a reader saw a duplicated row"
    assert [n for n, _ in seen] == sorted(n for n, _ in seen), "a reader saw the count go down"
    assert len(ids) == total and set(ids) == {f"w-{i}" for i in range(total)}


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("DELETE FROM requests", "only SELECT queries are served, got DELETE"),
        ("SELECT 1; SELECT 2", "send exactly one statement, got 2"),
        ("SELEC 1", "query does not parse"),
        ("SELECT nope FROM requests", "query failed"),
    ],
)
def test_the_service_serves_reads_only(collector: tuple[CollectorState, Path], sql: str, message: str) -> None:
    with RemoteStore(collector[0].url) as store, pytest.raises(StoreError, match=message):
        store.query(sql)


def test_remote_appends_are_checked_like_local_ones(collector: tuple[CollectorState, Path]) -> None:
    with RemoteStore(collector[0].url) as store:
        with pytest.raises(StoreError, match="no table 'nope' in the store"):
            store.append("nope", rows(0, 1))
        with pytest.raises(StoreError, match="requests row 1: column\\(s\\) pool must not be empty"):
            store.append("requests", [*rows(900_000, 1), {**rows(900_001, 1)[0], "pool": None}])
        store.flush()
        # all or nothing: the good row of the refused batch was not kept
        assert store.query("SELECT count(*) AS n FROM requests WHERE id = 'w-900000'").column("n")[0].as_py() == 0


def test_open_store_goes_through_a_running_collector_else_to_the_file(
    collector: tuple[CollectorState, Path], tmp_path: Path
) -> None:
    state, home = collector
    with open_store(Path(state.store), home / "collector.json") as through:
        assert isinstance(through, RemoteStore)
    with open_store(tmp_path / "other.duckdb", home / "collector.json") as direct:
        assert isinstance(direct, Store)


def test_a_collector_that_is_gone_gives_a_clear_error() -> None:
    with RemoteStore("http://127.0.0.1:9") as store, pytest.raises(StoreError, match="is it up"):
        store.query("SELECT 1")


def test_timestamp_parameters_travel_to_the_service(collector: tuple[CollectorState, Path]) -> None:
    cut = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with RemoteStore(collector[0].url) as store:
        got = store.query("SELECT ? AS t, ? + INTERVAL 1 SECOND AS later, ? AS n", [cut, cut, 7]).to_pylist()
    assert got == [{"t": cut, "later": cut + timedelta(seconds=1), "n": 7}]
