"""Gateway overhead: the same pool, direct vs through the collector's gateway, TTFT and E2E p50/p99 ratios,
with one gateway per journal fsync policy.

Needs the pools up (`inferwatch engine up`). Starts collectors of its own on free ports with throw-away stores
(one per fsync policy in --fsync: none, group:<ms>, always — each journals every row before the answer's last
byte, docs/DESIGN.md "Store"), and a bare pass-through proxy (aiohttp, relays bytes, records nothing: the
"journaling off" side) in a process of its own, then, for each concurrency, runs the same seeded workload
(random prompts of 32 tokens, 16 output tokens, ignore_eos) on every side, the order rotating between rounds,
pooling the TTFTs and E2Es of each side. The bare proxy tells what any extra hop costs on this machine (where
the pools, the client and the hop share two cores); a gateway's own work is the rest. The journal's append and
fsync sit at the end of the answer (before [DONE]), so they show in E2E, not in TTFT.
Client: collector/loadgen/runner.py (aiohttp, the same on every side).
Targets: issue 3, gateway/direct TTFT p50 <= 1.03 and p99 <= 1.10; issue 16, the journal's cost at the default
policy (none) <= 1 % of TTFT p50 against the bare proxy.

    .venv/bin/python bench/gateway_overhead.py [--home var] [--pool ref] [--rounds 4] [--requests 64] \
        [--fsync none group:10 always]
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
from typing import Any

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


def timings(base_url: str, model: str, concurrency: int, requests: int, seed: int) -> list[tuple[float, float]]:
    """(TTFT, E2E) of each request of one run."""
    items = random_workload(requests, input_len=32, output_len=16, seed=seed)
    config = LoadConfig(
        base_url=base_url, models=(model,), num_requests=requests, max_concurrency=concurrency,
        ignore_eos=True, seed=seed, progress=False,
    )  # fmt: skip
    return ttft_e2e(config, items)


def ttft_e2e(config: LoadConfig, items: list[Any]) -> list[tuple[float, float]]:
    """Run the load; (TTFT, E2E) of each request, or exit naming the first failure (a benchmark of errors lies)."""
    result = run_load(config, items)
    failed = [r for r in result.requests if r.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} of {len(result.requests)} requests failed against {config.base_url}: "
                         f"{failed[0].error}")  # fmt: skip
    return [(r.ttft_s, r.e2e_s) for r in result.requests if r.ttft_s is not None]


def percentiles(values: list[tuple[float, float]]) -> dict[tuple[str, int], float]:
    """TTFT and E2E p50 and p99, in ms."""
    ttft, e2e = np.array([v[0] for v in values]), np.array([v[1] for v in values])
    return {(name, q): float(np.percentile(a, q)) * 1e3 for name, a in (("ttft", ttft), ("e2e", e2e)) for q in (50, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "var", help="where `engine up` recorded the pools")
    parser.add_argument("--pool", default="ref")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--requests", type=int, default=64, help="requests per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--fsync", nargs="+", default=["none", "group:10", "always"], help="a gateway per policy")
    args = parser.parse_args()
    engine = EngineState.load(args.home / "engine.json")
    pool = next(p for p in engine.pools if p.name == args.pool)
    upstream = pool.base_url.removesuffix("/v1")
    proxy_port = free_port()
    proxy = subprocess.Popen([sys.executable, "-c", BARE_PROXY, upstream, str(proxy_port)], stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        states = {}
        for n, policy in enumerate(args.fsync):
            config = CollectorConfig(
                store_url=f"{tmp}/bench{n}.duckdb", journal_dir=f"{tmp}/journal{n}", fsync=policy,
                engine_state=str(args.home / "engine.json"), prices=str(ROOT / "data" / "prices.yaml"),
                port=free_port(),
            )  # fmt: skip
            states[policy] = daemon.up(config, Path(tmp) / f"collector{n}.json", log=lambda _: None)
        sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
        sides = {"direct": pool.base_url, "bare proxy": f"http://127.0.0.1:{proxy_port}/v1"}
        sides |= {f"gateway fsync {policy}": f"{state.url}/v1" for policy, state in states.items()}
        try:
            for url in sides.values():  # one warm-up run each
                timings(url, pool.model_id, 4, 16, seed=99)
            rows = []
            for concurrency in args.concurrency:
                got: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
                for r in range(args.rounds):
                    order = list(sides)[r % len(sides) :] + list(sides)[: r % len(sides)]
                    for name in order:
                        got[name] += timings(sides[name], pool.model_id, concurrency, args.requests, seed=r)
                rows.append((concurrency, got))
        finally:
            for n in range(len(states)):
                daemon.down(Path(tmp) / f"collector{n}.json")
            proxy.terminate()
            proxy.wait()
            sleeper.send_signal(signal.SIGINT)
            late = np.array(json.loads(sleeper.communicate()[0] or "[0]")) * 1e3
    print(f"pool {pool.model_id}: TTFT direct vs through the gateway, {args.rounds} alternating rounds of "
          f"{args.requests} requests (32 in / 16 out tokens)")  # fmt: skip
    table = []
    for concurrency, got in rows:
        ref = {side: percentiles(got[side]) for side in ("direct", "bare proxy")}
        for name, values in got.items():
            p = percentiles(values)
            table.append({
                "concurrency": concurrency, "side": name, "n": len(values),
                "TTFT p50 ms": p["ttft", 50], "p50 / direct": p["ttft", 50] / ref["direct"]["ttft", 50],
                "p50 / bare": p["ttft", 50] / ref["bare proxy"]["ttft", 50],
                "TTFT p99 ms": p["ttft", 99], "p99 / direct": p["ttft", 99] / ref["direct"]["ttft", 99],
                "E2E p50 ms": p["e2e", 50], "E2E p50 / bare": p["e2e", 50] / ref["bare proxy"]["e2e", 50],
            })  # fmt: skip
    print_table(table, title="by side (targets: gateway TTFT p50 / direct <= 1.03, p99 / direct <= 1.10; "
                "journal at fsync none: TTFT p50 / bare <= 1.01)")  # fmt: skip
    p50, p99, worst, over = np.median(late), np.percentile(late, 99), late.max(), (late > 50).sum()
    print(
        f"an idle process beside them woke late by p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.0f} ms "
        f"({over} times over 50 ms)"
    )


if __name__ == "__main__":
    main()
