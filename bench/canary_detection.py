"""Canary detection: how often each fault pool is flagged, how often bf16 and A/A are (false alarms), how many
probes 95 % detection takes, and the same for an MMD-only baseline given the same number of requests.

Needs the default pools up (`inferwatch engine up`) and reads them directly (no collector). Run 0 calibrates
(an A/A replay of the reference); runs 1..R, each with other seeds, collect the reference, every other pool
and a fresh A/A replay of the reference, and judge them against run 0's calibration (so the A/A false-alarm
rate is measured out of sample). Per run and pool, a pool is flagged when any metric drifts
(canary/analysis.py), judged on the first k probes of the mixed probe list for k in --probe-counts.

The MMD-only baseline spends the same requests per pool as the full canary: it samples the first
`budget / --baseline-samples` probes --baseline-samples times each at the same temperature and flags a pool
when a Hamming-kernel MMD test rejects at false-discovery rate alpha (Benjamini-Hochberg over probes).

    .venv/bin/python bench/canary_detection.py [--runs 20] [--samples 8] [--concurrency 1 16]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from canary.analysis import PoolAnswers
from canary.client import Generated, PoolClient, gather_bounded
from canary.drift_stats import benjamini_hochberg, mmd_hamming
from canary.probes import Probe, load_probe_sets
from canary.runner import CanaryConfig, CollectJob, calibrate, collect_in_process, evaluate
from collector.client.targets import PoolTarget
from engine.state import EngineState
from inferwatch.report import print_table

ROOT = Path(__file__).resolve().parent.parent
POOLS = ("bf16", "boost", "noisy")
KINDS = {
    "bf16": "benign (false alarm)",
    "A/A": "null (false alarm)",
    "boost": "sampler fault",
    "noisy": "numeric fault",
}


def interleaved(sets: Sequence[Sequence[Probe]]) -> list[Probe]:
    """Probes of every set in turn, so that any prefix of the list holds every kind."""
    out: list[Probe] = []
    for i in range(max(len(s) for s in sets)):
        out += [s[i] for s in sets if i < len(s)]
    return out


def first_probes(answers: PoolAnswers, keep: set[str]) -> PoolAnswers:
    return PoolAnswers(
        answers.pool, {i: s for i, s in answers.scored.items() if i in keep},
        {c: {i: g for i, g in o.items() if i in keep} for c, o in answers.greedy.items()},
        {i: s for i, s in answers.samples.items() if i in keep},
    )  # fmt: skip


def requests_per_pool(probes: int, config: CanaryConfig) -> int:
    sampled = min(config.sampled_probes, probes) * config.samples
    return probes + probes * len(config.concurrencies) + sampled


async def baseline_samples(
    target: PoolTarget, probes: Sequence[Probe], samples: int, seed: int
) -> dict[str, list[str]]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as http:
        client = PoolClient(target, http)
        jobs = [client.generate(p, 1.0, 1, seed=seed + i) for p in probes for i in range(samples)]
        outs: list[Generated] = await gather_bounded(jobs, 16)
    texts: dict[str, list[str]] = {}
    for o in outs:
        texts.setdefault(o.probe_id, []).append(o.text)
    return texts


def baseline_flags(ref: dict[str, list[str]], pool: dict[str, list[str]], alpha: float) -> bool:
    p = [mmd_hamming(ref[k], pool[k], 300, seed=1).p_value for k in ref if k in pool]
    return any(benjamini_hochberg(p, alpha)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=ROOT / "var")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--probe-counts",
        type=int,
        nargs="+",
        default=[4, 8, 16, 32],
        help="judge on the first k probes; the largest k is how many are collected",
    )
    parser.add_argument("--baseline-samples", type=int, default=12)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    engine = EngineState.load(args.home / "engine.json")
    models = {p.name: (p.base_url, p.model_id) for p in engine.pools}
    sets = load_probe_sets(("arith-v1", "text-v1", "prefix-v1"))
    probes = interleaved([s.probes for s in sets])[: max(args.probe_counts)]
    by_id = {p.id: p for p in probes}
    config = CanaryConfig("ref", POOLS, concurrencies=tuple(args.concurrency), samples=args.samples, alpha=args.alpha)
    budget = requests_per_pool(len(probes), config)
    base_probes = probes[: max(budget // args.baseline_samples, 2)]

    def target(pool: str, run: int) -> PoolTarget:
        return PoolTarget(models[pool][0], models[pool][1], pool, f"bench-{run}-{uuid.uuid4().hex[:6]}")

    started = time.monotonic()
    first = collect_in_process(
        [CollectJob(target("ref", 0), 0), CollectJob(target("ref", 0), 100_000, reverse=True)], probes, config
    )
    calibration = calibrate(first[0], first[1], by_id, "bench", tuple(s.name for s in sets))
    print(f"calibrated in {time.monotonic() - started:.0f}s; {args.runs} runs follow", flush=True)
    flagged: dict[tuple[str, int], list[bool]] = {}
    base_flagged: dict[str, list[bool]] = {}
    which: dict[str, Counter[str]] = {}  # pool -> how often each metric drifted (all probes)
    seconds: list[float] = []
    for run in range(1, args.runs + 1):
        t0 = time.monotonic()
        seed = run * 1000
        jobs = [CollectJob(target(p, run), seed) for p in ("ref", *POOLS)]
        jobs.append(CollectJob(target("ref", run), seed + 100_000, reverse=True))
        answers = collect_in_process(jobs, probes, config)
        seconds.append(time.monotonic() - t0)
        reference, others = answers[0], dict(zip((*POOLS, "A/A"), answers[1:], strict=True))
        for k in args.probe_counts:
            keep = {p.id for p in probes[:k]}
            for name, pool in others.items():
                report = evaluate(first_probes(reference, keep), first_probes(pool, keep), by_id, calibration, config)
                flagged.setdefault((name, k), []).append(bool(report.drifting))
                if k == max(args.probe_counts):
                    which.setdefault(name, Counter()).update(r.metric for r in report.drifting)
        ref_texts = asyncio.run(baseline_samples(target("ref", run), base_probes, args.baseline_samples, seed + 7))
        aa_texts = asyncio.run(baseline_samples(target("ref", run), base_probes, args.baseline_samples, seed + 9))
        for name in POOLS:
            texts = asyncio.run(baseline_samples(target(name, run), base_probes, args.baseline_samples, seed + 7))
            base_flagged.setdefault(name, []).append(baseline_flags(ref_texts, texts, args.alpha))
        base_flagged.setdefault("A/A", []).append(baseline_flags(ref_texts, aa_texts, args.alpha))
        done = {n: sum(flagged[n, max(args.probe_counts)]) for n in others}
        print(f"run {run}/{args.runs}: {seconds[-1]:.0f}s; flagged so far (all probes) {done}", flush=True)

    per_probe_s = float(np.median(seconds)) / len(probes)
    rows = []
    for name in (*POOLS, "A/A"):
        rate = {k: float(np.mean(flagged[name, k])) for k in args.probe_counts}
        enough = next((k for k in args.probe_counts if rate[k] >= 0.95), None)
        rows.append({
            "pool": name, "kind": KINDS[name],
            **{f"flagged, {k} probes": rate[k] for k in args.probe_counts},
            "probes for 95%": enough if name in ("boost", "noisy") else "-",
            "seconds for 95%": round(enough * per_probe_s, 1) if enough and name in ("boost", "noisy") else "-",
            f"MMD-only ({len(base_probes)}x{args.baseline_samples})": float(np.mean(base_flagged[name])),
        })  # fmt: skip
    print_table(rows, title=f"{args.runs} runs, alpha {args.alpha}; {budget} requests per pool for the full canary")
    for name, counts in which.items():
        print(f"{name}: runs in which each metric drifted: {dict(counts)}")
    print(f"collection: median {np.median(seconds):.0f}s per run (4 pools and an A/A replay in parallel); "
          f"reproduce: .venv/bin/python bench/canary_detection.py --runs {args.runs} --samples {args.samples} "
          f"--concurrency {' '.join(map(str, args.concurrency))}")  # fmt: skip


if __name__ == "__main__":
    main()
