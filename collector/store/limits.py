"""Bounds on one store query: a statement timeout and a result-size cap (rows and Arrow bytes).

DuckDB has no statement timeout: a timer interrupts the query's own connection (`interrupt()`; every use of
the store is a cursor of its own, so no other query is touched). The result is read in batches and refused
as soon as it passes either cap, so a runaway result is never held whole. Defaults below; set them with the
environment (INFERWATCH_QUERY_TIMEOUT_S, INFERWATCH_QUERY_MAX_ROWS, INFERWATCH_QUERY_MAX_BYTES) or per
store (`open_reader(url, limits=QueryLimits(...))`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from collector.store.errors import QueryLimitExceeded, StoreError

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_ROWS = 2_000_000
DEFAULT_MAX_BYTES = 512 * 2**20
BATCH_ROWS = 65_536
ENV = {
    "timeout_s": "INFERWATCH_QUERY_TIMEOUT_S",
    "max_rows": "INFERWATCH_QUERY_MAX_ROWS",
    "max_bytes": "INFERWATCH_QUERY_MAX_BYTES",
}


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_rows: int = DEFAULT_MAX_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueryLimits:
        """The defaults, overridden by INFERWATCH_QUERY_*; StoreError naming the variable when one is not a
        positive number."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, key in ENV.items():
            if key not in env:
                continue
            kind = float if field == "timeout_s" else int
            try:
                value = kind(env[key])
            except ValueError:
                value = 0
            if not value > 0:
                raise StoreError(f"{key}={env[key]!r}: give a positive {'number' if kind is float else 'integer'}")
            values[field] = value
        return cls(**values)


def run_limited(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None, limits: QueryLimits, where: str
) -> pa.Table:
    """The query's result on `con` (a cursor of its own), within `limits`; QueryLimitExceeded naming the limit,
    the store `where` and how to raise it."""
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(limits.timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        reader = con.execute(sql, list(params) if params else None).to_arrow_reader(BATCH_ROWS)
        batches, rows, size = [], 0, 0
        for batch in reader:
            rows += batch.num_rows
            size += batch.nbytes
            if rows > limits.max_rows:
                raise QueryLimitExceeded(_over(where, f"returned more than {limits.max_rows} rows", "max_rows"))
            if size > limits.max_bytes:
                raise QueryLimitExceeded(_over(where, f"returned more than {limits.max_bytes} bytes", "max_bytes"))
            batches.append(batch)
        return pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException:
        if fired.is_set():
            raise QueryLimitExceeded(
                _over(where, f"ran past the statement timeout of {limits.timeout_s:g} s", "timeout_s")
            ) from None
        raise
    finally:
        timer.cancel()


def _over(where: str, what: str, field: str) -> str:
    return (
        f"{where}: the query {what}; narrow it (a shorter window, a LIMIT), or raise the limit with "
        f"{ENV[field]} (or QueryLimits({field}=...))"
    )
