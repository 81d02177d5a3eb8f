"""The DuckDB store: one file, one writer, batched Arrow appends.

Rows are checked when they are appended (a bad row is refused at once, naming the table, row and column)
and buffered per table (collector/store/columns.py); `flush()` writes each table's buffer as one
Arrow insert. A background thread flushes every `flush_interval_s`; `close()` flushes last. Appends never
wait for a flush in progress: the buffers are swapped under a short lock and written outside it.
Should an insert still fail, its rows go to `<store>.rejected.jsonl` with the reason: never dropped.

Only this process may open the file (DuckDB allows one writer and no readers beside it); other processes
read and write through the collector's store service (collector/store/service.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from collector.store.columns import RowBuffer
from collector.store.schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """A store that cannot be opened or rows that cannot be stored; the message says which and why."""


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply the migrations this store lacks; returns the schema version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"store schema version {current} is newer than this inferwatch knows ({SCHEMA_VERSION}); upgrade inferwatch"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(MIGRATIONS[version - 1])
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
            con.execute("COMMIT")
        except duckdb.Error:
            con.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


class Store:
    def __init__(self, path: Path | str, *, flush_interval_s: float = 1.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc})") from None
        try:
            self.version = migrate(self._con)
        except BaseException:
            self._con.close()
            raise
        self._buffers = {
            name: RowBuffer(name, self._arrow_schema(name), self._not_null(name)) for name in self.tables()
        }
        self._lock = threading.Lock()  # guards the buffers
        self._write_lock = threading.Lock()  # one flush at a time
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_interval_s,), daemon=True)
        self._flusher.start()

    def tables(self) -> list[str]:
        rows = self._con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name <> 'schema_migrations' ORDER BY table_name"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _arrow_schema(self, table: str) -> pa.Schema:
        return self._con.sql(f'SELECT * FROM "{table}" LIMIT 0').to_arrow_table().schema

    def _not_null(self, table: str) -> frozenset[str]:
        rows = self._con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND NOT is_nullable", [table]
        ).fetchall()
        return frozenset(str(r[0]) for r in rows)

    def schema(self, table: str) -> pa.Schema:
        return self._buffer(table).schema

    def _buffer(self, table: str) -> RowBuffer:
        buffer = self._buffers.get(table)
        if buffer is None:
            raise StoreError(f"no table {table!r} in the store; tables are {', '.join(self._buffers)}")
        return buffer

    def append(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Buffer rows for `table`; they are durable after the next flush. Returns how many were taken.

        All or nothing: if any row is refused, none of this call's rows is buffered.
        """
        buffer = self._buffer(table)
        try:
            batch = buffer.validate(rows)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        with self._lock:
            if self._closed.is_set():
                raise StoreError(f"{self.path}: the store is closed")
            buffer.extend(batch)
        return len(batch)

    def flush(self) -> int:
        """Write every buffered row, one Arrow insert per table; returns the number of rows written."""
        with self._write_lock:
            with self._lock:
                batches = [(b.table, b.take()) for b in self._buffers.values() if b.rows]
            written = 0
            for table, data in batches:
                try:
                    self._insert(table, data)
                    written += data.num_rows
                except duckdb.Error as exc:
                    self._reject(table, data, str(exc))
            return written

    def _insert(self, table: str, data: pa.Table) -> None:
        self._con.register("_inferwatch_batch", data)
        try:
            self._con.execute(f'INSERT INTO "{table}" SELECT * FROM _inferwatch_batch')
        finally:
            self._con.unregister("_inferwatch_batch")

    def _reject(self, table: str, data: pa.Table, reason: str) -> None:
        target = Path(f"{self.path}.rejected.jsonl") if self.path != ":memory:" else None
        log.error(
            "%s: %d %s rows could not be inserted (%s); kept in %s", self.path, data.num_rows, table, reason, target
        )
        if target is not None:
            with target.open("a") as out:
                for row in data.to_pylist():
                    out.write(json.dumps({"table": table, "reason": reason, "row": row}, default=str) + "\n")

    def pending_rows(self) -> int:
        with self._lock:
            return sum(b.rows for b in self._buffers.values())

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run a read query on a cursor of the writer's connection (sees every flushed row)."""
        with self._lock:
            cursor = self._con.cursor()
        try:
            return cursor.sql(sql, params=params or None).to_arrow_table()
        finally:
            cursor.close()

    def _flush_loop(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            self.flush()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._flusher.join()
        self.flush()
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
