"""Hostile SQL through the one reader API every surface uses (`open_reader(url).query`, behind the dashboard,
fleet, gate, alerts, canary and evals), on every backend: each is refused with QueryRefused naming what was
refused, touches nothing outside the store, and the reader still answers afterwards. Then the connection
itself, under the statement check: external access off and the configuration locked. Then the statement
timeout and the result cap.

On the code before this change `read_csv('/etc/passwd')` answered with the file's lines, glob('/*') listed
the root, COPY wrote a file, ATTACH 'ducklake:sqlite:...' created one, postgres_execute ran SQL on the
catalog's PostgreSQL, and no query had a timeout or a cap."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import duckdb
import pytest

from collector.store import extensions
from collector.store.api import Store
from collector.store.door import open_reader, open_store
from collector.store.errors import QueryLimitExceeded, QueryRefused, StoreError
from collector.store.guard import refusal
from collector.store.limits import QueryLimits
from collector.store.schema import SCHEMA_VERSION
from tests.collector.store.backends import BACKENDS, store_url
from tests.conftest import free_port

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RULE = "the store's queries are one SELECT over its tables, with no file, network, extension or configuration access"


@pytest.fixture(scope="module", params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store of one request on each backend, shared by the module's tests (none of which changes it)."""
    postgres = request.getfixturevalue("postgres") if request.param == "ducklake-postgres" else None
    url = store_url(request.param, tmp_path_factory.mktemp(request.param), postgres)
    with open_store(url) as store:
        store.append("requests", [{"id": "r1", "pool": "ref", "source": "load", "status": "ok", "started_at": T0}])
    return url


@pytest.fixture(scope="module")
def reader(url: str) -> Iterator[Store]:
    with open_reader(url) as store:
        yield store


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.seen.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"a,b\n1,2\n")

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    """A real HTTP server on loopback that records every request it gets (none should come)."""
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def refused(store: Store, sql: str, *reason: str) -> str:
    """Asserts the query is refused naming `reason`, and that the reader still answers; returns the message."""
    with pytest.raises(QueryRefused) as caught:
        store.query(sql)
    text = str(caught.value)
    assert text.startswith("store query refused: "), text
    for part in reason:
        assert part in text, text
    assert text.endswith(RULE), text
    assert store.query("SELECT id FROM requests").to_pylist() == [{"id": "r1"}]  # still serving
    return text


HOSTILE = [
    ("SELECT * FROM read_csv('/etc/passwd', header=false)", "function read_csv() reads files"),
    ("SELECT count(*) FROM glob('/*')", "function glob() reads files"),
    ("SELECT * FROM read_text('/proc/self/environ')", "function read_text() reads files"),
    ("SELECT * FROM read_blob('/etc/passwd')", "function read_blob() reads files"),
    ("SELECT * FROM '/etc/passwd'", "FROM '/etc/passwd' names a file or URL, not a table of the store"),
    ("SELECT * FROM 'requests.parquet'", "FROM 'requests.parquet' names a file or URL"),
    ("SELECT * FROM (SELECT 1) t, LATERAL (SELECT * FROM read_parquet('/x/*.parquet'))", "read_parquet() reads files"),
    ("WITH x AS (SELECT * FROM sniff_csv('/etc/passwd')) SELECT * FROM x", "function sniff_csv() reads files"),
    ("SELECT getenv('HOME')", "function getenv() reads or changes the configuration"),
    ("SELECT current_setting('enable_external_access')", "function current_setting() reads or changes the config"),
    ("SELECT * FROM duckdb_settings()", "function duckdb_settings() reads or changes the configuration"),
    ("SELECT * FROM duckdb_secrets()", "function duckdb_secrets() reads or changes the configuration, secrets"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''/etc/passwd'')')", "function query() runs SQL given as text"),
    ("SELECT * FROM sqlite_scan('/etc/x.sqlite', 't')", "function sqlite_scan() comes from an extension"),
    ("SELECT * FROM postgres_scan('host=10.0.0.1', 'public', 't')", "function postgres_scan() comes from an ext"),
    ("SELECT * FROM postgres_query('db', 'SELECT pg_read_file(''/etc/passwd'')')", "postgres_query() comes from"),
    ("SELECT * FROM ducklake_snapshots('inferwatch_lake')", "function ducklake_snapshots() comes from an extension"),
    ("COPY requests TO '/tmp/inferwatch-hostile.csv'", "a COPY statement (only SELECT is allowed)"),
    ("COPY (SELECT 1) TO '/tmp/inferwatch-hostile.csv'", "a COPY statement"),
    ("EXPORT DATABASE '/tmp/inferwatch-hostile'", "a EXPORT statement"),
    ("ATTACH '/tmp/inferwatch-hostile.db' AS other", "a ATTACH statement"),
    ("ATTACH 'ducklake:sqlite:/tmp/inferwatch-hostile.sqlite' AS other", "a ATTACH statement"),
    ("INSTALL httpfs", "a LOAD statement"),
    ("LOAD httpfs", "a LOAD statement"),
    ("SET enable_external_access = true", "a SET statement"),
    ("SET lock_configuration = false", "a SET statement"),
    ("RESET lock_configuration", "a SET statement"),
    ("PRAGMA lock_configuration = false", "only SELECT"),
    ("CALL postgres_execute('__ducklake_metadata_inferwatch_lake', 'DROP TABLE ducklake_table')", "a CALL statement"),
    ("DROP TABLE requests", "a DROP statement"),
    ("DELETE FROM requests", "a DELETE statement"),
    ("CREATE TABLE x AS SELECT 1", "a CREATE statement"),
    ("SELECT 1; COPY requests TO '/tmp/inferwatch-hostile.csv'", "2 statements (one SELECT is allowed)"),
    ("SELECT * FROM __ducklake_metadata_inferwatch_lake.ducklake_table", "is in the DuckLake's catalog database"),
    ("SELECT * FROM __ducklake_metadata_inferwatch_lake.main.ducklake_table", "is in the DuckLake's catalog"),
]


