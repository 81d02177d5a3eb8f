from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from collector.journal.committer import SegmentBatch
from collector.store.api import Store
from collector.store.backends import DuckLakeBackend, EmbeddedBackend, close_idle_lakes
from collector.store.door import open_reader, open_store
from collector.store.errors import StoreBusy, StoreError
from collector.store.postgres import PostgresServer, TempPostgres
from collector.store.schema import SCHEMA_VERSION
from collector.store.url import parse_store_url
from tests.collector.store.backends import BACKENDS, store_url

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TABLES = [
    "alert_outbox", "alerts", "drift", "eval_items", "eval_runs", "gates", "journal_segments", "leases",
    "pool_samples", "pools", "probes", "quarantine", "requests", "rollouts",
]  # fmt: skip


def request(i: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": f"r{i}", "pool": "ref", "source": "load", "started_at": T0, "status": "ok",
        "ttft_s": 0.05 + i / 1000, "completion_tokens": i, "cost_usd": 0.001,
    }  # fmt: skip
    row.update(over)
    return row


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    postgres = request.getfixturevalue("postgres") if request.param == "ducklake-postgres" else None
    return store_url(request.param, tmp_path, postgres)


def test_new_store_has_every_table_at_the_current_version_on_every_backend(url: str) -> None:
    with open_store(url) as store:
        assert store.version == SCHEMA_VERSION == 9
        assert store.tables() == TABLES
    with open_store(url) as store:  # reopening applies nothing twice
        versions = store.query("SELECT version FROM schema_migrations ORDER BY version").column("version")
        assert versions.to_pylist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_rows_are_visible_at_once_to_a_reader_and_read_back_exactly(url: str) -> None:
    with open_store(url) as store:
        assert store.append("requests", [request(i) for i in range(3)]) == 3
        with open_reader(url) as reader:
            got = reader.query("SELECT id, completion_tokens, ttft_s FROM requests ORDER BY id").to_pylist()
    # doubles come back bit for bit as given (0.05 + 1/1000 is 0.051000000000000004 in binary)
    assert got == [{"id": f"r{i}", "completion_tokens": i, "ttft_s": 0.05 + i / 1000} for i in range(3)]


@pytest.mark.parametrize(
    ("table", "row", "message"),
    [
        ("nope", request(1), "no table 'nope' in the store; tables are alert_outbox, alerts, drift"),
        ("requests", request(1, colour="red"), "requests row 1: unknown column(s) colour"),
        ("requests", request(1, pool=None), "requests row 1: column(s) pool must not be empty"),
        ("requests", request(1, ttft_s="fast"), "requests row 1: column ttft_s must be a number, got 'fast'"),
        ("requests", request(1, completion_tokens=2**31), "column completion_tokens must be an integer between"),
        ("requests", request(1, started_at="2026-11-22"), "column started_at must be a datetime"),
        ("requests", request(1, ttft_s=10**400), "rows the store cannot hold"),
    ],
)
def test_bad_rows_are_refused_at_append_and_the_call_stores_none(
    tmp_path: Path, table: str, row: dict[str, object], message: str
) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.append("requests", [request(0)])
        with pytest.raises(StoreError) as info:
            store.append(table, [request(2), row])
        assert message in str(info.value)
        assert store.query("SELECT id FROM requests").column("id").to_pylist() == ["r0"]


def test_commit_quarantines_poison_rows_and_marks_the_segment_once(url: str) -> None:
    poison = [
        request(2, finish_reason="\udc80"),  # a lone surrogate from a pool
        request(3, ttft_s=10**400),  # passes the number check, no DOUBLE holds it
        request(4, error="x" * (1 << 20 + 1)),  # 2 MiB of text
        request(5, colour="red"),  # a row of an older or newer writer
    ]
    batch = SegmentBatch.of_rows("seg-0000000001.log", {"requests": [request(1), *poison], "nope": [{"a": 1}]}, torn=1)
    with open_store(url) as store:
        assert store.committed("gw-1", ["seg-0000000001.log"]) == set()
        store.commit("gw-1", [batch])
        assert store.committed("gw-1", ["seg-0000000001.log", "seg-0000000002.log"]) == {"seg-0000000001.log"}
        assert store.committed("gw-2", ["seg-0000000001.log"]) == set()
        assert store.query("SELECT id FROM requests").column("id").to_pylist() == ["r1"]
        reasons = store.query("SELECT table_name, reason, row_json FROM quarantine ORDER BY row_json").to_pylist()
        marker = store.query("SELECT writer, segment, rows, torn, quarantined FROM journal_segments").to_pylist()
    assert [r["table_name"] for r in reasons] == ["nope"] + ["requests"] * 4
    text = " | ".join(r["reason"] for r in reasons)
    for expected in (
        "no table 'nope'",
        "surrogates not allowed",
        "too large",
        "over 1 MiB",
        "unknown column(s) colour",
    ):
        assert expected in text
    assert '"finish_reason": "\\udc80"' in next(r["row_json"] for r in reasons if "surrogate" in r["reason"])
    assert marker == [{"writer": "gw-1", "segment": "seg-0000000001.log", "rows": 1, "torn": 1, "quarantined": 5}]


