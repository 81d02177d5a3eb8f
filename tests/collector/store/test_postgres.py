"""TempPostgres against the real Debian PostgreSQL: lifecycle, databases, failures, and a DuckLake catalog in it."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from collector.store import postgres as pg_module
from collector.store.postgres import PostgresError, PostgresServer, TempPostgres, find_bin_dir

SITE = Path(duckdb.__file__).resolve().parent.parent


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ducklake_connection(tmp: Path) -> duckdb.DuckDBPyConnection:
    """DuckDB with the postgres and ducklake extensions loaded from their PyPI wheels (no download)."""
    wheel_ext = next(SITE.glob(f"duckdb_extension_postgres/extensions/v{duckdb.__version__}/postgres.duckdb_extension"))
    scanner = tmp / "postgres_scanner.duckdb_extension"  # the file name must match the entry point
    shutil.copy(wheel_ext, scanner)
    ducklake = next(SITE.glob(f"duckdb_extension_ducklake/extensions/v{duckdb.__version__}/ducklake.duckdb_extension"))
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{scanner}'")
    con.execute(f"LOAD '{ducklake}'")
    return con


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_find_bin_dir_takes_the_highest_version_numerically(tmp_path: Path) -> None:
    for version in ("9.6", "15"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "pg_ctl").touch()
    (tmp_path / "16" / "bin").mkdir(parents=True)  # a client-only install: no server binaries
    (tmp_path / "common").mkdir()
    assert find_bin_dir(tmp_path) == tmp_path / "15" / "bin"


def test_find_bin_dir_says_how_to_install_when_missing(tmp_path: Path) -> None:
    with pytest.raises(PostgresError, match=r"apt-get install postgresql` \(or `make system`\)"):
        find_bin_dir(tmp_path / "postgresql")


def test_the_debian_package_is_installed() -> None:
    assert (find_bin_dir() / "initdb").exists()


def test_dsn_is_libpq_key_value_and_names_are_checked() -> None:
    server = PostgresServer("127.0.0.1", 5433, "postgres", Path("/x/data"), Path("/x/postgres.log"))
    assert server.dsn("lake_2") == "dbname=lake_2 host=127.0.0.1 port=5433 user=postgres"
    for bad in ("Lake", "a-b", "", "x" * 64, "lake; DROP DATABASE postgres", "lake host=evil"):
        with pytest.raises(ValueError, match="must be 1-63 characters"):
            server.dsn(bad)
        with pytest.raises(ValueError, match="must be 1-63 characters"):
            server.create_database(bad)
    with pytest.raises(ValueError, match="system database 'postgres'"):
        server.drop_database("postgres")


def test_create_database_is_idempotent_and_drop_removes_it(postgres: PostgresServer) -> None:
    postgres.create_database("idem")
    postgres.create_database("idem")
    assert postgres.sql("SELECT count(*) FROM pg_database WHERE datname = 'idem'") == "1"
    postgres.sql("CREATE TABLE t (v int); INSERT INTO t VALUES (7), (35)", dbname="idem")
    assert postgres.sql("SELECT sum(v) FROM t", dbname="idem") == "42"
    postgres.drop_database("idem")
    assert not postgres.database_exists("idem")
    postgres.drop_database("idem")  # dropping a missing database is fine too


def test_server_listens_on_loopback_only_with_its_socket_in_the_temp_dir(postgres: PostgresServer) -> None:
    assert postgres.sql("SHOW listen_addresses") == "127.0.0.1"
    assert postgres.sql("SHOW unix_socket_directories") == str(postgres.data_dir.parent)
    assert postgres.sql("SHOW fsync") == "off"
    assert (postgres.data_dir.parent / f".s.PGSQL.{postgres.port}").is_socket()
    assert postgres.sql("SELECT current_user") == "postgres"


def test_ducklake_catalog_round_trip_then_stop_removes_everything(tmp_path: Path) -> None:
    pg = TempPostgres(fsync=False)
    server = pg.start()
    assert listening(server.port)
    server.create_database("lake")
    con = ducklake_connection(tmp_path)
    con.execute(f"ATTACH 'ducklake:postgres:{server.dsn('lake')}' AS lake (DATA_PATH '{tmp_path}/data/')")
    con.execute("CREATE TABLE lake.requests (id VARCHAR, ttft_s DOUBLE)")
    con.execute("INSERT INTO lake.requests VALUES ('r1', 0.25), ('r2', 0.5), ('r3', 1.0)")
    assert con.execute("SELECT count(*), sum(ttft_s) FROM lake.requests").fetchall() == [(3, 1.75)]
    # the catalog really is in PostgreSQL
    assert server.sql("SELECT count(*) > 0 FROM pg_tables WHERE tablename = 'ducklake_table'", dbname="lake") == "t"
    con.close()
    pg.stop()
    assert not server.data_dir.exists()
    assert not server.data_dir.parent.exists()
    assert not listening(server.port)
    assert pg.server is None


def test_stop_keeping_data_then_start_restarts_on_the_same_port(tmp_path: Path) -> None:
    pg = TempPostgres(fsync=False)
    try:
        first = pg.start()
        first.create_database("kept")
        con = ducklake_connection(tmp_path)
        con.execute(f"ATTACH 'ducklake:postgres:{first.dsn('kept')}' AS lake (DATA_PATH '{tmp_path}/data/')")
        con.execute("CREATE TABLE lake.t AS SELECT range AS v FROM range(100)")
        pg.stop(keep_data=True)
        assert not listening(first.port)
        assert first.data_dir.is_dir()
        with pytest.raises(duckdb.IOException, match="Unable to connect to Postgres"):
            con.execute("SELECT count(*) FROM lake.t").fetchall()
        second = pg.start()
        assert second == first
        assert second.database_exists("kept")
        # the same DuckDB connection carries on once the catalog is back
        assert con.execute("SELECT count(*), sum(v) FROM lake.t").fetchall() == [(100, 4950)]
        con.close()
        with pytest.raises(PostgresError, match=f"already running on port {first.port}"):
            pg.start()
    finally:
        pg.stop()
    assert not first.data_dir.exists()


def test_context_manager_starts_and_removes(tmp_path: Path) -> None:
    with TempPostgres(fsync=False) as server:
        assert server.sql("SELECT 6 * 7") == "42"
        assert server.sql("SHOW fsync") == "off"
    assert not server.data_dir.exists()
    assert not listening(server.port)


def test_fsync_stays_on_by_default() -> None:
    with TempPostgres() as server:
        assert server.sql("SHOW fsync") == "on"


def test_start_failure_names_the_dirs_and_shows_the_log_tail() -> None:
    pg = TempPostgres(settings={"shared_buffers": "lots"})
    with pytest.raises(PostgresError) as failure:
        pg.start()
    message = str(failure.value)
    assert 'invalid value for parameter "shared_buffers": "lots"' in message
    assert "attempt 1" in message  # not a port problem: no retry
    named = re.search(r"data dir (/\S+)/data, log (/\S+)/postgres\.log\.", message)
    assert named is not None and named[1] == named[2]
    kept = Path(named[1])
    assert (kept / "data" / "PG_VERSION").read_text().strip() == find_bin_dir().parent.name  # kept for inspection
    pg.stop()
    assert not kept.exists()


def test_a_fixed_port_that_is_taken_fails_at_once(taken_port: int) -> None:
    pg = TempPostgres(port=taken_port)
    with pytest.raises(PostgresError, match=rf"did not start on 127\.0\.0\.1:{taken_port} \(attempt 1\)") as failure:
        pg.start()
    assert "Address already in use" in str(failure.value)
    pg.stop()


def test_a_free_port_taken_in_a_race_is_retried_on_another(taken_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    offered = [taken_port, taken_port]
    real_free_port = pg_module._free_port
    monkeypatch.setattr(pg_module, "_free_port", lambda: offered.pop(0) if offered else real_free_port())
    with TempPostgres(fsync=False) as server:
        assert offered == []  # two attempts lost the race, the third got a port of its own
        assert server.port != taken_port
        assert server.sql("SELECT 1") == "1"


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does the cluster belong to another user")
def test_a_root_closed_to_the_postgres_user_is_refused_clearly(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(PostgresError, match=f"the postgres user cannot reach {closed}/inferwatch-pg-"):
        TempPostgres(root=closed).start()
    assert list(closed.iterdir()) == []  # nothing left behind
