"""The store file read by a process that must never write it or hold it (the dashboard), while no collector runs.

Each query opens the file read-only, runs, and closes it again: DuckDB lets a writer open a file only when no
other process has it open, even read-only, so a reader that kept its connection would stop a later
`inferwatch collector up` from starting. Between queries the file is free; a collector that starts during one
query fails to open it and says so (start it again).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from collector.store.embedded import StoreError


class ReadOnlyStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        if not self.path.exists():
            raise StoreError(f"{self.path}: no store there yet; `inferwatch collector up` creates it")
        try:
            con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.IOException as exc:
            raise StoreError(
                f"{self.path}: held by another process that writes it ({exc}); when that is the collector, "
                "readers go through it: is it up? `inferwatch collector status`"
            ) from None
        try:
            return con.sql(sql, params=params or None).to_arrow_table()
        finally:
            con.close()

    def close(self) -> None:
        """Nothing stays open between queries."""

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
