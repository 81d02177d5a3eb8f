"""Dashboard first render: the Fleet page on a 10M-row store against the same page on a 10k-row store.

Each store is built with DuckDB SQL straight into a fresh file (the store's own schema from its migrations,
then `INSERT ... SELECT` over range(n)): four pools, requests spread evenly over the 7 days before now in
time order (as the collector appends them), 1% errors. For each store and for two windows, the default
(the last hour: 1/168 of the rows) and the whole store, it times in this process, the app's data cache
emptied before each run:
- page: the Fleet page's first render through Streamlit's AppTest (the whole script: settings, the sidebar,
  the store opened read-only, both windows' queries, the metrics and the table);
- queries: the query layer that page calls (dashboards.queries.fleet_windows), on its own.
The median of `--rounds` runs. Target (issue 8): the page's first render on 10M rows <= 2 s.

    .venv/bin/python bench/dashboard_render.py [--rows 10000000] [--small 10000] [--rounds 3] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from collector.store.api import Store
from collector.store.door import open_reader
from dashboards.launch import COLLECTOR_STATE_VAR, STORE_VAR

POOLS = ("ref", "bf16", "boost", "noisy")
SPAN_S = 7 * 86400

_ROWS_SQL = """
INSERT INTO requests (id, pool, revision, hardware, model, source, started_at, ttft_s, tpot_s, e2e_s,
    prompt_tokens, cached_tokens, completion_tokens, status, cost_usd)
SELECT 'r' || i, pool, pool || '-r1', 'cpu', 'arith@' || pool, 'load',
    $end::TIMESTAMPTZ - to_microseconds(CAST(($n - i) * $span_us / $n AS BIGINT)),
    0.05 + random() * 0.2, 0.002 + random() * 0.004, 0.2 + random(), 300, 256, 32,
    CASE WHEN i % 100 = 0 THEN 'error' ELSE 'ok' END, 1e-6
FROM (SELECT i, (?::VARCHAR[])[i % 4 + 1] AS pool FROM range($n) t(i))
"""


def build(path: Path, rows: int, end: datetime) -> None:
    Store(path).close()  # the schema
    with duckdb.connect(str(path)) as con:
        con.execute("SET preserve_insertion_order = true")
        sql = _ROWS_SQL.replace("$end", "?").replace("$n", str(rows)).replace("$span_us", str(SPAN_S * 10**6))
        con.execute(sql, [end, list(POOLS)])
        con.executemany(
            "INSERT INTO pools VALUES (?, ?, 'cpu', 'cpu', ?, 'float32', 1, 0.0893, '{}', ?)",
            [[p, f"{p}-r1", f"arith@{p}", end] for p in POOLS],
        )
        con.execute("CHECKPOINT")


def median_s(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def page(store: Path, window: str) -> Callable[[], object]:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboards.launch import APP

    def render() -> object:
        os.environ[STORE_VAR] = str(store)
        st.cache_data.clear()
        at = AppTest.from_file(APP, default_timeout=600)
        at.session_state["window"] = window
        at.run()
        assert not at.exception and len(at.metric) == 8 * len(POOLS), [e.value for e in at.exception]
        return at

    return render


def queries(store: Path, seconds: float | None, now: datetime) -> Callable[[], object]:
    from dashboards.queries import fleet_windows

    def run() -> object:
        with open_reader(store) as reader:  # as the app opens it: read-only, the file opened for each query
            return fleet_windows(reader, seconds, now)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the stores are built (default a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        os.environ[COLLECTOR_STATE_VAR] = str(Path(tmp) / "collector.json")  # none recorded
        end = datetime.now(UTC)
        stores = {}
        for rows in (args.small, args.rows):
            stores[rows] = Path(tmp) / f"requests-{rows}.duckdb"
            start = time.perf_counter()
            build(stores[rows], rows, end)
            size = stores[rows].stat().st_size / 2**20
            print(f"built {rows:,} rows in {time.perf_counter() - start:.1f}s ({size:.0f} MiB)", flush=True)
        median_s(page(stores[args.small], "last hour"), 1)  # imports Streamlit, pandas, altair, the app: once
        print(f"\n{'window':<24} {'what':<8} {args.small:>12,} {args.rows:>12,}  ratio")
        for window, seconds in (("last hour", 3600.0), ("everything in the store", None)):
            for what in ("page", "queries"):
                runs = [page(stores[n], window) if what == "page" else queries(stores[n], seconds, end) for n in stores]
                times = [median_s(run, args.rounds) for run in runs]
                print(f"{window:<24} {what:<8} {times[0]:>11.3f}s {times[1]:>11.3f}s  {times[1] / times[0]:.1f}x",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
