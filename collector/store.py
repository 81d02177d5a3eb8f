"""The DuckDB store: one file, one writer, batched Arrow appends.

Rows are validated and converted to Arrow when they are appended (so a bad row is refused at once,
naming the table and column, and a flush cannot fail on data); they are buffered per table and written
as one Arrow insert per table by `flush()`, which a background thread calls every `flush_interval_s`
and `close()` calls last.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from collector.schema import MIGRATIONS, SCHEMA_VERSION


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
        self._schemas = {name: self._arrow_schema(name) for name in self.tables()}
        self._required = {name: self._not_null(name) for name in self._schemas}
        self._pending: dict[str, list[pa.Table]] = {}
        self._lock = threading.Lock()
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

    def append(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Buffer rows for `table`; they are durable after the next flush. Returns how many were taken."""
        schema = self._schemas.get(table)
        if schema is None:
            raise StoreError(f"no table {table!r} in the store; tables are {', '.join(self._schemas)}")
        batch = list(rows)
        if not batch:
            return 0
        for index, row in enumerate(batch):
            unknown = set(row) - set(schema.names)
            if unknown:
                raise StoreError(f"{table} row {index}: unknown column(s) {', '.join(sorted(unknown))}")
            missing = [c for c in self._required[table] if row.get(c) is None]
            if missing:
                raise StoreError(f"{table} row {index}: column(s) {', '.join(sorted(missing))} must not be empty")
        try:
            arrow = pa.Table.from_pylist(batch, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise StoreError(f"{table}: rows do not fit the table's columns ({exc})") from None
        with self._lock:
            if self._closed.is_set():
                raise StoreError(f"{self.path}: the store is closed")
            self._pending.setdefault(table, []).append(arrow)
        return len(batch)

    def flush(self) -> int:
        """Write every buffered row, one Arrow insert per table; returns the number of rows written."""
        with self._lock:
            pending, self._pending = self._pending, {}
            written = 0
            for table, parts in pending.items():
                data = pa.concat_tables(parts)
                self._con.register("_inferwatch_batch", data)
                try:
                    self._con.execute(f'INSERT INTO "{table}" SELECT * FROM _inferwatch_batch')
                finally:
                    self._con.unregister("_inferwatch_batch")
                written += data.num_rows
            return written

    def pending_rows(self) -> int:
        with self._lock:
            return sum(t.num_rows for parts in self._pending.values() for t in parts)

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