def test_a_reader_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no store there yet; `inferwatch collector up` creates it"):
        open_reader(tmp_path / "missing.duckdb")
    with pytest.raises(StoreError, match="no store there yet"):
        open_store(tmp_path / "missing.duckdb", create=False)
    assert not (tmp_path / "missing.duckdb").exists()
    with pytest.raises(StoreError, match="opened read-only"):
        Store(tmp_path / "s.duckdb").close()
        open_reader(tmp_path / "s.duckdb").append("requests", [request(1)])


def test_a_store_from_a_newer_inferwatch_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "s.duckdb").close()
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("INSERT INTO schema_migrations VALUES (99, now())")
    con.close()
    with pytest.raises(StoreError, match=r"schema version 99 is newer than this inferwatch knows \(9\); upgrade"):
        Store(tmp_path / "s.duckdb")
    with pytest.raises(StoreError, match=r"schema version 99 is newer"):
        open_reader(tmp_path / "s.duckdb")


def test_a_store_at_an_older_schema_is_migrated_by_writers_not_readers(tmp_path: Path) -> None:
    Store(tmp_path / "s.duckdb").close()
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("ALTER TABLE requests DROP COLUMN tenant; ALTER TABLE alerts DROP COLUMN seq")
    con.execute("DROP TABLE leases; DROP TABLE quarantine; DROP TABLE journal_segments")
    for column in ("item_id", "engine_queue_s", "engine_prefill_s", "engine_decode_s", "engine_tpot_s",
                   "token_events", "chunk_arrivals", "gateway_s"):  # fmt: skip
        con.execute(f"ALTER TABLE requests DROP COLUMN {column}")
    con.execute("ALTER TABLE pools DROP COLUMN stream_batch_ms")
    con.execute("DELETE FROM schema_migrations WHERE version >= 6")
    con.close()
    with pytest.raises(StoreError, match=r"schema version 5, this inferwatch reads version 9; any writer migrates"):
        open_reader(tmp_path / "s.duckdb")
    with open_store(tmp_path / "s.duckdb") as store:
        assert "leases" in store.tables()
        assert "tenant" in store.query("SELECT * FROM requests LIMIT 0").column_names


def test_a_store_written_by_a_newer_duckdb_names_the_url_and_what_to_do(tmp_path: Path) -> None:
    # a store file as DuckDB 2.0.0 writes it (the version this project pinned before DuckLake), gzipped
    path = tmp_path / "new.duckdb"
    path.write_bytes(gzip.decompress((Path(__file__).parent / "written-by-duckdb-2.0.0.duckdb.gz").read_bytes()))
    for open_it in (open_reader, open_store):
        with pytest.raises(StoreError) as info:
            open_it(path)
        assert f"{path}: written by a newer DuckDB than this inferwatch's ({duckdb.__version__})" in str(info.value)
        assert "EXPORT DATABASE" in str(info.value)


