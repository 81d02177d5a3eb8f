"""Rows that passed the checks at append but that the store still cannot take — a lone surrogate in a string
(from a pool's finish_reason), an integer too large for a DOUBLE, a value over the size limit — are found row
by row and set aside with their reason, so one poison row never stops ingestion."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from collector.store.columns import RowChecker

MAX_VALUE_BYTES = 1 << 20  # a string over 1 MiB is no observation: quarantined
MAX_ROW_JSON = 64 << 10  # how much of a quarantined row is kept


@dataclass(frozen=True)
class Quarantined:
    table: str
    reason: str
    row_json: str


@dataclass(frozen=True)
class Screened:
    table: str
    data: pa.Table | None  # the good rows (None when there are none)
    quarantined: list[Quarantined]


def row_json(row: Mapping[str, Any]) -> str:
    """The row as ASCII JSON (escapes survive anything), cut to MAX_ROW_JSON."""
    return json.dumps(row, default=_plain, ensure_ascii=True)[:MAX_ROW_JSON]


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else repr(value)


def _reason(checker: RowChecker, row: Mapping[str, Any]) -> str | None:
    for column, value in row.items():
        if (
            isinstance(value, str)
            and len(value) > MAX_VALUE_BYTES // 4
            and len(value.encode(errors="replace")) > MAX_VALUE_BYTES
        ):
            return f"column {column} is over {MAX_VALUE_BYTES >> 20} MiB"
    try:
        checker.validate([row])
        checker.to_arrow([row])
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


def screen(checker: RowChecker, rows: Sequence[Mapping[str, Any]]) -> Screened:
    """The rows as one Arrow table, less those the store cannot take (each with its reason). The rows were
    checked value by value at append; the fast path checks only their columns and lets Arrow check the values,
    and any failure sends the whole batch through the row-by-row checks."""
    try:
        if checker.fits(rows) and all(not _oversized(row) for row in rows):
            return Screened(checker.table, checker.to_arrow(rows), [])
    except (ValueError, TypeError, OverflowError, pa.ArrowException):
        pass
    good: list[Mapping[str, Any]] = []
    bad: list[Quarantined] = []
    for row in rows:
        reason = _reason(checker, row)
        if reason is None:
            good.append(row)
        else:
            bad.append(Quarantined(checker.table, reason, row_json(row)))
    return Screened(checker.table, checker.to_arrow(good) if good else None, bad)


def _oversized(row: Mapping[str, Any]) -> bool:
    return any(isinstance(v, str) and len(v) > MAX_VALUE_BYTES // 4 for v in row.values())
