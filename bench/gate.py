"""Gate wall time on a big store: `run_gate` (all its store reads and statistics) on 1M request rows and 10k
probe rows, side by side with the same store cut down to 10k request rows and 100 probe rows.

The store is generated with DuckDB SQL straight into the file (two pools, requests spread over 15 minutes,
lognormal TTFTs, 2 % errors; a canary run of probes with its drift rows; a 1,000-item eval run per pool), then
closed; the gate reads it as `inferwatch gate` does (collector.store.door.open_reader: read-only, the file
opened for each query). Each size is timed `--rounds` times, alternating; the median is reported, with the ratio of
big to small. Target (issue 6): <= 2 s on 1M request rows and 10k probe rows.

    .venv/bin/python -m bench.gate [--requests 1000000] [--probes 10000] [--rounds 3]

(`python bench/gate.py` would import this file as the `gate` package: run it as a module.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from collector.store.api import Store
from collector.store.door import open_reader
from gate.config import load_gate_config
from gate.data import Span
from gate.judge import run_gate
from inferwatch.report import print_table

END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
START = END - timedelta(minutes=15)


def build(path: Path, requests: int, probes: int) -> None:
    Store(path).close()  # the schema; the rows go in by SQL below
    with duckdb.connect(str(path)) as con:
        con.execute(f"""
            INSERT INTO requests (id, pool, source, started_at, status, ttft_s, tpot_s, e2e_s, prompt_tokens,
                                  cached_tokens, completion_tokens, cost_usd)
            SELECT 'r' || i, CASE WHEN i % 2 = 0 THEN 'ref' ELSE 'cand' END, 'load',
                   TIMESTAMPTZ '{START.isoformat()}' + to_milliseconds(i * 900000 // {requests}),
                   CASE WHEN i % 50 = 0 THEN 'error' ELSE 'ok' END,
                   exp(ln(0.05) + 0.2 * sqrt(-2 * ln(random())) * cos(2 * pi() * random())),
                   0.01 + random() / 1000, 0.2 + random() / 10, 300, 128 * (i % 3), 32, 1e-6 * (1 + random())
            FROM range({requests}) t(i)
        """)
        con.execute(f"""
            INSERT INTO probes (run_id, pool, reference_pool, probe_id, mode, tokens_json, recorded_at)
            SELECT 'cn1', 'cand', 'ref', 'p' || (i % 64), 'greedy@' || (i % 3), '[]',
                   TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 1 MINUTE
            FROM range({probes}) t(i)
        """)
        con.execute(f"""
            INSERT INTO drift (run_id, pool, metric, value, band_high, p_value, verdict, evidence_json, recorded_at)
            SELECT 'cn1', 'cand', m, 0.0, 0.0, 1.0, 'ok', '{{}}', TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 1 MINUTE
            FROM (VALUES ('greedy_hard_mismatch'), ('unexpected_chars'), ('tf_mean_kl')) v(m)
        """)
        con.execute(f"""
            INSERT INTO eval_items (run_id, pool, suite, item_id, correct, recorded_at)
            SELECT 'ev1', p, 'arith-v1', 'i' || i, (i * 7919 + length(p)) % 100 <> 0,
                   TIMESTAMPTZ '{END.isoformat()}' - INTERVAL 2 MINUTE
            FROM range(1000) t(i), (VALUES ('ref'), ('cand')) v(p)
        """)


def time_gate(path: Path) -> tuple[float, str]:
    config = load_gate_config()
    started = time.perf_counter()
    with open_reader(path) as store:
        result = run_gate(store, "ref", "cand", Span(START, END), config)
    return time.perf_counter() - started, f"{result.verdict.value} (score {result.score:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = {"small": (args.requests // 100, args.probes // 100), "big": (args.requests, args.probes)}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, (n_requests, n_probes) in sizes.items():
            paths[name] = Path(tmp) / f"{name}.duckdb"
            started = time.perf_counter()
            build(paths[name], n_requests, n_probes)
            print(f"{name}: {n_requests:,} request rows, {n_probes:,} probe rows built in "
                  f"{time.perf_counter() - started:.1f}s")  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in sizes}
        verdicts = {}
        for _ in range(args.rounds):
            for name in sizes:
                seconds, verdicts[name] = time_gate(paths[name])
                times[name].append(seconds)
    small = statistics.median(times["small"])
    rows = [
        {"store": name, "request rows": sizes[name][0], "probe rows": sizes[name][1],
         "gate s (median)": round(statistics.median(t), 3), "min s": round(min(t), 3),
         "x small": round(statistics.median(t) / small, 2), "verdict": verdicts[name]}
        for name, t in times.items()
    ]  # fmt: skip
    print_table(rows, title=f"run_gate, {args.rounds} rounds each, alternating (target: big <= 2 s)")


if __name__ == "__main__":
    main()
