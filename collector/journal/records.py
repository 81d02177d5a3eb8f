"""The journal's on-disk record: one row of one table, framed with its length and checksum. Pure functions.

Frame: `4-byte little-endian payload length | 4-byte little-endian crc32 of the payload | payload`.
Payload: the JSON object `{"t": table, "r": row}` written with `ensure_ascii` (every string, a lone surrogate
included, is stored as escapes and reads back exactly) and datetimes as `{"$dt": iso8601}` (read back as
timezone-aware datetimes; a naive one is taken as UTC). Reading parses with orjson (the committer's hot path:
about three times the standard library's speed) and falls back to the standard library for what orjson
refuses (lone surrogates, NaN) or would read differently (an integer of 19 digits or more, which orjson turns into
a float past 64 bits), so both read back the same values.

Reading a segment stops at the first frame that fails its check: a short header, a short payload or a bad
checksum in the last frame is a torn tail (an append cut off by a crash); a bad checksum before the end is
corruption (the frame's length can no longer be trusted, so nothing after it is read). A frame whose checksum
holds but whose payload is not `{"t": str, "r": dict}` is corrupt too, and skipped.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
# a JSON integer of 19+ digits (may not fit 64 bits: orjson would read it as a float); a match inside a string
# only sends that record to the standard library's parser, which reads everything exactly
LONG_INT = re.compile(rb"[:,\[]-?[0-9]{19,}[,}\]]")


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
        return _datetime(obj["$dt"])
    return obj


def _datetime(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"$dt holds {type(text).__name__}, not an ISO 8601 string")
    value = datetime.fromisoformat(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _revive(value: Any) -> Any:
    """What the standard library's object hook does, applied after orjson parsed: `{"$dt": ...}` to datetimes."""
    if type(value) is dict:
        if len(value) == 1 and "$dt" in value:
            return _datetime(value["$dt"])
        for key, item in value.items():
            if type(item) is dict or type(item) is list:
                value[key] = _revive(item)
    elif type(value) is list:
        for index, item in enumerate(value):
            if type(item) is dict or type(item) is list:
                value[index] = _revive(item)
    return value


def _parse(payload: bytes) -> Any:
    if not LONG_INT.search(payload):
        try:
            return _revive(orjson.loads(payload))
        except orjson.JSONDecodeError:  # what orjson refuses but the writer may have written: a lone surrogate
            pass
    return json.loads(payload, object_hook=_hook)


def decode_payload(payload: bytes) -> Record | None:
    """The record a payload holds, or None when it is not `{"t": str, "r": dict}`."""
    try:
        obj = _parse(payload)
    except (ValueError, TypeError):  # not JSON, not UTF-8, or a "$dt" that is no ISO 8601 string
        return None
    if not isinstance(obj, dict) or len(obj) != 2:
        return None
    table, row = obj.get("t"), obj.get("r")
    if not isinstance(table, str) or not isinstance(row, dict):
        return None
    return Record(table, row)


@dataclass(frozen=True)
class Frames:
    """The payloads of a segment's frames whose checksums hold, undecoded, and how many frames did not."""

    payloads: list[bytes]
    torn: int = 0
    corrupt: int = 0


def split_frames(data: bytes) -> Frames:
    """Every payload in a segment's bytes, up to the first frame that fails its check (see the module doc)."""
    payloads: list[bytes] = []
    view = memoryview(data)
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < HEADER.size:
            return Frames(payloads, torn=1)
        length, crc = HEADER.unpack_from(view, pos)
        stop = pos + HEADER.size + length
        if stop > end:
            return Frames(payloads, torn=1)
        payload = view[pos + HEADER.size : stop]
        if length == 0 or zlib.crc32(payload) != crc:
            # a zero-filled or checksum-failing frame that ends the file is an append cut off by a crash
            at_end = stop == end or not any(view[pos:])
            return Frames(payloads, torn=int(at_end), corrupt=int(not at_end))
        payloads.append(bytes(payload))
        pos = stop
    return Frames(payloads)


def read_records(data: bytes) -> SegmentRead:
    """Every record in a segment's bytes, decoded (a payload that does not decode counts as corrupt)."""
    frames = split_frames(data)
    records = [r for r in map(decode_payload, frames.payloads) if r is not None]
    return SegmentRead(records, frames.torn, frames.corrupt + len(frames.payloads) - len(records))


# what `encode` writes before the row when the table's name is a plain identifier (every table of the store)
_PLAIN_PREFIX = re.compile(rb'\{"t":"([A-Za-z_][A-Za-z0-9_]{0,62})","r":\{')


def table_of(payload: bytes) -> str | None:
    """The table of a payload `encode` wrote, read from its first bytes without decoding the row; None when the
    payload does not start the way `encode` starts it for a plain table name (then decode it)."""
    match = _PLAIN_PREFIX.match(payload)
    return match.group(1).decode("ascii") if match and payload.endswith(b"}}") else None


def row_bytes(table: str, payload: bytes) -> bytes:
    """The row's JSON object inside a payload `encode` wrote for `table` (the bytes between `"r":` and the last
    brace), for parsers that read rows by the batch; what they cannot parse, `decode_payload` still reads."""
    return payload[len(_prefix(table)) : -1]


def _prefix(table: str) -> bytes:
    return b'{"t":' + json.dumps(table, ensure_ascii=True).encode("ascii") + b',"r":'
