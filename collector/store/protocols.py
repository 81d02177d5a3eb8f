"""What code that reads or writes the store needs of it. A Store (collector/store/api.py) is all three; the
collector's journal sink (collector/ingest.py) is a RowSink."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import pyarrow as pa


class Queryable(Protocol):
    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table: ...


class RowSink(Protocol):
    def append(self, table: str, rows: list[dict[str, Any]]) -> int: ...


class StoreLike(Queryable, RowSink, Protocol):
    def append_all(self, batches: Iterable[tuple[str, Iterable[Mapping[str, Any]]]]) -> int: ...