@pytest.mark.parametrize(("sql", "reason"), HOSTILE, ids=[h[0][:48] for h in HOSTILE])
def test_hostile_sql_is_refused_and_the_reader_still_serves(reader: Store, sql: str, reason: str) -> None:
    refused(reader, sql, reason)
    for left in ("inferwatch-hostile.csv", "inferwatch-hostile.db", "inferwatch-hostile.sqlite", "inferwatch-hostile"):
        assert not Path("/tmp", left).exists()


def test_a_writer_store_refuses_them_too(url: str) -> None:
    with open_store(url) as store:
        refused(store, "SELECT * FROM read_csv('/etc/passwd', header=false)", "read_csv() reads files")
        refused(store, "DELETE FROM requests", "a DELETE statement")
        assert store.version == SCHEMA_VERSION


def test_no_url_is_fetched(reader: Store, http_url: str) -> None:
    refused(reader, f"SELECT * FROM read_csv('{http_url}/a.csv')", "read_csv() reads files")
    refused(reader, f"SELECT * FROM '{http_url}/a.csv'", "names a file or URL")
    refused(reader, f"SELECT * FROM read_text('{http_url}/x')", "read_text() reads files")
    assert Recorder.seen == []


def test_every_function_the_store_extensions_add_is_refused() -> None:
    def names(con: duckdb.DuckDBPyConnection) -> set[str]:
        return {str(r[0]) for r in con.execute("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall()}

    con = duckdb.connect()
    before = names(con)
    extensions.load(con, *extensions.WHEELS)
    added = names(con) - before
    con.close()
    assert {"sqlite_scan", "postgres_execute", "postgres_query", "ducklake_snapshots"} <= added
    allowed = {name for name in added if refusal(f"SELECT {name}()") is None}
    assert allowed == set()


def test_the_queries_of_the_readers_pass_the_check() -> None:
    # every surface's SQL shapes: GROUP BY ALL, FILTER, quantiles, samples, window functions, lists, LATERAL, JSON
    for sql in [
        "SELECT to_timestamp(floor(epoch(started_at) / $1) * $1) AS b, count(*) FILTER (WHERE status = 'ok') "
        "FROM requests WHERE started_at >= $2 GROUP BY ALL ORDER BY b",
        "SELECT * FROM (SELECT ttft_s FROM requests WHERE pool = ?) USING SAMPLE reservoir(100 ROWS) REPEATABLE (7)",
        "SELECT pool, arg_max(spec_json, recorded_at) AS spec, quantile_cont(ttft_s, [0.5, 0.9]) FROM pools GROUP BY 1",
        "SELECT segment FROM journal_segments WHERE writer = ? AND list_contains(?, segment)",
        "SELECT json_extract_string(payload_json, '$.a'), row_number() OVER (PARTITION BY rule ORDER BY seq) AS n "
        "FROM alerts",
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()",
    ]:
        assert refusal(sql) is None, sql


def test_the_connection_itself_has_no_external_access_and_a_locked_configuration(reader: Store) -> None:
    # under the statement check: the connection every query runs on (reached here directly)
    with reader._backend.connection() as con:
        with pytest.raises(duckdb.PermissionException, match="file system operations are disabled by configuration"):
            con.execute("SELECT * FROM read_csv('/etc/passwd', header=false)").fetchall()
        with pytest.raises(duckdb.PermissionException, match="disabled"):
            con.execute("COPY (SELECT 1) TO '/tmp/inferwatch-hostile.csv'")
        for setting in ("enable_external_access = true", "lock_configuration = false", "autoload_known_extensions = 1"):
            with pytest.raises(duckdb.InvalidInputException, match="the configuration has been locked"):
                con.execute(f"SET {setting}")
        with pytest.raises(duckdb.InvalidInputException, match="the configuration has been locked"):
            con.execute("RESET lock_configuration")
        with pytest.raises(duckdb.PermissionException, match="Loading external extensions is disabled"):
            con.execute("LOAD httpfs")
        with pytest.raises(duckdb.CatalogException, match="getenv does not exist"):
            con.execute("SELECT getenv('HOME')")
        settings = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration', "
            "'autoinstall_known_extensions', 'autoload_known_extensions')"
        ).fetchall())  # fmt: skip
    assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                        "autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}  # fmt: skip
    assert not Path("/tmp/inferwatch-hostile.csv").exists()


