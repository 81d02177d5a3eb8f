"""Reader latency: the gate's and the dashboard's first-page queries on a store of 10M request rows, DuckLake
(catalog in PostgreSQL, Parquet data in a local directory) against the embedded backend (one DuckDB file).

Both stores get the same rows, by SQL straight into the store, not through the journal (the store's migrations
first, then `INSERT INTO ... SELECT ... FROM range(..)`, `--chunk` rows at a time, default 1M): four pools, two
sources (traffic 90 %, load 10 %), started_at spread evenly over one day in time order (as the collector appends
them), lognormal TTFT per pool, TPOT, e2e, token counts and cost derived from a hash of the row number (so both
stores hold identical values), 1 % errors, 0.4 % cancelled; beside them the `pools` snapshot, the prefix-cache
counters scraped every 15 s over the day, an eval run of 1,000 items on `ref` and `bf16`, a canary run of
`bf16` against `ref` (1,000 probe rows, 3 drift rows). The fill is timed and printed. The DuckLake gets one
Parquet file per chunk, as a lake whose small files were merged would: the collector commits about once a second
per gateway, a file per commit, and nothing in inferwatch merges them yet; `--chunk 10000` (1,000 files for 10M
rows) shows what many small files cost the readers.

Then, for each backend in turn, every query runs on a reader opened with `collector.store.door.open_reader(url)`
as `inferwatch gate` and the dashboard open it: the real functions, imported, not their SQL:
- gate (the `inferwatch gate` default window, the last 15 minutes of the day; ref against bf16):
  `gate.data.pool_data` (one pool), `latest_eval_pairs`, `latest_drift`, and `gate.judge.run_gate` (all of them
  for both pools, with the statistics);
- dashboard, the Fleet page (the first page): `dashboards.queries.fleet_windows` for its default window (the last
  hour, and the hour before) and for "everything in the store";
- `open_reader` + close on its own (the dashboard opens a reader for every query it runs, dashboards/data.py).
Cold: the first call on a freshly opened reader (its own DuckDB instance: no buffer, metadata or catalog cache;
the operating system's page cache is warm, the files were just written). Warm: the median of the next `--warm`
calls on the same reader. The embedded backend opens the file for each query and closes it after
(collector/store/backends.py), so it has no warm state of its own beyond the page cache; a DuckLake reader keeps
its connection and caches. No verdict is printed: the ratios are the price of reading through DuckLake.

    .venv/bin/python -m bench.reader_latency [--rows 10000000] [--warm 5] [--chunk 1000000] [--dir /tmp]

(a module: `python bench/reader_latency.py` would import bench/gate.py as the `gate` package)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from tqdm import tqdm

from collector.store.api import Store
from collector.store.door import open_reader
from collector.store.postgres import TempPostgres
from dashboards.queries import fleet_windows
from gate.config import load_gate_config
from gate.data import Span, latest_drift, latest_eval_pairs, pool_data
from gate.judge import run_gate

END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY_US = 86_400 * 10**6
CHUNK = 1_000_000
BASELINE, CANDIDATE = "ref", "bf16"
GATE_SPAN = Span(END - timedelta(minutes=15), END)  # `inferwatch gate --window` defaults to 15 minutes
DASHBOARD_WINDOW_S = 3600.0  # the Fleet page's default window (dashboards/ui.py DEFAULT_WINDOW)

# u(k): a uniform draw in (0, 1] from the row number, the same in every store
_U = "((hash(i, {k}) % 1000003) + 1) / 1000004.0"
_TTFT = f"exp(ln(0.05 * [1.0, 0.9, 0.8, 1.3][i % 4 + 1]) + 0.3 * sqrt(-2 * ln({_U.format(k=1)})) * cos(2 * pi() * "
_TTFT += f"{_U.format(k=2)}))"
_REQUESTS_SQL = f"""
INSERT INTO requests (id, trace_id, pool, revision, hardware, model, source, started_at, ttft_s, tpot_s,
    itl_p50_s, itl_max_s, e2e_s, prompt_tokens, cached_tokens, completion_tokens, finish_reason, status, error,
    cost_usd, run_id, operation, error_type)
