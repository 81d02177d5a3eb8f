"""Gateway overhead: the same pool, direct vs through the collector's gateway, TTFT p50 and p99 ratios.

Needs the pools up (`inferwatch engine up`). Starts a collector of its own on a free port with a
throw-away store, then, for each concurrency, alternates direct and gateway runs of the same seeded
workload (random prompts of 32 tokens, 16 output tokens, ignore_eos) for a few rounds, pooling the TTFTs
of each side. Client: collector/loadgen.py (aiohttp, the same on both sides).
Target (issue 3): gateway/direct TTFT p50 <= 1.03 and p99 <= 1.10.

    .venv/bin/python bench/gateway_overhead.py [--home var] [--pool ref] [--rounds 4] [--requests 64]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
from pathlib import Path

import numpy as np

from collector import daemon
from collector.loadgen import LoadConfig, run_load
from collector.service import CollectorConfig
from collector.workloads import random_workload
from engine.lifecycle import EngineState

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ttfts(base_url: str, model: str, concurrency: int, requests: int, seed: int) -> list[float]:
    items = random_workload(requests, input_len=32, output_len=16, seed=seed)
    config = LoadConfig(
        base_url=base_url, models=(model,), num_requests=requests, max_concurrency=concurrency,
        ignore_eos=True, seed=seed, progress=False,
    )  # fmt: skip
    result = run_load(config, items)
    failed = [r for r in result.requests if r.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed against {base_url}: {failed[0].error}")
    return [r.ttft_s for r in result.requests if r.ttft_s is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "var", help="where `engine up` recorded the pools")
    parser.add_argument("--pool", default="ref")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=64, help="requests per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args()
    engine = EngineState.load(args.home / "engine.json")
    pool = next(p for p in engine.pools if p.name == args.pool)
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectorConfig(
            store_path=f"{tmp}/bench.duckdb", engine_state=str(args.home / "engine.json"),
            prices=str(ROOT / "data" / "prices.yaml"), port=free_port(),
        )  # fmt: skip
        state = daemon.up(config, Path(tmp) / "collector.json", log=lambda _: None)
        try:
            # one warm-up run each way
            ttfts(pool.base_url, pool.model_id, 4, 16, seed=99)
            ttfts(f"{state.url}/v1", pool.model_id, 4, 16, seed=99)
            rows = []
            for concurrency in args.concurrency:
                direct: list[float] = []
                gateway: list[float] = []
                for r in range(args.rounds):
                    first, second = (direct, gateway) if r % 2 == 0 else (gateway, direct)
                    for side in (first, second):
                        url = pool.base_url if side is direct else f"{state.url}/v1"
                        side += ttfts(url, pool.model_id, concurrency, args.requests, seed=r)
                rows.append((concurrency, direct, gateway))
        finally:
            daemon.down(Path(tmp) / "collector.json")
    print(f"pool {pool.model_id}: TTFT direct vs through the gateway, {args.rounds} alternating rounds of "
          f"{args.requests} requests (32 in / 16 out tokens)")  # fmt: skip
    print(f"{'concurrency':>11} {'n':>5} {'direct p50':>11} {'gw p50':>8} {'ratio':>6} "
          f"{'direct p99':>11} {'gw p99':>8} {'ratio':>6}")  # fmt: skip
    for concurrency, direct, gateway in rows:
        d50, g50 = np.percentile(direct, 50) * 1e3, np.percentile(gateway, 50) * 1e3
        d99, g99 = np.percentile(direct, 99) * 1e3, np.percentile(gateway, 99) * 1e3
        print(f"{concurrency:>11} {len(direct):>5} {d50:>9.1f}ms {g50:>6.1f}ms {g50 / d50:>6.3f} "
              f"{d99:>9.1f}ms {g99:>6.1f}ms {g99 / d99:>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
