"""The committer's fast path: a table's journaled rows read by Arrow's JSON reader in one call, exactly as the
row-by-row path reads them, or not at all."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from collector.journal.committer import SegmentBatch
from collector.journal.records import HEADER, decode_payload, encode, row_bytes
from collector.store.api import Store
from collector.store.columns import RowChecker
from collector.store.door import open_store
from collector.store.json_rows import from_json_rows

T0 = datetime(2026, 12, 2, 8, 0, 0, 123456, tzinfo=UTC)


def request(i: int, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": f"r{i}", "pool": "ref", "source": "load", "started_at": T0 + timedelta(milliseconds=i), "status": "ok",
        "ttft_s": 0.05 + i / 1000, "completion_tokens": i, "cost_usd": 1e-6 * i, "finish_reason": None,
    }  # fmt: skip
    row.update(over)
    return row


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> RowChecker:
    with Store(tmp_path_factory.mktemp("s") / "s.duckdb") as store:
        return store.checker("requests")


def fast(checker: RowChecker, rows: list[dict[str, Any]]) -> Any:
    return from_json_rows(checker, [row_bytes("requests", encode("requests", r)[HEADER.size :]) for r in rows])


def slow(checker: RowChecker, rows: list[dict[str, Any]]) -> Any:
    decoded = [decode_payload(encode("requests", r)[HEADER.size :]) for r in rows]
    return checker.to_arrow([d.row for d in decoded if d is not None])


def test_a_clean_batch_reads_exactly_as_row_by_row(checker: RowChecker) -> None:
    rnd = random.Random(7)
    cet = timezone(timedelta(hours=1))
    rows = [
        request(i, ttft_s=rnd.random() * 10 ** rnd.randint(-6, 3), started_at=T0.astimezone(cet) if i % 3 else T0,
                model="ärith@réf ✓ 模型" if i % 2 else None, prompt_tokens=2**31 - 1 - i)
        for i in range(500)
    ]  # fmt: skip
    got = fast(checker, rows)
    assert got is not None and got.equals(slow(checker, rows))
    assert got.column("started_at")[1].as_py() == T0  # 09:00:00.123456+01:00 is 08:00:00.123456 UTC
    assert got.column("model")[1].as_py() == "ärith@réf ✓ 模型"


@pytest.mark.parametrize(
    "bad",
    [
        {"finish_reason": "stop\udc80"},  # a lone surrogate: Arrow's parser refuses the escape
        {"ttft_s": "fast"},  # a string where a number goes
        {"colour": "red"},  # a column the table does not have
        {"prompt_tokens": 10**20},  # 21 digits: Arrow would read a float
        {"prompt_tokens": 2**31},  # over INT32
        {"ttft_s": 10**19},  # 20 digits in a DOUBLE column: the row-by-row path decides
        {"pool": None},  # a required column left empty
        {"error": "x" * ((1 << 20) + 1)},  # over the size limit
        {"started_at": datetime(2026, 12, 2, 8, 0)},  # naive: the row-by-row path takes it as UTC
    ],
)
def test_anything_short_of_an_exact_reading_falls_back(checker: RowChecker, bad: dict[str, Any]) -> None:
    assert fast(checker, [request(1), request(2, **bad)]) is None


def test_crafted_rows_that_are_not_one_object_each_fall_back(checker: RowChecker) -> None:
    assert from_json_rows(checker, [b'{"id":"a"}\n{"id":"b"}']) is None  # a newline inside a row
    assert from_json_rows(checker, [b'{"id":"a","pool":"p","source":"s","status":"ok"},"z":{}']) is None
    assert from_json_rows(checker, [b'{"started_at":{}}']) is None
    assert from_json_rows(checker, []) is None


def test_a_record_that_does_not_decode_is_quarantined_as_journaled(tmp_path: Path) -> None:
    good = encode("requests", request(1))[HEADER.size :]
    broken = b'{"t":"requests","r":{"id":"r2","pool":}}'  # checksum held (written so), JSON did not
    batch = SegmentBatch("seg-0000000001.log", {"requests": [good, broken]}, torn=0)
    with open_store(str(tmp_path / "s.duckdb")) as store:
        store.commit("gw", [batch])
        assert store.query("SELECT id FROM requests").column("id").to_pylist() == ["r1"]
        got = store.query("SELECT reason, row_json FROM quarantine").to_pylist()
        marker = store.query("SELECT rows, quarantined FROM journal_segments").to_pylist()
    assert got == [{"reason": "the journal record does not decode as a row", "row_json": broken.decode()}]
    assert marker == [{"rows": 1, "quarantined": 1}]
