"""A canary run: every probe to the reference and to each pool, in every mode; A/A calibration; verdicts.

1. Collect (canary/client.py, through the gateway, pools in parallel): teacher-forced scores; greedy outputs
   at each concurrency of the batch sweep (some faults only show in larger batches); seeded samples at a
   production temperature for the probes that have an answer (and a few others).
2. Calibrate: the reference answers a second time with other seeds and batch mixes (teacher-forced at the
   largest concurrency, the sweep in reverse order); each metric's per-probe values of that A/A comparison
   are its null. Kept in `<home>/canary/` per reference pool, revision and probe sets; reused until the
   reference's revision changes (or `recalibrate`).
3. Judge each pool's metrics against their null (canary/analysis.py) and return rows for the `probes` and
   `drift` tables.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from canary.analysis import (
    DriftResult,
    PerProbe,
    PoolAnswers,
    greedy,
    judge,
    judge_sampled,
    sampled,
    teacher_forced,
    unexpected,
)
from canary.client import Generated, PoolClient, Scored, gather_bounded
from canary.probes import Probe, ProbeSet
from collector.client.targets import PoolTarget
from collector.vocabulary import DriftVerdict

Log = Callable[[str], None]
MODES = {
    "tf_mean_kl": "teacher_forced", "tf_confident_flips": "teacher_forced", "greedy_divergence": "greedy",
    "greedy_hard_mismatch": "greedy", "self_inconsistency": "greedy", "unexpected_chars": "greedy",
    "sampled_answer_shift": "sampled",
}  # fmt: skip


@dataclass(frozen=True)
class CanaryConfig:
    reference: str
    pools: tuple[str, ...]
    concurrencies: tuple[int, ...] = (1, 4, 16)
    samples: int = 16  # per sampled probe
    sampled_probes: int = 12  # how many probes are sampled (those with an answer first)
    temperature: float = 1.0
    top_k: int = 5
    prompt_top_k: int = 20
    alpha: float = 0.05
    seed: int = 0
    permutations: int = 300

    def __post_init__(self) -> None:
        if self.reference in self.pools:
            raise ValueError(f"pools: the reference {self.reference!r} is compared with itself by the A/A run")
        if not self.pools:
            raise ValueError("pools: name at least one pool to compare with the reference")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.samples < 2 or any(c < 1 for c in self.concurrencies) or not self.concurrencies:
            raise ValueError("samples must be >= 2 and concurrencies >= 1")


@dataclass(frozen=True)
class Calibration:
    reference: str
    revision: str
    probe_sets: tuple[str, ...]
    null: Mapping[str, list[float]]  # metric -> per-probe A/A values
    created_at: str

    @classmethod
    def path(cls, home: Path, reference: str, revision: str, probe_sets: Sequence[str]) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{reference}-{revision}")
        return home / "canary" / f"calibration-{safe}-{'+'.join(probe_sets)}.json"

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Calibration | None:
        try:
            raw = json.loads(path.read_text())
            return cls(raw["reference"], raw["revision"], tuple(raw["probe_sets"]), raw["null"], raw["created_at"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable: calibrate again


@dataclass
class PoolDrift:
    """One pool's drift results against the reference."""

    pool: str
    results: list[DriftResult] = field(default_factory=list)

    @property
    def drifting(self) -> list[DriftResult]:
        return [r for r in self.results if r.verdict == DriftVerdict.drift]


@dataclass
class CanaryRun:
    run_id: str
    reference: str
    calibration: Calibration
    reports: list[PoolDrift]
    probe_rows: list[dict[str, Any]]
    drift_rows: list[dict[str, Any]]


