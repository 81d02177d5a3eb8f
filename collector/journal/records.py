"""The journal's on-disk record: one row of one table, framed with its length and checksum. Pure functions.

Frame: `4-byte little-endian payload length | 4-byte little-endian crc32 of the payload | payload`.
Payload: the JSON object `{"t": table, "r": row}` written with `ensure_ascii` (every string, a lone surrogate
included, is stored as escapes and reads back exactly) and datetimes as `{"$dt": iso8601}` (read back as
timezone-aware datetimes; a naive one is taken as UTC).

Reading a segment stops at the first frame that fails its check: a short header, a short payload or a bad
checksum in the last frame is a torn tail (an append cut off by a crash); a bad checksum before the end is
corruption (the frame's length can no longer be trusted, so nothing after it is read). A frame whose checksum
holds but whose payload is not `{"t": str, "r": dict}` is corrupt too, and skipped.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

HEADER = struct.Struct("<II")  # payload length, crc32 of the payload


class Record(NamedTuple):
    table: str
    row: dict[str, Any]


@dataclass(frozen=True)
class SegmentRead:
    """What a segment's bytes hold: the records that read back, and how many did not."""

    records: list[Record]
    torn: int = 0  # 0 or 1: an unfinished last record
    corrupt: int = 0  # records that failed their check before the end (or decoded to the wrong shape)

    @property
    def skipped(self) -> int:
        return self.torn + self.corrupt


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    raise TypeError(f"a journal row holds JSON values and datetimes, not {type(value).__name__} ({value!r})")


_ENCODER = json.JSONEncoder(ensure_ascii=True, check_circular=False, separators=(",", ":"), default=_default)


def encode(table: str, row: dict[str, Any]) -> bytes:
    """One framed record; TypeError for a value that is neither JSON nor a datetime."""
    payload = _ENCODER.encode({"t": table, "r": row}).encode("ascii")
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$dt" in obj:
        value = datetime.fromisoformat(obj["$dt"])
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return obj


def decode_payload(payload: bytes) -> Record | None:
    """The record a payload holds, or None when it is not `{"t": str, "r": dict}`."""
    try:
        obj = json.loads(payload, object_hook=_hook)
    except (ValueError, TypeError):  # not JSON, not UTF-8, or a "$dt" that is no ISO 8601 string
        return None
    if not isinstance(obj, dict) or len(obj) != 2:
        return None
    table, row = obj.get("t"), obj.get("r")
    if not isinstance(table, str) or not isinstance(row, dict):
        return None
    return Record(table, row)


def read_records(data: bytes) -> SegmentRead:
    """Every record in a segment's bytes, up to the first frame that fails its check (see the module doc)."""
    records: list[Record] = []
    corrupt = 0
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < HEADER.size:
            return SegmentRead(records, torn=1, corrupt=corrupt)
        length, crc = HEADER.unpack_from(view, pos)
        stop = pos + HEADER.size + length
        if stop > end:
            return SegmentRead(records, torn=1, corrupt=corrupt)
        payload = view[pos + HEADER.size : stop]
        if length == 0 or zlib.crc32(payload) != crc:
            # a zero-filled or checksum-failing frame that ends the file is an append cut off by a crash
            at_end = stop == end or not any(view[pos:])
            return SegmentRead(records, torn=int(at_end), corrupt=corrupt + int(not at_end))
        record = decode_payload(bytes(payload))
        if record is None:
            corrupt += 1
        else:
            records.append(record)
        pos = stop
    return SegmentRead(records, torn=0, corrupt=corrupt)
