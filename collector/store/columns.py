"""Per-table row checks: rows are checked value by value when they arrive (a bad row is refused at once,
naming the table, row and column), so that the insert, which turns them into one Arrow table, rarely fails on
data; what still fails (a lone surrogate, a number Arrow cannot hold) is found row by row and quarantined
(collector/store/quarantine.py).

Checks compare exact Python types first (a set lookup) and fall back to isinstance only for other types
(numpy scalars, subclasses): the gateway appends one row per request and this is its hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from numbers import Integral, Real
from typing import Any

import pyarrow as pa

INT32 = (-(2**31), 2**31 - 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _kind(column: str, type_: pa.DataType) -> tuple[frozenset[type], Callable[[Any], bool], str]:
    """Exact types accepted at once, a slower check for anything else, and what to tell the user."""
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return frozenset({str}), lambda v: isinstance(v, str), "a string"
    if pa.types.is_floating(type_):
        return frozenset({float, int}), lambda v: isinstance(v, Real) and not isinstance(v, bool), "a number"
    if pa.types.is_int32(type_):
        return frozenset({int}), _is_int, "an integer between -2^31 and 2^31-1"
    if pa.types.is_integer(type_):
        return frozenset({int}), _is_int, "an integer"
    if pa.types.is_boolean(type_):
        return frozenset({bool}), lambda v: isinstance(v, bool), "true or false"
    if pa.types.is_timestamp(type_):
        return frozenset({datetime}), lambda v: isinstance(v, datetime), "a datetime"
    raise TypeError(f"column {column}: the store does not buffer {type_} columns")


class RowChecker:
    """The checks of one table's rows against its schema."""

    def __init__(self, table: str, schema: pa.Schema, required: frozenset[str]) -> None:
        self.table = table
        self.schema = schema
        self.required = tuple(required)
        self._kinds = {f.name: _kind(f.name, f.type) for f in schema}
        self._int32 = frozenset(f.name for f in schema if pa.types.is_int32(f.type))
        self._names = frozenset(schema.names)

    def validate(self, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows, checked; raises ValueError naming the row, column and what was expected."""
        batch = list(rows)
        kinds, int32 = self._kinds, self._int32
        for index, row in enumerate(batch):
            for column in self.required:
                if row.get(column) is None:
                    missing = sorted(c for c in self.required if row.get(c) is None)
                    raise ValueError(f"{self.table} row {index}: column(s) {', '.join(missing)} must not be empty")
            for column, value in row.items():
                kind = kinds.get(column)
                if kind is None:
                    unknown = sorted(set(row) - set(kinds))
                    raise ValueError(f"{self.table} row {index}: unknown column(s) {', '.join(unknown)}")
                if value is None:
                    continue
                exact, check, expected = kind
                if (type(value) not in exact and not check(value)) or (
                    column in int32 and not INT32[0] <= value <= INT32[1]
                ):
                    raise ValueError(f"{self.table} row {index}: column {column} must be {expected}, got {value!r}")
        return batch

    def fits(self, rows: Iterable[Mapping[str, Any]]) -> bool:
        """Whether every row has only this table's columns and every required one: the cheap check for rows
        checked once already (the journal's); the values' types are then Arrow's to check."""
        names, required = self._names, self.required
        return all(names.issuperset(row) and all(row.get(c) is not None for c in required) for row in rows)

    def to_arrow(self, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
        """Checked rows as one Arrow table of the table's schema (pyarrow errors propagate)."""
        return pa.Table.from_pylist(rows, schema=self.schema)
