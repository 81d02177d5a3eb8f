"""Stream batching: what Ray Serve LLM's stream batching interval does to what the gateway can measure, and what
a short interval costs.

Brings up its own pools (one vLLM CPU engine of the arithmetic model per interval, default 0 / 2 / 10 / 50 ms:
PoolSpec.stream_batch_ms, engine/serve_app.py), a collector, and then, one pool at a time while the others idle:
- `--requests` long answers at concurrency 1 (32 prompt tokens, `--output` tokens, ignore_eos), read back from
  the store: client TPOT p50 against the engine's own (vLLM mean ITL, requests.engine_tpot_s), how many distinct
  arrivals the token events had, client TTFT p50;
- the CPU seconds per request of every Ray and vLLM process (Serve proxy, ingress, the pool's replica and engine
  core) and of the gateway, over that phase (the other pools idle: their share is in it, alike for every row);
- the same count at concurrency 8: output tokens/s.
Target (issue 18): client TPOT within 5 % of the engine's at p50 on long answers at the embedded default.

    flock /work/tools/engine.lock .venv/bin/python bench/stream_batching.py [--intervals 0 2 10 50] \
        [--requests 24] [--output 64]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from collector import daemon
from collector.loadgen.runner import LoadConfig, run_load
from collector.loadgen.workloads import random_workload
from collector.service import CollectorConfig
from collector.store.door import open_reader
from engine.state import EngineState
from inferwatch.report import print_table

ROOT = Path(__file__).resolve().parent.parent
POOL = """  - name: {name}
    hardware: cpu
    accelerator: cpu
    model: {model}
    revision: r1
    dtype: float32
    stream_batch_ms: {interval}
    engine_args: {{max_model_len: 512, enable_prefix_caching: true}}
    env: {{VLLM_CPU_KVCACHE_SPACE: "1", VLLM_CPU_OMP_THREADS_BIND: nobind}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serving_cpu_s(gateway_pid: int) -> tuple[float, float]:
    """(CPU seconds of every Ray and vLLM process so far, of the gateway process so far)."""
    ray = gateway = 0.0
    for proc in psutil.process_iter(["pid", "cmdline", "name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is None:
            continue
        used = times.user + times.system
        text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        if proc.info["pid"] == gateway_pid:
            gateway += used
        elif "ray::" in text or "EngineCore" in text or "raylet" in text or "gcs_server" in text:
            ray += used
    return ray, gateway


def send(base_url: str, model: str, requests: int, output: int, concurrency: int, seed: int) -> tuple[str, float]:
    """One run through the gateway; its run id and wall seconds, or exit naming the first failure."""
    config = LoadConfig(base_url=base_url, models=(model,), num_requests=requests, max_concurrency=concurrency,
                        ignore_eos=True, seed=seed, progress=False)  # fmt: skip
    started = time.perf_counter()
    result = run_load(config, random_workload(requests, input_len=32, output_len=output, seed=seed))
    failed = [r for r in result.requests if r.status != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} of {requests} requests to {model} failed: {failed[0].error}")
    return config.run_id, time.perf_counter() - started


def stored(store_path: str, run_id: str) -> dict[str, Any]:
    with open_reader(store_path) as store:
        return store.query(
            "SELECT quantile_cont(tpot_s, 0.5) AS tpot, quantile_cont(engine_tpot_s, 0.5) AS engine_tpot, "
            "quantile_cont(ttft_s, 0.5) AS ttft, median(chunk_arrivals) AS arrivals, median(token_events) AS events, "
            "sum(completion_tokens) AS tokens FROM requests WHERE run_id = ?",
            [run_id],
        ).to_pylist()[0]


def measure(collector: Any, store_path: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    send(f"{collector.url}/v1", model, 4, args.output, 1, seed=99)  # warm-up
    ray0, gw0 = serving_cpu_s(collector.pid)
    run_id, _ = send(f"{collector.url}/v1", model, args.requests, args.output, 1, seed=1)
    ray1, gw1 = serving_cpu_s(collector.pid)
    busy_id, wall = send(f"{collector.url}/v1", model, args.requests, args.output, 8, seed=2)
    httpx.post(f"{collector.url}/admin/flush", content=b"{}", headers={"Content-Type": "application/json"},
               timeout=90).raise_for_status()  # fmt: skip
    one, busy = stored(store_path, run_id), stored(store_path, busy_id)
    return {
        "client TPOT p50 ms": one["tpot"] * 1e3, "engine TPOT p50 ms": one["engine_tpot"] * 1e3,
        "client / engine": one["tpot"] / one["engine_tpot"], "arrivals / events": f"{one['arrivals']:.0f} / "
        f"{one['events']:.0f}", "TTFT p50 ms": one["ttft"] * 1e3,
        "Ray CPU ms / req": (ray1 - ray0) / args.requests * 1e3,
        "gateway CPU ms / req": (gw1 - gw0) / args.requests * 1e3,
        "out tok/s at c=8": float(busy["tokens"]) / wall,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", type=float, nargs="+", default=[0, 2, 10, 50], help="ms, one pool each")
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--output", type=int, default=64, help="output tokens per request")
    args = parser.parse_args()
    names = {interval: f"b{int(interval)}" for interval in args.intervals}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "pools.yaml"
        model = ROOT / "data" / "models" / "arith"
        spec.write_text("pools:\n" + "".join(POOL.format(name=n, model=model, interval=i) for i, n in names.items()))
        home = Path(tmp) / "home"
        flags = ["--home", str(home), "--port", str(free_port()), "--ray-port", str(free_port()),
                 "--metrics-port", str(free_port())]  # fmt: skip
        cli = [sys.executable, "-m", "inferwatch.cli", "engine"]
        print(f"bringing up {len(names)} pools (one per interval) ...", flush=True)
        subprocess.run([*cli, "up", "--spec", str(spec), *flags], check=True, stdout=subprocess.DEVNULL)
        rows = []
        try:
            store_path = f"{tmp}/bench.duckdb"
            config = CollectorConfig(
                store_url=store_path, journal_dir=f"{tmp}/journal", port=free_port(),
                engine_state=str(home / "engine.json"), prices=str(ROOT / "data" / "prices.yaml"),
            )  # fmt: skip
            collector = daemon.up(config, Path(tmp) / "collector.json", log=lambda _: None)
            engine = EngineState.load(home / "engine.json")
            try:
                for interval, name in names.items():
                    pool = next(p for p in engine.pools if p.name == name)
                    print(f"pool {name} (interval {interval:g} ms) ...", flush=True)
                    rows.append({"interval ms": interval, **measure(collector, store_path, pool.model_id, args)})
                    print(rows[-1], flush=True)
            finally:
                daemon.down(Path(tmp) / "collector.json", log=lambda _: None)
        finally:
            subprocess.run([*cli, "down", *flags], check=False, stdout=subprocess.DEVNULL)
    print_table(rows, title=f"stream batching: {args.requests} answers of {args.output} tokens at c=1 per pool "
                "(target: client / engine TPOT within 5 % at the default)")  # fmt: skip
    spread = np.ptp([r["out tok/s at c=8"] for r in rows]) if rows else 0.0
    print(f"throughput spread across intervals at c=8: {spread:.0f} tok/s")


if __name__ == "__main__":
    main()
