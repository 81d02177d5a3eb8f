"""Connection flood: TTFT of real streaming requests through a collector, with no flood and while 500 slow
clients hold connections open (slowloris: each sends a request head one byte a second), side by side.

Everything on loopback, each in a process of its own: a fast fake pool (aiohttp: a streamed completion whose
first token comes after --prefill-ms, then --tokens tokens --gap-ms apart), a real collector in front of it
(`python -m collector.service` with its default limits and a throw-away store: the slow clients are cut at
receive_timeout_s, 10 s, with a 408, and come straight back), the flood, and this process as the client
(collector/loadgen/runner.py: Poisson arrivals at --rate for --seconds, at most --concurrency in flight).
Rounds alternate: no flood, flood, no flood, ...; the flood is started before its round and the round begins
once every slow client is connected. Target (issue 17): TTFT p50 with the flood / without <= 1.1.

    .venv/bin/python -m bench.connection_flood [--slow-clients 500] [--rounds 2] [--seconds 12] [--rate 40]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gateway_overhead import free_port, percentiles, ttft_e2e
from collector import daemon
from collector.gateway.limits import Limits, open_files_needed
from collector.loadgen.runner import LoadConfig
from collector.loadgen.workloads import random_workload
from collector.service import CollectorConfig
from engine.state import EngineState, PoolEndpoint
from inferwatch.report import print_table

ROOT = Path(__file__).resolve().parent.parent

FAKE_POOL = """
import asyncio, json, sys
from aiohttp import web

prefill_s, tokens, gap_s = float(sys.argv[2]) / 1e3, int(sys.argv[3]), float(sys.argv[4]) / 1e3

def event(payload):
    return b"data: " + json.dumps(payload).encode() + b"\\n\\n"

async def completions(request):
    body = await request.json()
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await asyncio.sleep(prefill_s)
    for i in range(tokens):
        finish = "length" if i == tokens - 1 else None
        await response.write(event({"id": "c", "object": "text_completion", "model": body["model"],
                                    "choices": [{"index": 0, "text": "7", "finish_reason": finish}]}))
        if i < tokens - 1:
            await asyncio.sleep(gap_s)
    usage = {"prompt_tokens": 32, "completion_tokens": tokens, "total_tokens": 32 + tokens}
    await response.write(event({"id": "c", "choices": [], "usage": usage}) + b"data: [DONE]\\n\\n")
    return response

app = web.Application()
app.router.add_post("/fake/v1/completions", completions)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

# N slow clients: each connects, sends a request line and then a header one byte a second until the collector
# answers (408) or closes, and reconnects at once. Prints "ready" once all N are connected; on SIGINT, its counts.
# It runs at nice 19: on this 2-core machine the attackers' own CPU would otherwise be charged to the collector
# (a real flood comes from other machines).
FLOOD = """
import asyncio, json, resource, signal, sys

host, port, n = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
stats = {"connects": 0, "answered_408": 0, "closed_other": 0, "connect_errors": 0, "open_min": n, "open_max": 0,
         "open_sum": 0, "samples": 0}
writers = set()  # the connections open now: one ticker writes a byte to each every second

async def slow_client(stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["connects"] += 1
        writer.write(f"POST /v1/completions HTTP/1.1\\r\\nhost: {host}:{port}\\r\\nx-slow: ".encode())
        writers.add(writer)
        try:
            data = await reader.read(4096)  # the answer (a 408), or the close
            stats["answered_408" if data.startswith(b"HTTP/1.1 408") else "closed_other"] += 1
        except OSError:
            stats["closed_other"] += 1
        finally:
            writers.discard(writer)
            writer.close()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    clients = [asyncio.create_task(slow_client(stop)) for _ in range(n)]
    while len(writers) < n:
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    ticks = 0
    while not stop.is_set():
        stats["open_min"] = min(stats["open_min"], len(writers))
        stats["open_max"] = max(stats["open_max"], len(writers))
        stats["open_sum"], stats["samples"] = stats["open_sum"] + len(writers), stats["samples"] + 1
        ticks += 1
        if ticks % 10 == 0:
            for writer in list(writers):
                writer.write(b"a")
        await asyncio.sleep(0.1)
    for task in clients:
        task.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    print(json.dumps(stats), flush=True)

asyncio.run(main())
"""


def write_engine(home: Path, pool_url: str) -> Path:
    """A spec of one endpoint pool (the fake one) and the engine state `engine up` would record for it."""
    spec = home / "pools.yaml"
    pool = {"name": "fake", "hardware": "cpu", "accelerator": "cpu", "model": "test/fake", "model_name": "arith",
            "revision": "r1", "endpoint": f"{pool_url}/fake"}  # fmt: skip
    spec.write_text(json.dumps({"pools": [pool]}))
    state = EngineState(
        spec=str(spec), ray_address="", ray_head_pid=None, serve_url=pool_url, metrics_url=None,
        pools=[PoolEndpoint("fake", "arith@fake", f"{pool_url}/fake/v1", False)],
    )  # fmt: skip
    state.save(home / "engine.json")
    return home / "engine.json"


