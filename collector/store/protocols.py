"""What code that reads or writes the store needs of it: a Store (in process) and a RemoteStore (over the
collector's HTTP) both fit."""

from __future__ import annotations

from typing import Any, Protocol

import pyarrow as pa


class Queryable(Protocol):
    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table: ...


class RowSink(Protocol):
    def append(self, table: str, rows: list[dict[str, Any]]) -> int: ...


class StoreLike(Queryable, RowSink, Protocol):
    def flush(self) -> int: ...