def test_a_file_held_by_another_writer_is_waited_for_then_named(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    script = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        backend = EmbeddedBackend(parse_store_url(path), read_only=True, lock_timeout_s=0.3)  # a short timeout
        with (
            pytest.raises(StoreBusy, match=f"{path}: held by process {holder.pid} for over 0.3 s"),
            backend.connection(),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


def test_writers_and_readers_of_one_embedded_file_take_turns_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    Store(path).close()
    writer = (
        "import sys; from datetime import datetime, UTC; from collector.store.api import Store\n"
        "s = Store(sys.argv[1])\n"
        "for i in range(40):\n"
        "    s.append('requests', [{'id': f'{sys.argv[2]}-{i}', 'pool': 'p', 'source': 'load',"
        " 'started_at': datetime.now(UTC), 'status': 'ok'}])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(path), name]) for name in ("a", "b")]
    reads = 0
    with open_reader(path) as reader:
        while any(p.poll() is None for p in procs):
            reader.query("SELECT count(*) FROM requests")
            reads += 1
    assert [p.wait() for p in procs] == [0, 0]
    with open_reader(path) as reader:
        assert reader.query("SELECT count(DISTINCT id) AS n FROM requests").column("n").to_pylist() == [80]
    assert reads > 0


def test_ducklake_writers_in_several_processes_lose_and_duplicate_nothing(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = store_url("ducklake-postgres", tmp_path, postgres)
    open_store(url).close()  # the catalog is created once, before the writers start
    writer = (
        "import sys; from datetime import datetime, UTC; from collector.store.api import Store\n"
        "s = Store(sys.argv[1])\n"
        "for i in range(10):\n"
        "    s.append('requests', [{'id': f'{sys.argv[2]}-{i}-{j}', 'pool': 'p', 'source': 'load',"
        " 'started_at': datetime.now(UTC), 'status': 'ok'} for j in range(100)])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", writer, url, name]) for name in ("a", "b", "c")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with open_reader(url) as reader:
        got = reader.query("SELECT count(*) AS n, count(DISTINCT id) AS d FROM requests").to_pylist()
    assert got == [{"n": 3000, "d": 3000}]


def test_threads_of_one_process_share_the_open_file(tmp_path: Path) -> None:
    import threading

    store = Store(tmp_path / "s.duckdb")
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            for i in range(60):
                store.append("requests", [request(i, id=f"{name}-{i}")])
                store.query("SELECT count(*) FROM requests")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.query("SELECT count(DISTINCT id) AS n FROM requests").column("n").to_pylist() == [180]


def test_memory_is_no_store_url() -> None:
    with pytest.raises(StoreError, match="a store must outlive a process"):
        Store(":memory:")


def test_ctrl_c_during_a_query_reaches_the_caller_as_an_interrupt(tmp_path: Path) -> None:
    # DuckDB turns SIGINT during a query into RuntimeError("Query interrupted"); a rollout must see the
    # interrupt itself to stop as interrupted (exit 130) rather than as a failed step.
    with open_store(str(tmp_path / "s.duckdb")) as store:
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            store.query("SELECT count(*) FROM range(100000000000) a")
        timer.join()


def test_readers_of_one_lake_in_a_process_share_one_attachment_kept_after_close(tmp_path: Path) -> None:
    # attaching costs about a second; the dashboard opens a reader per query
    with TempPostgres(fsync=False) as server:
        server.create_database("shared")
        url = f"ducklake:postgres://{server.user}@{server.host}:{server.port}/shared?data={tmp_path}/lake"
        with open_store(url) as store:
            store.append("requests", [request(1)])
        first, second = open_reader(url), open_reader(url)
        assert isinstance(first._backend, DuckLakeBackend) and isinstance(second._backend, DuckLakeBackend)
        assert first._backend._shared is second._backend._shared and first._backend.shared_with == 2
        shared = first._backend._shared
        first.close()
        first.close()  # twice is once
        assert second._backend.shared_with == 1
        second.close()
        with open_reader(url) as third:
            assert isinstance(third._backend, DuckLakeBackend) and third._backend._shared is shared
        server_dir = server.data_dir
        assert server_dir.exists()
    # the PostgreSQL is gone: the idle attachment is closed, and a new one attaches afresh (and fails clearly)
    close_idle_lakes()
    with pytest.raises(StoreError, match="cannot attach the DuckLake"):
        open_reader(url)


def test_a_kept_attachment_survives_a_postgresql_restart(tmp_path: Path) -> None:
    pg = TempPostgres(fsync=False)
    server = pg.start()
    try:
        server.create_database("restart")
        url = f"ducklake:postgres://{server.user}@{server.host}:{server.port}/restart?data={tmp_path}/lake"
        with open_store(url) as store:
            store.append("requests", [request(1)])
        open_reader(url).close()  # kept, its catalog connection about to break
        pg.stop(keep_data=True)
        pg.start()
        with open_reader(url) as reader:
            assert reader.query("SELECT id FROM requests").column("id").to_pylist() == ["r1"]
    finally:
        close_idle_lakes()
        pg.stop()