def ttfts(base_url: str, args: argparse.Namespace, seed: int) -> list[tuple[float, float]]:
    """(TTFT, E2E) of each request of one round."""
    items = random_workload(64, input_len=32, output_len=16, seed=seed)
    config = LoadConfig(
        base_url=base_url, models=("arith@fake",), duration_s=args.seconds, rate=args.rate,
        max_concurrency=args.concurrency, seed=seed, progress=False,
    )  # fmt: skip
    return ttft_e2e(config, items)


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_flood(port: int, clients: int) -> subprocess.Popen[str]:
    command = ["nice", "-n", "19", sys.executable, "-c", FLOOD, str(port), str(clients)]
    flood = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert flood.stdout is not None
    line = flood.stdout.readline()
    if line.strip() != "ready":
        flood.kill()
        raise SystemExit(f"the flood did not get its {clients} connections open ({line!r})")
    return flood


def stop_flood(flood: subprocess.Popen[str]) -> dict[str, int]:
    flood.send_signal(signal.SIGINT)
    out, _ = flood.communicate(timeout=30)
    stats: dict[str, int] = json.loads(out.strip().splitlines()[-1])
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per side (no flood, flood), alternating")
    parser.add_argument("--seconds", type=float, default=12.0, help="of load per round (over the 10 s cut)")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (Poisson)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most")
    parser.add_argument("--prefill-ms", type=float, default=20.0, help="the fake pool's time to first token")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--gap-ms", type=float, default=2.0, help="between the fake pool's tokens")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"open files: soft limit {soft}, hard {hard}; the collector at its default limits raises its own to "
          f"{open_files_needed(Limits())}, the flood to {args.slow_clients + 256}")  # fmt: skip
    pool_port = free_port()
    pool = subprocess.Popen([sys.executable, "-c", FAKE_POOL, str(pool_port), str(args.prefill_ms), str(args.tokens),
                             str(args.gap_ms)])  # fmt: skip
    sides: dict[str, list[tuple[float, float]]] = {"no flood": [], f"{args.slow_clients} slow clients": []}
    floods: list[dict[str, int]] = []
    busy: dict[str, list[float]] = {name: [0.0, 0.0] for name in sides}  # the collector's CPU seconds, wall seconds
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        config = CollectorConfig(
            store_url=str(home / "store.duckdb"), engine_state=str(write_engine(home, f"http://127.0.0.1:{pool_port}")),
            prices=str(ROOT / "data" / "prices.yaml"), port=free_port(), journal_dir=str(home / "journal"),
        )  # fmt: skip
        time.sleep(1.0)  # the fake pool's start
        state = daemon.up(config, home / "collector.json", log=lambda _: None)
        base_url = f"{state.url}/v1"

        def measured(side: str, seed: int) -> None:
            cpu, wall = cpu_s(state.pid), time.monotonic()
            sides[side] += ttfts(base_url, args, seed)
            busy[side][0] += cpu_s(state.pid) - cpu
            busy[side][1] += time.monotonic() - wall

        try:
            ttfts(base_url, argparse.Namespace(**{**vars(args), "seconds": 2.0}), seed=99)  # warm-up
            for r in range(args.rounds):
                measured("no flood", seed=2 * r)
                flood = start_flood(config.port, args.slow_clients)
                try:
                    measured(f"{args.slow_clients} slow clients", seed=2 * r + 1)
                finally:
                    floods.append(stop_flood(flood))
            log_lines = [line for line in Path(state.log).read_text().splitlines() if "refused by" in line]
        finally:
            daemon.down(home / "collector.json")
            pool.terminate()
            pool.wait()
    base = percentiles(sides["no flood"])
    table = []
    for name, values in sides.items():
        p = percentiles(values)
        table.append({
            "side": name, "n": len(values),
            "TTFT p50 ms": p["ttft", 50], "p50 / no flood": p["ttft", 50] / base["ttft", 50],
            "TTFT p99 ms": p["ttft", 99], "p99 / no flood": p["ttft", 99] / base["ttft", 99],
            "E2E p50 ms": p["e2e", 50], "E2E p50 / no flood": p["e2e", 50] / base["e2e", 50],
            "collector CPU %": 100 * busy[name][0] / busy[name][1],
        })  # fmt: skip
    print(f"fake pool: first token after {args.prefill_ms:g} ms, {args.tokens} tokens {args.gap_ms:g} ms apart; "
          f"{args.rounds} alternating rounds of {args.seconds:g} s at {args.rate:g} req/s (concurrency <= "
          f"{args.concurrency}) per side")  # fmt: skip
    print_table(table, title="TTFT through the collector (target: p50 with the flood / without <= 1.1)")
    total = {key: sum(f[key] for f in floods) for key in ("connects", "answered_408", "closed_other", "connect_errors")}
    mean_open = sum(f["open_sum"] for f in floods) / max(1, sum(f["samples"] for f in floods))
    print(f"flood: {args.slow_clients} slow clients, open {mean_open:.0f} on average while measured (at least "
          f"{min(f['open_min'] for f in floods)}: reconnecting after the cuts); {total['connects']} connections made, "
          f"{total['answered_408']} cut with a 408, "
          f"{total['closed_other']} closed otherwise, {total['connect_errors']} connects failed")  # fmt: skip
    print(f"collector log: {len(log_lines)} 'refused by' lines (at most one a minute per limit)")


if __name__ == "__main__":
    main()
