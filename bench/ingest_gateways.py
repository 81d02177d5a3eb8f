"""Ingest with several gateways: request rows per second when 1, 2 and 4 gateway processes write the same DuckLake
store on PostgreSQL, against the embedded backend (one process) and a raw DuckDB Arrow insert of the same rows.

Each gateway is its own OS process (multiprocessing, spawn) doing what the collector does: `Ingest.append(
"requests", [row])` per row (checked and journaled, fsync none; each process its own journal directory and
writer id, distinct request ids: bench/ingest.py `request_rows` with an offset), its committer thread running
every 0.2 s. Every process prepares (imports, rows built, store attached, committer started) and then waits at
one barrier with this process; the clock starts when the barrier opens and stops when the last process's
committer has committed its last row (its `committed_rows` reached its count, read every 5 ms; CLOCK_MONOTONIC,
which all processes share). The store must then count every row of every process, each id once.
`--rows` is per process: 4 gateways write 4x the rows of 1 (each gateway takes its share of the traffic).
- raw: `INSERT INTO requests SELECT * FROM batch` of the rows as one Arrow table into a DuckDB file, in a fresh
  process (the ceiling; the rows' conversion to Arrow is not timed, as in bench/ingest.py);
- embedded: one gateway process on a DuckDB file;
- ducklake-postgres xN: N gateway processes on one DuckLake, catalog in a throwaway PostgreSQL
  (collector/store/postgres.py, fsync off), one database and data directory per configuration and round.
Each configuration runs `--rounds` times (alternating), into a fresh store each time; the median is reported.

Commit conflicts: the store retries a transient error (a DuckLake commit conflict) up to 8 times
(collector/store/api.py `Store._with_retry`) and counts nothing; this bench counts, in each gateway, the store
uses that ended in such an error (a wrapper around the store's backend) and the committer's failed cycles (a
StoreBusy after the retries). Retries inside DuckLake itself (its own commit retry loop) are not visible here.

Target (issue 16): 4 gateways >= 3x one gateway. The processes share this machine's CPUs: the script prints how
many it ran on (os.cpu_count(), os.sched_getaffinity) and the load average, next to the result.

    .venv/bin/python -m bench.ingest_gateways [--rows 100000] [--rounds 3]

(a module, so that `bench.ingest` imports; the spawned processes import it the same way)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import duckdb
from tqdm import tqdm

from bench.ingest import count, raw_insert, request_rows
from collector.ingest import Ingest, IngestConfig
from collector.journal.committer import SegmentBatch
from collector.store.api import Store, _transient
from collector.store.door import open_reader
from collector.store.postgres import PostgresServer, TempPostgres

COMMIT_INTERVAL_S = 0.2
GATEWAYS = (1, 2, 4)
PREPARE_TIMEOUT_S = 300  # imports, rows built, store attached: before the barrier
RUN_TIMEOUT_S = 1800  # from the barrier until every row is committed
POLL_S = 0.005


@dataclass(frozen=True)
class Config:
    name: str  # raw | embedded | ducklake-postgres
    processes: int

    @property
    def label(self) -> str:
        return f"{self.name} x{self.processes}" if self.name == "ducklake-postgres" else self.name


@dataclass(frozen=True)
class Outcome:
    """What one process reports."""

    finished_at: float  # time.monotonic() when its last row was committed (raw: the insert's own seconds)
    appended_at: float = 0.0  # time.monotonic() when its last row was journaled
    commits: int = 0  # store transactions of journal segments
    conflicts: int = 0  # store uses that ended in a transient error, retried by Store._with_retry
    failed_cycles: int = 0  # committer cycles that failed (StoreBusy after the retries, or another error)


@dataclass(frozen=True)
class Run:
    seconds: float
    append_seconds: float  # from the barrier until the last process journaled its last row
    rows: int
    commits: int
    conflicts: int
    failed_cycles: int


class CountingBackend:
    """The store's backend, counting the uses that end in a transient error (those Store._with_retry retries)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.conflicts = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            with self.inner.connection() as con:
                yield con
        except duckdb.Error as exc:
            if _transient(exc):
                with self._lock:
                    self.conflicts += 1
            raise

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()