SELECT 'r' || i, lpad(to_hex(i), 32, '0'), pool, pool || '-r1', 'cpu', 'arith@' || pool,
    source,
    TIMESTAMPTZ '{END.isoformat()}' - to_microseconds(CAST(({{n}} - i) * {DAY_US} // {{n}} AS BIGINT)),
    CASE WHEN status = 'ok' THEN ttft END, CASE WHEN status = 'ok' THEN tpot END, tpot, 4 * tpot,
    CASE WHEN status = 'ok' THEN ttft + tpot * completion END, prompt, CAST(prompt * (i % 3) / 3 AS INTEGER),
    CASE WHEN status = 'ok' THEN completion END, CASE WHEN status = 'ok' THEN 'length' END, status,
    CASE WHEN status = 'error' THEN 'upstream answered 503' END, 1e-8 * (prompt + completion),
    CASE WHEN source = 'load' THEN 'load-1' END, 'text_completion',
    CASE WHEN status = 'error' THEN 'upstream_5xx' WHEN status = 'cancelled' THEN 'cancelled' END
FROM (
    SELECT i, (['ref', 'bf16', 'boost', 'noisy'])[i % 4 + 1] AS pool,
        CASE WHEN {_U.format(k=6)} <= 0.01 THEN 'error' WHEN {_U.format(k=6)} <= 0.014 THEN 'cancelled' ELSE 'ok' END
            AS status,
        CASE WHEN {_U.format(k=7)} <= 0.1 THEN 'load' ELSE 'traffic' END AS source,
        {_TTFT} AS ttft, 0.002 + 0.004 * {_U.format(k=3)} AS tpot,
        CAST(100 + 900 * {_U.format(k=4)} AS INTEGER) AS prompt,
        CAST(16 + 240 * {_U.format(k=5)} AS INTEGER) AS completion
    FROM range({{lo}}, {{hi}}) t(i)
)
"""
_SMALL_TABLES_SQL = (
    f"""INSERT INTO pools SELECT p, p || '-r1', 'cpu', 'cpu', 'arith@' || p, 'float32', 1, 0.0893,
        '{{"model": "arith@' || p || '"}}', TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 1 DAY
    FROM unnest(['ref', 'bf16', 'boost', 'noisy']) t(p)""",
    f"""INSERT INTO pool_samples SELECT p, TIMESTAMPTZ '{END.isoformat()}' - to_seconds(15 * (5760 - k)), m,
        CASE WHEN m = 'prefix_cache_queries_total' THEN 1000.0 * k ELSE 600.0 * k END
    FROM unnest(['ref', 'bf16', 'boost', 'noisy']) t(p), range(5760) r(k),
        unnest(['prefix_cache_queries_total', 'prefix_cache_hits_total']) v(m)""",
    f"""INSERT INTO eval_items (run_id, pool, suite, item_id, correct, recorded_at, attempts)
    SELECT 'ev1', p, 'arith-v1', 'i' || i, (i * 7919 + length(p)) % 100 <> 0,
        TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 2 MINUTE, 1
    FROM range(1000) t(i), unnest(['ref', 'bf16']) v(p)""",
    f"""INSERT INTO probes (run_id, pool, reference_pool, probe_id, mode, tokens_json, recorded_at)
    SELECT 'cn1', 'bf16', 'ref', 'p' || (i % 64), 'greedy@' || (i % 3), '[]',
        TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 1 MINUTE
    FROM range(1000) t(i)""",
    f"""INSERT INTO drift (run_id, pool, metric, value, band_high, p_value, verdict, evidence_json, recorded_at)
    SELECT 'cn1', 'bf16', m, 0.0, 0.0, 1.0, 'ok', '{{}}', TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 1 MINUTE
    FROM unnest(['greedy_hard_mismatch', 'unexpected_chars', 'tf_mean_kl']) t(m)""",
)

Query = Callable[[Store], object]


def reader_queries() -> dict[str, Query]:
    config = load_gate_config()
    return {
        "gate: pool_data (one pool)": lambda s: pool_data(s, BASELINE, GATE_SPAN, config.max_samples),
        "gate: latest_eval_pairs": lambda s: latest_eval_pairs(s, BASELINE, CANDIDATE, GATE_SPAN, None),
        "gate: latest_drift": lambda s: latest_drift(s, BASELINE, CANDIDATE, GATE_SPAN),
        "gate: run_gate (all of the gate)": lambda s: run_gate(s, BASELINE, CANDIDATE, GATE_SPAN, config),
        "Fleet: fleet_windows (last hour)": lambda s: fleet_windows(s, DASHBOARD_WINDOW_S, END),
        "Fleet: fleet_windows (everything)": lambda s: fleet_windows(s, None, END),
    }


@contextmanager
def writing(url: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the store's tables, its schema migrated (the store's own backend: the DuckLake attached
    as every writer attaches it)."""
    with Store(url) as store, store._backend.connection() as con:
        yield con


def fill(url: str, rows: int, label: str, chunk: int = CHUNK) -> float:
    """The rows, by SQL in inserts of `chunk` rows, then the small tables; returns the seconds it took (schema
    included)."""
    started = time.perf_counter()
    with writing(url) as con:
        con.execute("SET preserve_insertion_order = true")
        for lo in tqdm(range(0, rows, chunk), desc=f"fill {label}", unit="insert", leave=False):
            con.execute(_REQUESTS_SQL.format(n=rows, lo=lo, hi=min(lo + chunk, rows)))
        for sql in _SMALL_TABLES_SQL:
            con.execute(sql)
        if label == "embedded":
            con.execute("CHECKPOINT")
    return time.perf_counter() - started


def on_disk(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return f"{sum(p.stat().st_size for p in files) / 2**20:.0f} MiB in {len(files)} files"


def timed(query: Query, store: Store) -> float:
    started = time.perf_counter()
    query(store)
    return time.perf_counter() - started


def measure_open(url: str, warm: int) -> tuple[float, float]:
    """(first, median of the next `warm`) seconds of open_reader + close."""
    times = []
    for _ in range(warm + 1):
        started = time.perf_counter()
        open_reader(url).close()
        times.append(time.perf_counter() - started)
    return times[0], statistics.median(times[1:])


def measure(url: str, query: Query | None, warm: int) -> tuple[float, float]:
    """(cold, warm median) seconds of `query` on a reader opened afresh; None: of opening the reader."""
    if query is None:
        return measure_open(url, warm)
    with open_reader(url) as reader:
        cold = timed(query, reader)
        return cold, statistics.median(timed(query, reader) for _ in range(warm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--warm", type=int, default=5, help="warm calls per query (their median is reported)")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores are built (default a temp dir)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help="request rows per INSERT (DuckLake: a file each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, TempPostgres(fsync=False) as postgres:
        postgres.create_database("reader_latency")
        lake = Path(tmp) / "lake"
        urls = {
            "embedded": str(Path(tmp) / "store.duckdb"),
            "ducklake": f"ducklake:postgres://{postgres.user}@{postgres.host}:{postgres.port}/reader_latency"
            f"?data={lake}",
        }
        for label, url in urls.items():
            seconds = fill(url, args.rows, label, args.chunk)
            where = Path(url) if label == "embedded" else lake
            line = f"fill {label}: {args.rows:,} request rows in {seconds:.1f} s ({on_disk(where)})"
            print(line, flush=True)
        queries: dict[str, Query | None] = {"open_reader + close": None, **reader_queries()}
        results: dict[str, dict[str, tuple[float, float]]] = {}
        for name, query in tqdm(queries.items(), desc="queries", unit="query", leave=False):
            results[name] = {label: measure(url, query, args.warm) for label, url in urls.items()}
    print(f"\n{args.rows:,} request rows; ms, cold (first call on a fresh reader) / warm (median of {args.warm})")
    print(f"{'query':<36} {'embedded cold':>13} {'warm':>8} {'ducklake cold':>13} {'warm':>8} "
          f"{'ratio cold':>10} {'ratio warm':>10}")  # fmt: skip
    for name, by in results.items():
        (ec, ew), (dc, dw) = by["embedded"], by["ducklake"]
        print(f"{name:<36} {ec * 1e3:>13.1f} {ew * 1e3:>8.1f} {dc * 1e3:>13.1f} {dw * 1e3:>8.1f} "
              f"{dc / ec:>10.2f} {dw / ew:>10.2f}")  # fmt: skip
    print("ratio: ducklake / embedded")


if __name__ == "__main__":
    main()
