"""Gateway overhead: the same pool, direct vs through the collector's gateway, TTFT p50 and p99 ratios.

Needs the pools up (`inferwatch engine up`). Starts a collector of its own on a free port with a
throw-away store, and a bare pass-through proxy (aiohttp, relays bytes, records nothing) in a process of
its own, then, for each concurrency, runs the same seeded workload (random prompts of 32 tokens, 16 output
tokens, ignore_eos) direct, through the bare proxy and through the gateway, the order rotating between
rounds, pooling the TTFTs of each side. The bare proxy tells what any extra hop costs on this machine
(where the pools, the client and the hop share two cores); the gateway's own work is the rest.
Client: collector/loadgen/runner.py (aiohttp, the same on every side).
Target (issue 3): gateway/direct TTFT p50 <= 1.03 and p99 <= 1.10.

    .venv/bin/python bench/gateway_overhead.py [--home var] [--pool ref] [--rounds 4] [--requests 64]
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from collector import daemon
from collector.loadgen.runner import LoadConfig, run_load
from collector.loadgen.workloads import random_workload
from collector.service import CollectorConfig
from engine.state import EngineState
from inferwatch.report import print_table

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BARE_PROXY = """
import asyncio, sys
import aiohttp
from aiohttp import web

async def main(upstream, port):
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)

    async def relay(request):
        body = await request.read()
        async with session.post(upstream + request.path, data=body, headers={"content-type": "application/json"}) as up:
            response = web.StreamResponse(status=up.status, headers={"content-type": up.headers["content-type"]})
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            return response

    app = web.Application()
    app.router.add_post("/{path:.*}", relay)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


# an idle process that sleeps 5 ms at a time and records how late it wakes: what the machine does to any
# process beside the pools (the client, the proxy, the gateway) while the bench runs
SLEEPER = """
import json, sys, time
late = []
try:
    while True:
        t = time.perf_counter()
        time.sleep(0.005)
        late.append(time.perf_counter() - t - 0.005)
except KeyboardInterrupt:
    print(json.dumps(late))
"""


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
    upstream = pool.base_url.removesuffix("/v1")
    proxy_port = free_port()
    proxy = subprocess.Popen([sys.executable, "-c", BARE_PROXY, upstream, str(proxy_port)], stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectorConfig(
            store_url=f"{tmp}/bench.duckdb", journal_dir=f"{tmp}/journal", engine_state=str(args.home / "engine.json"),
            prices=str(ROOT / "data" / "prices.yaml"), port=free_port(),
        )  # fmt: skip
        state = daemon.up(config, Path(tmp) / "collector.json", log=lambda _: None)
        sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
        sides = {
            "direct": pool.base_url,
            "bare proxy": f"http://127.0.0.1:{proxy_port}/v1",
            "gateway": f"{state.url}/v1",
        }
        try:
            for url in sides.values():  # one warm-up run each
                ttfts(url, pool.model_id, 4, 16, seed=99)
            rows = []
            for concurrency in args.concurrency:
                got: dict[str, list[float]] = {name: [] for name in sides}
                for r in range(args.rounds):
                    order = list(sides)[r % 3 :] + list(sides)[: r % 3]
                    for name in order:
                        got[name] += ttfts(sides[name], pool.model_id, concurrency, args.requests, seed=r)
                rows.append((concurrency, got))
        finally:
            daemon.down(Path(tmp) / "collector.json")
            proxy.terminate()
            proxy.wait()
            sleeper.send_signal(signal.SIGINT)
            late = np.array(json.loads(sleeper.communicate()[0] or "[0]")) * 1e3
    print(f"pool {pool.model_id}: TTFT direct vs through the gateway, {args.rounds} alternating rounds of "
          f"{args.requests} requests (32 in / 16 out tokens)")  # fmt: skip
    table = []
    for concurrency, got in rows:
        direct = {q: float(np.percentile(got["direct"], q)) * 1e3 for q in (50, 99)}
        for name, values in got.items():
            p = {q: float(np.percentile(values, q)) * 1e3 for q in (50, 99)}
            table.append({
                "concurrency": concurrency, "side": name, "n": len(values),
                "TTFT p50 ms": p[50], "p50 / direct": p[50] / direct[50],
                "TTFT p99 ms": p[99], "p99 / direct": p[99] / direct[99],
            })  # fmt: skip
    print_table(table, title="TTFT by side (target: gateway p50 / direct <= 1.03, p99 / direct <= 1.10)")
    p50, p99, worst, over = np.median(late), np.percentile(late, 99), late.max(), (late > 50).sum()
    print(
        f"an idle process beside them woke late by p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.0f} ms "
        f"({over} times over 50 ms)"
    )


if __name__ == "__main__":
    main()
