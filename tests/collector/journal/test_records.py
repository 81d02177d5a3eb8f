"""The journal's record frame: round trip, torn tails, corruption."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from collector.journal.records import HEADER, Record, SegmentRead, decode_payload, encode, read_records

ROW = {
    "id": "r1",
    "started_at": datetime(2026, 12, 1, 8, 30, 5, 123456, tzinfo=UTC),
    "ttft_s": 0.25,
    "prompt_tokens": 12,
    "error": None,
    "finish_reason": "stop\udc80",  # a lone surrogate, as a pool once sent
    "model": "ärith@réf ✓ 模型",
    "extra": {"nested": {"list": [1, 2.5, "x", None, True]}, "when": datetime(2026, 1, 2, tzinfo=UTC)},
}


def _frame(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def test_round_trip_keeps_every_value_exactly() -> None:
    data = encode("requests", ROW) + encode("drift", {"n": 1})
    read = read_records(data)
    assert read == SegmentRead([Record("requests", ROW), Record("drift", {"n": 1})], torn=0, corrupt=0)
    assert read.records[0].row["finish_reason"] == "stop\udc80"
    assert read.records[0].row["started_at"].tzinfo is not None


def test_frame_layout() -> None:
    data = encode("t", {"a": 1})
    payload = b'{"t":"t","r":{"a":1}}'
    assert data == struct.pack("<I", len(payload)) + struct.pack("<I", zlib.crc32(payload)) + payload


def test_payload_is_ascii_with_escapes_and_tagged_datetimes() -> None:
    data = encode("t", {"s": "é\udc80", "at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})
    assert data[HEADER.size :] == b'{"t":"t","r":{"s":"\\u00e9\\udc80","at":{"$dt":"2026-01-02T03:04:05+00:00"}}}'


def test_datetimes_read_back_timezone_aware() -> None:
    cet = timezone(timedelta(hours=1))
    row = {"local": datetime(2026, 1, 2, 3, 4, tzinfo=cet), "naive": datetime(2026, 1, 2, 3, 4)}
    back = read_records(encode("t", row)).records[0].row
    assert back["local"] == datetime(2026, 1, 2, 2, 4, tzinfo=UTC)
    assert back["local"].utcoffset() == timedelta(hours=1)
    assert back["naive"] == datetime(2026, 1, 2, 3, 4, tzinfo=UTC)  # naive is taken as UTC


def test_a_value_that_is_not_json_is_refused_before_writing() -> None:
    with pytest.raises(TypeError, match="not bytes"):
        encode("t", {"b": b"raw"})


def test_torn_tail_at_every_byte_of_the_last_record() -> None:
    first = encode("requests", {"id": "a"}) + encode("requests", {"id": "b"})
    last = encode("requests", ROW)
    for cut in range(1, len(last)):
        read = read_records(first + last[:cut])
        assert [r.row["id"] for r in read.records] == ["a", "b"], cut
        assert (read.torn, read.corrupt) == (1, 0), cut
    assert read_records(first + last) == SegmentRead(
        [Record("requests", {"id": i}) for i in "ab"] + [Record("requests", ROW)]
    )


def test_a_bad_checksum_in_the_last_record_is_a_torn_tail() -> None:
    data = bytearray(encode("t", {"id": "a"}) + encode("t", {"id": "b"}))
    data[-2] ^= 0xFF
    read = read_records(bytes(data))
    assert (len(read.records), read.torn, read.corrupt) == (1, 1, 0)


def test_a_zero_filled_tail_is_torn() -> None:
    read = read_records(encode("t", {"id": "a"}) + bytes(4096))
    assert (len(read.records), read.torn, read.corrupt) == (1, 1, 0)


def test_corrupt_middle_record_stops_the_segment() -> None:
    records = [encode("t", {"id": i}) for i in "abcd"]
    damaged = bytearray(records[1])
    damaged[HEADER.size + 3] ^= 0x01
    read = read_records(records[0] + bytes(damaged) + records[2] + records[3])
    assert [r.row for r in read.records] == [{"id": "a"}]
    assert (read.torn, read.corrupt, read.skipped) == (0, 1, 1)


def test_a_zero_length_frame_before_data_is_corrupt() -> None:
    read = read_records(encode("t", {"id": "a"}) + bytes(HEADER.size) + encode("t", {"id": "b"}))
    assert (len(read.records), read.torn, read.corrupt) == (1, 0, 1)


@pytest.mark.parametrize(
    "payload",
    [b"[1, 2]", b'{"t": 1, "r": {}}', b'{"t": "x", "r": [1]}', b'{"t": "x"}', b'{"t": "x", "r": {}, "z": 0}',
     b"not json", b"\xff\xfe", b'{"t": "x", "r": {"at": {"$dt": 5}}}', b'{"t": "x", "r": {"at": {"$dt": "May"}}}'],
)  # fmt: skip
def test_a_well_framed_record_of_the_wrong_shape_is_corrupt_and_skipped(payload: bytes) -> None:
    assert decode_payload(payload) is None
    read = read_records(encode("t", {"id": "a"}) + _frame(payload) + encode("t", {"id": "b"}))
    assert [r.row["id"] for r in read.records] == ["a", "b"]
    assert (read.torn, read.corrupt) == (0, 1)


def test_empty_segment() -> None:
    assert read_records(b"") == SegmentRead([], 0, 0)


def test_decode_payload_accepts_what_encode_writes() -> None:
    payload = json.dumps({"t": "x", "r": {"a": [1, {"b": None}]}}).encode()
    assert decode_payload(payload) == Record("x", {"a": [1, {"b": None}]})


@pytest.mark.parametrize(
    "row",
    [
        {k: v for k, v in ROW.items() if k != "finish_reason"},  # what orjson parses (the fast path)
        {"nan": float("nan"), "inf": float("-inf")},  # what only the standard library parses
        {"big": 2**70, "at": datetime(2026, 1, 2, tzinfo=UTC)},
    ],
)
def test_both_parsers_read_back_what_the_standard_library_would(row: dict[str, object]) -> None:
    payload = encode("t", row)[HEADER.size :]
    expected = json.loads(payload, object_hook=lambda o: datetime.fromisoformat(o["$dt"]) if "$dt" in o else o)
    got = decode_payload(payload)
    assert got is not None and got.table == "t"
    assert json.dumps(got.row, default=str) == json.dumps(expected["r"], default=str)