class CountingStore(Store):
    """A writer that counts its commits and the transient errors it retried (nothing changes in what it does)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.counting = CountingBackend(self._backend)
        self._backend = self.counting  # type: ignore[assignment]
        self.commits = 0

    def commit(self, writer_id: str, batches: list[SegmentBatch]) -> None:
        super().commit(writer_id, batches)
        self.commits += 1


def gateway(url: str, journal: str, rows: int, offset: int, barrier: Barrier, results: Any) -> None:
    """One gateway process: prepare, wait at the barrier, append every row, wait until all are committed."""
    try:
        data = request_rows(rows, offset)
        store = CountingStore(url)
        ingest = Ingest(store, IngestConfig(journal, commit_interval_s=COMMIT_INTERVAL_S), f"gw{offset}")

        async def run() -> tuple[float, float]:
            await ingest.start()
            barrier.wait(PREPARE_TIMEOUT_S)
            for row in data:
                ingest.append("requests", [row])
            appended = time.monotonic()
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while ingest.committer.state.committed_rows < rows:
                if time.monotonic() > deadline:
                    state = ingest.committer.state
                    raise TimeoutError(f"{url}: {state.committed_rows} of {rows} rows committed from {journal} "
                                       f"after {RUN_TIMEOUT_S} s; last store error: {state.last_error}")  # fmt: skip
                await asyncio.sleep(POLL_S)
            finished = time.monotonic()
            await ingest.close()
            return appended, finished

        try:
            appended, finished = asyncio.run(run())
            state = ingest.committer.state
            results.put(Outcome(finished, appended, store.commits, store.counting.conflicts, state.failures))
        finally:
            store.close()
    except BaseException:
        results.put(f"gateway {offset} ({url}, journal {journal}):\n{traceback.format_exc()}")
        barrier.abort()  # the others and this bench's process stop waiting


def raw(path: str, rows: int, results: Any) -> None:
    """The ceiling, in a fresh process: one Arrow insert of the rows into a DuckDB file."""
    try:
        results.put(Outcome(raw_insert(Path(path), request_rows(rows), convert=False)))
    except BaseException:
        results.put(f"raw insert into {path}:\n{traceback.format_exc()}")


def store_url(config: Config, where: Path, postgres: PostgresServer) -> str:
    """A fresh store for one configuration and round, its schema created."""
    if config.name == "embedded":
        url = str(where / "store.duckdb")
    else:
        database = where.name.replace("-", "_").lower()
        postgres.create_database(database)
        url = f"ducklake:postgres://{postgres.user}@{postgres.host}:{postgres.port}/{database}?data={where}/lake"
    Store(url).close()
    return url


def collect(results: Any, processes: list[Any], expected: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    while len(outcomes) < expected:
        try:
            got = results.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in processes):
                raise RuntimeError(f"{expected - len(outcomes)} processes ended without a result") from None
            continue
        if isinstance(got, str):
            raise RuntimeError(got)
        outcomes.append(got)
    return outcomes


def run_once(config: Config, rows: int, where: Path, postgres: PostgresServer) -> Run:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    if config.name == "raw":
        path = where / "raw.duckdb"
        process = ctx.Process(target=raw, args=(str(path), rows, results))
        process.start()
        (outcome,) = collect(results, [process], 1)
        process.join()
        assert count(path) == rows, f"{path}: rows missing"
        return Run(outcome.finished_at, 0.0, rows, 1, 0, 0)
    url = store_url(config, where, postgres)
    barrier = ctx.Barrier(config.processes + 1)
    processes = [
        ctx.Process(target=gateway, args=(url, str(where / f"journal-{k}"), rows, k * rows, barrier, results))
        for k in range(config.processes)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(PREPARE_TIMEOUT_S)
    except Exception:
        collect(results, processes, config.processes)  # raises with the process's traceback
        raise
    started = time.monotonic()
    outcomes = collect(results, processes, config.processes)
    for process in processes:
        process.join()
    total = rows * config.processes
    with open_reader(url) as reader:
        counted = reader.query("SELECT count(*) AS n, count(DISTINCT id) AS ids FROM requests").to_pylist()[0]
    assert counted == {"n": total, "ids": total}, f"{url}: {counted}, expected {total} rows with distinct ids"
    return Run(
        max(o.finished_at for o in outcomes) - started, max(o.appended_at for o in outcomes) - started, total,
        sum(o.commits for o in outcomes),
        sum(o.conflicts for o in outcomes), sum(o.failed_cycles for o in outcomes),
    )  # fmt: skip


def cpus() -> str:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"os.cpu_count() {os.cpu_count()}, usable by this process (sched_getaffinity) {usable}; load average {load}"


def table_rows(runs: dict[Config, list[Run]]) -> list[dict[str, str]]:
    rate = {c: statistics.median(r.rows / r.seconds for r in rs) for c, rs in runs.items()}
    one, ceiling = rate[Config("ducklake-postgres", 1)], rate[Config("raw", 1)]
    rows = []
    for config, rs in runs.items():
        appends = statistics.median(r.append_seconds for r in rs)
        rows.append({
            "config": config.label, "processes": str(config.processes), "rows": f"{rs[0].rows:,}",
            "seconds": f"{statistics.median(r.seconds for r in rs):.3f}", "rows/s": f"{rate[config]:,.0f}",
            "x one gateway": f"{rate[config] / one:.2f}", "% of raw": f"{rate[config] / ceiling:.1%}",
            "appends s": f"{appends:.3f}" if appends else "-",
            "commits/run": f"{statistics.mean(r.commits for r in rs):.1f}",
            "conflicts/run": f"{statistics.mean(r.conflicts for r in rs):.1f}",
            "failed cycles": str(sum(r.failed_cycles for r in rs)),
        })  # fmt: skip
    return rows


def print_table(rows: list[dict[str, str]]) -> None:
    widths = {key: max(len(key), *(len(r[key]) for r in rows)) for key in rows[0]}
    print(" ".join(key.ljust(w) if key == "config" else key.rjust(w) for key, w in widths.items()))
    for row in rows:
        print(" ".join(row[k].ljust(w) if k == "config" else row[k].rjust(w) for k, w in widths.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows per process")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configs = [Config("raw", 1), Config("embedded", 1), *(Config("ducklake-postgres", n) for n in GATEWAYS)]
    runs: dict[Config, list[Run]] = {c: [] for c in configs}
    print(f"start: {cpus()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, TempPostgres(fsync=False) as postgres:
        steps = tqdm(total=args.rounds * len(configs), desc="runs", unit="run")
        for r in range(args.rounds):
            for m, config in enumerate(configs):
                steps.set_postfix_str(f"round {r + 1}: {config.label}")
                where = Path(tmp) / f"r{r}m{m}"
                where.mkdir()
                runs[config].append(run_once(config, args.rows, where, postgres))
                steps.update()
        steps.close()
    print(f"\n{args.rows:,} request rows per process, every row counted in the store (each id once)")
    rows = table_rows(runs)
    print_table(rows)
    four = float(next(r for r in rows if r["config"] == Config("ducklake-postgres", 4).label)["x one gateway"])
    print(
        f"\nrows/s, seconds, appends s (until the last row was journaled): median of {args.rounds} rounds; "
        "commits and conflicts retried: mean per run; failed committer cycles: all rounds."
    )
    print(f"4 gateways = {four:.2f}x one gateway (target >= 3x): {'met' if four >= 3 else 'not met'}, on {cpus()}")


if __name__ == "__main__":
    main()
