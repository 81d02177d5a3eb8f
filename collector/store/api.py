"""The one store API, whatever the backend (collector/store/backends.py): migrate, append, commit journal
segments exactly once, query.

Writers (`read_only=False`) migrate the store to this code's schema when they open it; a store newer than the
code is refused. Readers never migrate; they refuse a store at another schema version with what to do.
`append` inserts at once, in one transaction (all of the call's rows or none). `commit` is the committer's
(collector/journal/committer.py): the rows of several journal segments, the rows set aside (quarantine) and
one marker per segment, in one transaction, so a segment replayed after a crash is recognised and skipped.
`query` runs one SELECT that stays inside the store (collector/store/guard.py) within a statement timeout and
a result cap (collector/store/limits.py), on a connection locked down (collector/store/lockdown.py).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb
import pyarrow as pa

from collector.journal.records import decode_payload, row_bytes
from collector.store.backends import open_backend
from collector.store.columns import RowChecker
from collector.store.errors import NotAStore, QueryRefused, StoreBusy, StoreCorrupt, StoreError
from collector.store.files import embedded_fault
from collector.store.guard import check_query
from collector.store.json_rows import from_json_rows
from collector.store.limits import QueryLimits, run_limited
from collector.store.quarantine import MAX_ROW_JSON, Quarantined, Screened, row_json, screen
from collector.store.schema import MIGRATIONS, MIGRATIONS_TABLE, SCHEMA_VERSION
from collector.store.url import StoreURL, parse_store_url

if TYPE_CHECKING:
    from collector.journal.committer import SegmentBatch

log = logging.getLogger(__name__)

T = TypeVar("T")
CONFLICT_RETRIES = 8  # DuckLake commit conflicts (two gateways at once): retried with jitter, then StoreBusy
BOOKKEEPING = ("schema_migrations",)
_CHECKERS_LOCK = threading.Lock()
_CHECKERS: dict[tuple[str, str, int], dict[str, RowChecker]] = {}  # (catalog, data, version) -> checks


def _transient(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return isinstance(exc, duckdb.TransactionException) or "conflict" in text or "database is locked" in text


class Store:
    def __init__(
        self, url: StoreURL | str | Path, *, read_only: bool = False, limits: QueryLimits | None = None
    ) -> None:
        self.url = url if isinstance(url, StoreURL) else parse_store_url(url)
        self.path = str(self.url)
        self.read_only = read_only
        self.limits = limits or QueryLimits.from_env()
        self._backend = open_backend(self.url, read_only=read_only)
        try:
            self.version = self._with_retry("open", self._check_version if read_only else self._migrate)
            self._checkers = self._checkers_of_version()
        except BaseException:
            self._backend.close()
            raise

    # -- opening -------------------------------------------------------------------------------------------
    def _migrate(self, con: duckdb.DuckDBPyConnection) -> int:
        if "schema_migrations" not in (tables := _own_tables(con)) and tables:
            raise self._not_a_store(tables)
        con.execute(MIGRATIONS_TABLE)
        current = self._stored_version(con)
        for version in range(current + 1, SCHEMA_VERSION + 1):
            con.execute("BEGIN TRANSACTION")
            try:
                if self._stored_version(con) >= version:  # another writer got there first
                    con.execute("ROLLBACK")
                    continue
                con.execute(MIGRATIONS[version - 1])
                con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
                con.execute("COMMIT")
            except duckdb.Error:
                con.execute("ROLLBACK")
                raise
        return SCHEMA_VERSION

    def _stored_version(self, con: duckdb.DuckDBPyConnection) -> int:
        row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.url}: store schema version {current} is newer than this inferwatch knows ({SCHEMA_VERSION}); "
                "upgrade inferwatch"
            )
        return current

    def _check_version(self, con: duckdb.DuckDBPyConnection) -> int:
        try:
            current = self._stored_version(con)
        except duckdb.CatalogException:
            if tables := _own_tables(con):
                raise self._not_a_store(tables) from None
            current = 0
        if current != SCHEMA_VERSION:
            raise StoreError(
                f"{self.url}: store schema version {current}, this inferwatch reads version {SCHEMA_VERSION}; "
                "any writer migrates it (`inferwatch collector up`, with --store URL)"
            )
        return current

    def _not_a_store(self, tables: list[str]) -> NotAStore:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        return NotAStore(
            f"{self.url}: a database with tables of its own ({shown}) and no schema_migrations: not an inferwatch "
            "store, and inferwatch will not add its tables to it; give the store's path or a new one (--store)"
        )

    def _checkers_of_version(self) -> dict[str, RowChecker]:
        """The tables' row checks; for a DuckLake, read once per process and schema version (reading them takes
        a catalog round trip per table, and a reader opened per query would pay it every time)."""
        if self.url.backend != "ducklake":
            return self._with_retry("open", self._read_checkers)
        key = (self.url.catalog or "", self.url.data_path or "", self.version)
        with _CHECKERS_LOCK:
            known = _CHECKERS.get(key)
        if known is None:
            known = self._with_retry("open", self._read_checkers)
            with _CHECKERS_LOCK:
                _CHECKERS[key] = known
        return known

    def _read_checkers(self, con: duckdb.DuckDBPyConnection) -> dict[str, RowChecker]:
        where = "database_name = current_database() AND schema_name = current_schema()"
        tables = [
            str(r[0])
            for r in con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {where} ORDER BY table_name").fetchall()
            if str(r[0]) not in BOOKKEEPING
        ]
        checkers = {}
        for table in tables:
            schema = con.sql(f'SELECT * FROM "{table}" LIMIT 0').to_arrow_table().schema
            required = con.execute(
                f"SELECT column_name FROM duckdb_columns() WHERE {where} AND table_name = ? AND NOT is_nullable",
                [table],
            ).fetchall()
            checkers[table] = RowChecker(table, schema, frozenset(str(r[0]) for r in required))
        return checkers

    # -- using ---------------------------------------------------------------------------------------------
    def _with_retry(self, what: str, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                with self._backend.connection() as con:
                    return work(con)
            except StoreError:
                raise
            except RuntimeError as exc:
                # DuckDB turns a Ctrl-C during a query into RuntimeError("Query interrupted") caused by the
                # KeyboardInterrupt; give the caller the interrupt back so it can stop as interrupted.
                if isinstance(exc.__cause__, KeyboardInterrupt):
                    raise exc.__cause__ from None
                raise
            except (duckdb.ConstraintException, duckdb.ConversionException, duckdb.InvalidInputException) as exc:
                raise StoreError(f"{self.url}: {what} failed ({exc})") from None
            except duckdb.PermissionException as exc:
                raise QueryRefused(
                    f"{self.url}: {what} refused by the store's locked connection ({_first_line(exc)}); the store's "
                    "connections have no file, network or extension access"
                ) from None
            except duckdb.Error as exc:
                if not _transient(exc):
                    damaged = self._damaged(exc)
                    if damaged is not None:
                        raise damaged from None
                    self._backend.reset()
                    raise StoreError(f"{self.url}: {what} failed ({str(exc).strip()[:400]})") from None
                if attempt == CONFLICT_RETRIES:
                    raise StoreBusy(f"{self.url}: {what}: still in conflict after {attempt} retries ({exc})") from None
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
        raise AssertionError("unreachable")

    def _damaged(self, exc: duckdb.Error) -> StoreCorrupt | None:
        """StoreCorrupt when an embedded store's file fails under a query (a truncated or damaged file)."""
        if self.url.path is None or not isinstance(exc, duckdb.IOException):
            return None
        fault = embedded_fault(str(self.url), self.url.path, _first_line(exc))
        return fault if isinstance(fault, StoreCorrupt) else None

    def tables(self) -> list[str]:
        return sorted(self._checkers)

    def checker(self, table: str) -> RowChecker:
        checker = self._checkers.get(table)
        if checker is None:
            raise StoreError(f"no table {table!r} in the store; tables are {', '.join(self.tables())}")
        return checker

    def schema(self, table: str) -> pa.Schema:
        return self.checker(table).schema

    def validate(self, table: str, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows, checked against the table (StoreError naming the row and column)."""
        try:
            return self.checker(table).validate(rows)
        except ValueError as exc:
            raise StoreError(str(exc)) from None

    def append(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows now, in one transaction: all of them or, with a StoreError, none. Returns how many."""
        return self.append_all([(table, rows)])

    def append_all(self, batches: Iterable[tuple[str, Iterable[Mapping[str, Any]]]]) -> int:
        """Rows of several tables in one transaction (an alert's state change and its notification)."""
        self._writable()
        inserts: list[tuple[str, pa.Table]] = []
        for table, rows in batches:
            batch = self.validate(table, rows)
            if not batch:
                continue
            try:
                inserts.append((table, self.checker(table).to_arrow(batch)))
            except (TypeError, OverflowError, pa.ArrowException) as exc:
                raise StoreError(f"{table}: rows the store cannot hold ({exc})") from None
        if inserts:
            what = "append to " + ", ".join(t for t, _ in inserts)
            self._with_retry(what, lambda con: _transaction(con, inserts))
        return sum(data.num_rows for _, data in inserts)

    def execute_in_transaction(self, what: str, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Parameterised statements (DELETE, INSERT ... VALUES) in one transaction, retried whole on a conflict;
        `what` names the work in errors. For the little bookkeeping append_all cannot do (collector/store/leases.py)."""
        self._writable()

        def run(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            try:
                for sql, params in statements:
                    con.execute(sql, list(params))
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

        self._with_retry(what, run)

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.url}: opened read-only; writers open it with read_only=False")

    def committed(self, writer_id: str, segments: list[str]) -> set[str]:
        """Which of the writer's journal segments the store already holds."""
        if not segments:
            return set()
        sql = "SELECT segment FROM journal_segments WHERE writer = ? AND list_contains(?, segment)"
        table = self._with_retry(
            "read journal markers", lambda con: con.sql(sql, params=[writer_id, segments]).to_arrow_table()
        )
        return {str(s) for s in table.column("segment").to_pylist()}

    def commit(self, writer_id: str, batches: list[SegmentBatch]) -> None:
        """The segments' rows, their quarantined rows and one marker per segment, in one transaction."""
        self._writable()
        now = datetime.now(UTC)
        inserts: list[tuple[str, pa.Table]] = []
        quarantined: list[dict[str, Any]] = []
        markers: list[dict[str, Any]] = []
        for batch in batches:
            rows = 0
            for screened in self._screen_all(batch):
                if screened.data is not None:
                    inserts.append((screened.table, screened.data))
                    rows += screened.data.num_rows
                quarantined += [_quarantine_row(writer_id, batch.segment, q, now) for q in screened.quarantined]
            bad = sum(1 for q in quarantined if q["segment"] == batch.segment)
            markers.append({
                "writer": writer_id, "segment": batch.segment, "rows": rows, "torn": batch.torn, "quarantined": bad,
                "committed_at": now,
            })  # fmt: skip
        for table, rows_ in (("quarantine", quarantined), ("journal_segments", markers)):
            if rows_:
                inserts.append((table, self.checker(table).to_arrow(rows_)))
        if quarantined:
            log.error(
                "%s: %d rows quarantined (table quarantine): %s", self.url, len(quarantined), quarantined[0]["reason"]
            )
        self._with_retry("commit journal segments", lambda con: _transaction(con, inserts))

    def _screen_all(self, batch: SegmentBatch) -> list[Screened]:
        """Each table's rows of a segment as Arrow, read in one go when they can be (json_rows.py), else decoded
        and screened row by row; a record that does not even decode is quarantined as it was journaled."""
        out = []
        for table, payloads in batch.payloads.items():
            checker = self._checkers.get(table)
            fast = None if checker is None else from_json_rows(checker, [row_bytes(table, p) for p in payloads])
            if fast is not None:
                out.append(Screened(table, fast, []))
                continue
            rows, undecodable = [], []
            for payload in payloads:
                record = decode_payload(payload)
                if record is None:
                    text = payload.decode("ascii", errors="backslashreplace")[:MAX_ROW_JSON]
                    undecodable.append(Quarantined(table, "the journal record does not decode as a row", text))
                else:
                    rows.append(record.row)
            if checker is None:
                reason = f"no table {table!r} in this store (schema version {self.version})"
                screened = Screened(table, None, [Quarantined(table, reason, row_json(r)) for r in rows])
            else:
                screened = screen(checker, rows) if rows else Screened(table, None, [])
            out.append(Screened(table, screened.data, [*screened.quarantined, *undecodable]))
        return out

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """The result of one SELECT over the store's tables (QueryRefused for anything else), within the
        store's QueryLimits (QueryLimitExceeded naming the limit)."""
        check_query(sql)
        where = str(self.url)
        return self._with_retry("query", lambda con: run_limited(con, sql, params, self.limits, where))

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _own_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The tables of the connection's current database and schema (the store's, or a stranger's)."""
    where = "database_name = current_database() AND schema_name = current_schema()"
    rows = con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {where} ORDER BY table_name").fetchall()
    return [str(r[0]) for r in rows]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _quarantine_row(writer: str, segment: str, q: Quarantined, now: datetime) -> dict[str, Any]:
    return {"writer": writer, "segment": segment, "table_name": q.table, "reason": q.reason,
            "row_json": q.row_json, "recorded_at": now}  # fmt: skip


def _transaction(con: duckdb.DuckDBPyConnection, inserts: list[tuple[str, pa.Table]]) -> None:
    con.execute("BEGIN TRANSACTION")
    try:
        for index, (table, data) in enumerate(inserts):
            name = f"_inferwatch_batch_{index}"
            con.register(name, data)
            try:
                con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM {name}')
            finally:
                con.unregister(name)
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise
