"""Ingest: request rows per second through the store vs a raw DuckDB Arrow insert of the same rows.

Both run in this process, one after the other, alternating for a few rounds, each into a fresh file:
- raw: the rows as one Arrow table, `INSERT INTO requests SELECT * FROM batch` (the ceiling), timed without
  and with the conversion of the rows (Python dicts) to Arrow;
- store, row by row: `Store.append("requests", [row])` per row (what the gateway does), then close();
- store, batches of 100: `Store.append` with 100 rows per call (what remote writers do), then close().
The store is timed from the first append to the end of its closing flush, so every row is on disk.
Target (issue 3): the gateway's pattern reaches >= 25% of raw (the "of raw" column is against the insert
alone, the stricter reading).

    .venv/bin/python bench/ingest.py [--rows 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from collector.store.embedded import Store
from collector.store.rows import RequestRecord


def request_rows(count: int) -> list[dict[str, Any]]:
    t0 = datetime(2026, 11, 22, tzinfo=UTC)
    return [
        RequestRecord(
            id=f"req-{i}", pool=("ref", "bf16", "boost", "noisy")[i % 4], source="load",
            started_at=t0 + timedelta(milliseconds=i), status="ok", operation="text_completion",
            trace_id=f"{i:032x}", run_id="bench", revision="r1", hardware="cpu", model="arith@ref",
            ttft_s=0.05 + i % 97 / 1000, tpot_s=0.002, itl_p50_s=0.002, itl_max_s=0.01, e2e_s=0.1,
            prompt_tokens=300, cached_tokens=256, completion_tokens=32, finish_reason="length",
            cost_usd=1e-6,
        ).as_row()
        for i in range(count)
    ]  # fmt: skip


def raw_insert(path: Path, rows: list[dict[str, Any]], convert: bool) -> float:
    """One Arrow insert; with `convert`, the rows' conversion to Arrow is timed too."""
    with Store(path) as store:  # the schema, created outside the timing
        schema = store.schema("requests")
    con = duckdb.connect(str(path))
    try:
        ready = None if convert else pa.Table.from_pylist(rows, schema=schema)
        started = time.perf_counter()
        batch = ready if ready is not None else pa.Table.from_pylist(rows, schema=schema)
        con.register("batch", batch)
        con.execute("INSERT INTO requests SELECT * FROM batch")
        con.close()
        return time.perf_counter() - started
    finally:
        con.close()


def through_store(path: Path, rows: list[dict[str, Any]], per_call: int) -> float:
    store = Store(path)
    started = time.perf_counter()
    for i in range(0, len(rows), per_call):
        store.append("requests", rows[i : i + per_call])
    store.close()
    return time.perf_counter() - started


def count(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM requests").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = request_rows(args.rows)
    methods = ("raw: Arrow insert only", "raw: to Arrow + insert", "store: 1 row per append", "store: 100 per append")
    times: dict[str, list[float]] = {name: [] for name in methods}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for m, name in enumerate(times):
                path = Path(tmp) / f"round{r}-method{m}.duckdb"
                if name.startswith("raw"):
                    seconds = raw_insert(path, rows, convert="to Arrow" in name)
                else:
                    seconds = through_store(path, rows, 1 if "1 row" in name else 100)
                assert count(path) == args.rows, f"{name}: rows missing"
                times[name].append(seconds)
    raw = statistics.median(times[methods[0]])
    print(f"{args.rows} request rows, median of {args.rounds} rounds (alternating), every row checked on disk")
    print(f"{'method':<30} {'seconds':>9} {'rows/s':>12} {'of raw':>8}")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:<30} {seconds:>9.3f} {args.rows / seconds:>12,.0f} {raw / seconds:>8.1%}")


if __name__ == "__main__":
    main()
