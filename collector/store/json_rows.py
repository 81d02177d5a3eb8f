"""A table's journaled rows as one Arrow table, parsed by Arrow's JSON reader in one call: the committer's fast
path. Each row is the JSON object the journal wrote (collector/journal/records.py: ASCII JSON, datetimes as
`{"$dt": iso8601}`); the whole batch is read against the table's schema, and anything short of an exact reading
returns None so that the caller decodes the rows one by one and screens them (collector/store/quarantine.py):
an escape Arrow refuses (a lone surrogate), a value of the wrong type, a field the table does not have, an
integer of 19 digits or more (Arrow would read it as a float), a required column left empty, a string over the
size limit, a datetime without an offset or not ISO 8601. Doubles read back bit for bit (tested).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from collector.journal.records import LONG_INT
from collector.store.columns import RowChecker
from collector.store.quarantine import MAX_VALUE_BYTES

_DT = pa.struct([pa.field("$dt", pa.string())])


def _json_type(type_: pa.DataType) -> pa.DataType:
    return _DT if pa.types.is_timestamp(type_) else type_


def from_json_rows(checker: RowChecker, rows: Sequence[bytes]) -> pa.Table | None:
    """The rows (each one JSON object without newlines) as a table of the checker's schema, or None when the
    batch is not read exactly (see the module doc)."""
    if not rows:
        return None
    body = b"\n".join(rows)
    if body.count(b"\n") != len(rows) - 1 or LONG_INT.search(body):
        return None
    schema = checker.schema
    json_schema = pa.schema([pa.field(f.name, _json_type(f.type)) for f in schema])
    try:
        parsed = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(body) + 1)),
            parse_options=pj.ParseOptions(explicit_schema=json_schema, unexpected_field_behavior="error"),
        )
        if parsed.num_rows != len(rows):
            return None
        columns = [_column(parsed.column(f.name), f.type) for f in schema]
    except (pa.ArrowException, ValueError):
        return None
    if any(c is None for c in columns):
        return None
    table = pa.Table.from_arrays(columns, schema=schema)
    if any(table.column(name).null_count for name in checker.required):
        return None
    return table


def _column(column: pa.ChunkedArray, type_: pa.DataType) -> pa.ChunkedArray | None:
    if pa.types.is_timestamp(type_):
        text = pc.struct_field(column, [0])
        if pc.sum(pc.and_(pc.is_valid(column), pc.is_null(text))).as_py():  # `{}` where a datetime should be
            return None
        return pc.cast(text, type_)
    if pa.types.is_string(type_) and column.nbytes > MAX_VALUE_BYTES:
        longest = pc.max(pc.binary_length(column)).as_py()
        if longest is not None and longest > MAX_VALUE_BYTES:
            return None
    return column
