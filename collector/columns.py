"""Per-table column buffers: rows are checked value by value when they arrive and kept column-wise, so
that a flush builds one Arrow table per table without touching Python dicts again and cannot fail on data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from numbers import Integral, Real
from typing import Any

import pyarrow as pa

Check = Callable[[Any], bool]
INT32 = (-(2**31), 2**31 - 1)


def _integer(bounds: tuple[int, int] | None) -> Check:
    def check(value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, Integral):
            return False
        return bounds is None or bounds[0] <= int(value) <= bounds[1]

    return check


def _check_for(column: str, type_: pa.DataType) -> tuple[Check, str]:
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return (lambda v: isinstance(v, str)), "a string"
    if pa.types.is_floating(type_):
        return (lambda v: isinstance(v, Real) and not isinstance(v, bool)), "a number"
    if pa.types.is_int32(type_):
        return _integer(INT32), "an integer between -2^31 and 2^31-1"
    if pa.types.is_integer(type_):
        return _integer(None), "an integer"
    if pa.types.is_boolean(type_):
        return (lambda v: isinstance(v, bool)), "true or false"
    if pa.types.is_timestamp(type_):
        return (lambda v: isinstance(v, datetime)), "a datetime"
    raise TypeError(f"column {column}: the store does not buffer {type_} columns")


class ColumnBuffer:
    """Rows of one table waiting for the next flush, kept as one list per column."""

    def __init__(self, table: str, schema: pa.Schema, required: frozenset[str]) -> None:
        self.table = table
        self.schema = schema
        self.required = required
        self._checks = {f.name: _check_for(f.name, f.type) for f in schema}
        self._columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.rows = 0

    def validate(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows, checked; raises ValueError naming the row, column and what was expected."""
        batch = list(rows)
        for index, row in enumerate(batch):
            unknown = row.keys() - self._checks.keys()
            if unknown:
                raise ValueError(f"{self.table} row {index}: unknown column(s) {', '.join(sorted(unknown))}")
            missing = [c for c in self.required if row.get(c) is None]
            if missing:
                raise ValueError(f"{self.table} row {index}: column(s) {', '.join(sorted(missing))} must not be empty")
            for column, value in row.items():
                check, expected = self._checks[column]
                if value is not None and not check(value):
                    raise ValueError(f"{self.table} row {index}: column {column} must be {expected}, got {value!r}")
        return batch

    def extend(self, rows: list[Mapping[str, Any]]) -> None:
        """Add rows that passed `validate`."""
        for name, values in self._columns.items():
            values.extend(row.get(name) for row in rows)
        self.rows += len(rows)

    def take(self) -> pa.Table:
        """The buffered rows as one Arrow table; the buffer is empty afterwards."""
        columns, self._columns = self._columns, {name: [] for name in self.schema.names}
        self.rows = 0
        return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in self.schema], schema=self.schema)
