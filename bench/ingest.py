"""Ingest: request rows per second along the gateway's path (journal append per row, then the committer's
batched commits) into each store backend, against a raw DuckDB Arrow insert of the same rows.

All run in this process, one after the other, alternating for a few rounds, each into a fresh store:
- raw: the rows as one Arrow table, `INSERT INTO requests SELECT * FROM batch` into a DuckDB file (the ceiling);
- embedded / ducklake-sqlite / ducklake-postgres: `Ingest.append("requests", [row])` per row (what the
  gateway does: checked, journaled with fsync none), then the committer commits everything; timed from the
  first append until every row is committed (and counted in the store).
Target (issue 16): embedded >= 25 % of raw. PostgreSQL is a throwaway one (collector/store/postgres.py).

    .venv/bin/python bench/ingest.py [--rows 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from collector.ingest import Ingest, IngestConfig
from collector.store.api import Store
from collector.store.postgres import PostgresServer, TempPostgres
from collector.store.rows import RequestRecord


def request_rows(count: int, offset: int = 0) -> list[dict[str, Any]]:
    """`count` request rows numbered from `offset` (ids req-<n>, one millisecond apart): give each writer its own
    offset so that their ids never collide."""
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
        for i in range(offset, offset + count)
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


def through_ingest(url: str, journal: Path, rows: list[dict[str, Any]]) -> float:
    store = Store(url)  # the schema, created outside the timing
    ingest = Ingest(store, IngestConfig(str(journal), commit_interval_s=3600), "bench")

    async def run() -> float:
        await ingest.start()
        started = time.perf_counter()
        for row in rows:
            ingest.append("requests", [row])
        ingest.committer.flush(600)
        seconds = time.perf_counter() - started
        await ingest.close()
        return seconds

    try:
        seconds = asyncio.run(run())
        (n,) = store.query("SELECT count(*) AS n FROM requests").column("n").to_pylist()
        assert n == len(rows), f"{url}: {n} of {len(rows)} rows"
        return seconds
    finally:
        store.close()


def count(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM requests").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def urls(tmp: Path, name: str, postgres: PostgresServer) -> str:
    if name == "embedded":
        return str(tmp / "s.duckdb")
    if name == "ducklake-sqlite":
        return f"ducklake:sqlite:{tmp}/cat.sqlite?data={tmp}/lake"
    database = tmp.name.replace("-", "_").lower()
    postgres.create_database(database)
    return f"ducklake:postgres://{postgres.user}@{postgres.host}:{postgres.port}/{database}?data={tmp}/lake"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = request_rows(args.rows)
    methods = ("raw: Arrow insert (embedded)", "embedded", "ducklake-sqlite", "ducklake-postgres")
    times: dict[str, list[float]] = {name: [] for name in methods}
    with tempfile.TemporaryDirectory() as tmp, TempPostgres(fsync=False) as postgres:
        for r in range(args.rounds):
            for m, name in enumerate(times):
                where = Path(tmp) / f"r{r}m{m}"
                where.mkdir()
                if name.startswith("raw"):
                    path = where / "raw.duckdb"
                    seconds = raw_insert(path, rows, convert=False)
                    assert count(path) == args.rows, f"{name}: rows missing"
                else:
                    seconds = through_ingest(urls(where, name, postgres), where / "journal", rows)
                times[name].append(seconds)
    raw = statistics.median(times[methods[0]])
    print(f"{args.rows} request rows, median of {args.rounds} rounds (alternating), every row counted in the store")
    print(f"{'path':<30} {'seconds':>9} {'rows/s':>12} {'of raw':>8}")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:<30} {seconds:>9.3f} {args.rows / seconds:>12,.0f} {raw / seconds:>8.1%}")


if __name__ == "__main__":
    main()