def test_a_query_past_the_timeout_is_interrupted_and_named(url: str) -> None:
    with open_reader(url, limits=QueryLimits(timeout_s=0.5)) as store:
        started = time.monotonic()
        with pytest.raises(QueryLimitExceeded) as caught:
            store.query("SELECT count(*) FROM range(100000000000) t(a) WHERE a % 7 = 3")
        assert time.monotonic() - started < 30  # interrupted, not run to the end (hours)
        assert str(caught.value) == (
            f"{url}: the query ran past the statement timeout of 0.5 s; narrow it (a shorter window, a LIMIT), "
            "or raise the limit with INFERWATCH_QUERY_TIMEOUT_S (or QueryLimits(timeout_s=...))"
        )
        assert store.query("SELECT count(*) AS n FROM requests").to_pylist() == [{"n": 1}]  # still serving


def test_a_result_over_the_row_cap_is_refused_and_one_at_the_cap_is_not(url: str) -> None:
    with open_reader(url, limits=QueryLimits(max_rows=100)) as store:
        assert store.query("SELECT range AS i FROM range(100)").num_rows == 100
        with pytest.raises(QueryLimitExceeded) as caught:
            store.query("SELECT range AS i FROM range(101)")
        assert str(caught.value) == (
            f"{url}: the query returned more than 100 rows; narrow it (a shorter window, a LIMIT), or raise the limit "
            "with INFERWATCH_QUERY_MAX_ROWS (or QueryLimits(max_rows=...))"
        )


def test_a_result_over_the_byte_cap_is_refused(url: str) -> None:
    with open_reader(url, limits=QueryLimits(max_bytes=10_000)) as store:
        assert store.query("SELECT repeat('x', 100) AS s").num_rows == 1
        with pytest.raises(QueryLimitExceeded, match=r"more than 10000 bytes.*INFERWATCH_QUERY_MAX_BYTES"):
            store.query("SELECT repeat('x', 20000) AS s")


def test_the_limits_come_from_the_environment_and_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert QueryLimits.from_env({}) == QueryLimits(60.0, 2_000_000, 512 * 2**20)
    env = {"INFERWATCH_QUERY_TIMEOUT_S": "2.5", "INFERWATCH_QUERY_MAX_ROWS": "10", "INFERWATCH_QUERY_MAX_BYTES": "99"}
    assert QueryLimits.from_env(env) == QueryLimits(2.5, 10, 99)
    for key, value in [("INFERWATCH_QUERY_MAX_ROWS", "many"), ("INFERWATCH_QUERY_TIMEOUT_S", "-1")]:
        with pytest.raises(StoreError, match=f"^{key}={value!r}: give a positive"):
            QueryLimits.from_env({key: value})