def _sampled_probes(probes: Sequence[Probe], count: int) -> list[Probe]:
    answered = [p for p in probes if p.expected is not None]
    others = [p for p in probes if p.expected is None]
    return (answered[: max(count - count // 3, 1)] + others)[:count]


async def collect(
    client: PoolClient, probes: Sequence[Probe], config: CanaryConfig, *, seed: int, reverse: bool = False
) -> PoolAnswers:
    """Everything one pool answers. `reverse`: the A/A replay (other batch mixes and order)."""
    tf_concurrency = max(config.concurrencies) if reverse else min(4, max(config.concurrencies))
    scored: list[Scored] = await gather_bounded([client.score(p, config.prompt_top_k) for p in probes], tf_concurrency)
    greedy_out: dict[int, dict[str, Generated]] = {}
    for c in sorted(config.concurrencies, reverse=reverse):
        outs = await gather_bounded([client.generate(p, 0.0, config.top_k, concurrency=c) for p in probes], c)
        greedy_out[c] = {o.probe_id: o for o in outs}
    chosen = _sampled_probes(probes, config.sampled_probes)
    jobs = [
        client.generate(p, config.temperature, config.top_k, seed=seed + i)
        for p in chosen
        for i in range(config.samples)
    ]
    drawn: list[Generated] = await gather_bounded(jobs, max(config.concurrencies))
    samples: dict[str, list[Generated]] = {}
    for out in drawn:
        samples.setdefault(out.probe_id, []).append(out)
    return PoolAnswers(client.target.pool, {s.probe_id: s for s in scored}, greedy_out, samples)


def per_probe_metrics(reference: PoolAnswers, pool: PoolAnswers, probes: Mapping[str, Probe]) -> list[PerProbe]:
    return [*teacher_forced(reference, pool), *greedy(reference, pool, probes), unexpected(pool, probes)]


def calibrate(first: PoolAnswers, second: PoolAnswers, probes: Mapping[str, Probe], revision: str,
              probe_sets: tuple[str, ...]) -> Calibration:  # fmt: skip
    null = {m.metric: list(m.values.values()) for m in per_probe_metrics(first, second, probes)}
    return Calibration(first.pool, revision, probe_sets, null, datetime.now(UTC).isoformat())


def evaluate(
    reference: PoolAnswers,
    pool: PoolAnswers,
    probes: Mapping[str, Probe],
    calibration: Calibration,
    config: CanaryConfig,
) -> PoolDrift:
    results = [
        judge(m, calibration.null.get(m.metric, []), config.alpha) for m in per_probe_metrics(reference, pool, probes)
    ]
    results.append(judge_sampled(sampled(reference, pool, config.alpha, config.permutations), config.alpha))
    return PoolDrift(pool.pool, results)


def probe_rows(run_id: str, reference: str, answers: PoolAnswers, now: datetime) -> list[dict[str, Any]]:
    base = {"run_id": run_id, "pool": answers.pool, "reference_pool": reference, "recorded_at": now}
    rows = [
        {**base, "probe_id": s.probe_id, "mode": "teacher_forced", "seed": None, "tokens_json": "[]",
         "top_logprobs_json": json.dumps(s.positions)}
        for s in answers.scored.values()
    ]  # fmt: skip
    outputs = [(f"greedy@{c}", o) for c, outs in answers.greedy.items() for o in outs.values()]
    outputs += [("sampled", o) for outs in answers.samples.values() for o in outs]
    rows += [
        {**base, "probe_id": o.probe_id, "mode": mode, "seed": o.seed,
         "tokens_json": json.dumps({"text": o.text, "tokens": o.tokens}), "top_logprobs_json": json.dumps(o.top)}
        for mode, o in outputs
    ]  # fmt: skip
    return rows


def drift_rows(run_id: str, report: PoolDrift, now: datetime) -> list[dict[str, Any]]:
    return [
        {"run_id": run_id, "pool": report.pool, "metric": r.metric, "value": r.value, "band_low": 0.0,
         "band_high": r.band_high if r.band_high is None or r.band_high != float("inf") else None,
         "p_value": r.p_value, "verdict": r.verdict.value,
         "evidence_json": json.dumps({"mode": MODES[r.metric], "critical": r.critical, "probe": r.probe,
                                      "evidence": r.evidence}),
         "recorded_at": now}
        for r in report.results
    ]  # fmt: skip


@dataclass(frozen=True)
class CollectJob:
    """What one worker asks one pool: the canary's own run (seed) or the reference's A/A replay (reverse)."""

    target: PoolTarget
    seed: int
    reverse: bool = False


CollectAll = Callable[[Sequence[CollectJob], Sequence[Probe], CanaryConfig], list[PoolAnswers]]


async def _collect_job(job: CollectJob, probes: Sequence[Probe], config: CanaryConfig) -> PoolAnswers:
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=httpx.Limits(max_connections=32)) as http:
        return await collect(PoolClient(job.target, http), probes, config, seed=job.seed, reverse=job.reverse)


def collect_one(job: CollectJob, probes: Sequence[Probe], config: CanaryConfig) -> PoolAnswers:
    """One job to completion, in its own event loop (what a Ray task runs)."""
    return asyncio.run(_collect_job(job, probes, config))


def collect_in_process(jobs: Sequence[CollectJob], probes: Sequence[Probe], config: CanaryConfig) -> list[PoolAnswers]:
    async def everything() -> list[PoolAnswers]:
        return list(await asyncio.gather(*(_collect_job(j, probes, config) for j in jobs)))

    return asyncio.run(everything())


def run_canary(
    targets: Mapping[str, PoolTarget],
    probe_sets: Sequence[ProbeSet],
    config: CanaryConfig,
    *,
    reference_revision: str,
    calibration_path: Path,
    collect_all: CollectAll = collect_in_process,
    recalibrate: bool = False,
    log: Log = print,
) -> CanaryRun:
    """`targets` maps pool -> PoolTarget and holds the reference and every pool of the config."""
    probes = [p for s in probe_sets for p in s.probes]
    by_id = {p.id: p for p in probes}
    names = tuple(s.name for s in probe_sets)
    run_id = next(iter(targets.values())).run_id
    calibration = None if recalibrate else Calibration.load(calibration_path)
    if calibration is not None and (calibration.revision != reference_revision or calibration.probe_sets != names):
        calibration = None
    sweep = ", ".join(map(str, config.concurrencies))
    log(f"canary {run_id}: {len(probes)} probes ({', '.join(names)}) to {config.reference} and "
        f"{', '.join(config.pools)}; greedy at concurrency {sweep}")  # fmt: skip
    jobs = [CollectJob(targets[p], config.seed) for p in (config.reference, *config.pools)]
    if calibration is None:
        log(f"calibrating: an A/A run of {config.reference} (other seeds, reversed batch sweep)")
        jobs.append(CollectJob(targets[config.reference], config.seed + 100_000, reverse=True))
    answers = collect_all(jobs, probes, config)
    reference = answers[0]
    if calibration is None:
        calibration = calibrate(reference, answers[-1], by_id, reference_revision, names)
        calibration.save(calibration_path)
        log(f"calibration saved: {calibration_path}")
    now = datetime.now(UTC)
    reports = [evaluate(reference, a, by_id, calibration, config) for a in answers[1 : 1 + len(config.pools)]]
    rows = [r for a in answers[: 1 + len(config.pools)] for r in probe_rows(run_id, config.reference, a, now)]
    drift = [r for report in reports for r in drift_rows(run_id, report, now)]
    return CanaryRun(run_id, config.reference, calibration, reports, rows, drift)


def table_rows(run: CanaryRun) -> list[dict[str, object]]:
    return [
        {"pool": report.pool, "mode": MODES[r.metric], "metric": r.metric + (" *" if r.critical else ""),
         "value": r.value, "band": r.band_high, "p_value": r.p_value, "verdict": r.verdict.value,
         "probe": r.probe if r.verdict == DriftVerdict.drift else "",
         "evidence": r.evidence if r.verdict == DriftVerdict.drift else ""}
        for report in run.reports
        for r in report.results
    ]  # fmt: skip
