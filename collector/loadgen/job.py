"""`inferwatch load` as a library call: a load run through the gateway, then its rows read back from the store.

The gateway records every request it serves; once the run is over this waits until the store holds a row
for each request the run sent (the gateway writes a row when the response has ended, which can be a moment
after the client read its last byte) and for the next scrape of the pools' server metrics, then reports per
pool from those rows (collector/fleet/report.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import httpx

from collector.client.credentials import client_headers
from collector.fleet.report import PoolReport, Window, fleet_report, last_scrape
from collector.fleet.slo import Slo
from collector.loadgen.runner import LoadConfig, LoadResult, run_load
from collector.loadgen.sweep import Step
from collector.loadgen.workloads import WorkItem, arith_workload, prefix_workload, random_workload
from collector.store.protocols import Queryable

Dataset = Literal["random", "prefix", "arith", "mixed"]
DATASETS: tuple[str, ...] = ("random", "prefix", "arith", "mixed")


class LoadJobError(RuntimeError):
    """The run could not start or its rows did not arrive; the message says what to do."""


@dataclass(frozen=True)
class WorkloadSpec:
    dataset: Dataset = "mixed"
    count: int = 64  # distinct work items (the run cycles through them)
    input_len: int = 64  # random: prompt tokens, BOS included
    output_len: int = 16  # random and prefix: max_tokens
    range_ratio: float = 0.0
    prefix_len: int = 256  # prefix: shared characters (whole 128-token KV blocks are what the cache reuses)
    suffix_len: int = 16
    num_prefixes: int = 2
    seed: int = 0


def build_workload(spec: WorkloadSpec) -> list[WorkItem]:
    """`mixed`: prefix-sharing prompts (cache hits) and arithmetic problems (graded answers), alternating."""
    if spec.count < 1:
        raise ValueError(f"count must be >= 1, got {spec.count}")
    if spec.dataset == "random":
        return random_workload(
            spec.count, input_len=spec.input_len, output_len=spec.output_len, range_ratio=spec.range_ratio,
            seed=spec.seed,
        )  # fmt: skip
    prefix = prefix_workload(
        spec.count, prefix_len=spec.prefix_len, suffix_len=spec.suffix_len, output_len=spec.output_len,
        num_prefixes=spec.num_prefixes, seed=spec.seed,
    )  # fmt: skip
    if spec.dataset == "prefix":
        return prefix
    arith = arith_workload(spec.count, seed=spec.seed)
    if spec.dataset == "arith":
        return arith
    if spec.dataset == "mixed":
        return [item for pair in zip(prefix, arith, strict=True) for item in pair][: spec.count]
    raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {spec.dataset!r}")


def gateway_pools(base_url: str) -> dict[str, str]:
    """pool -> model id, as the gateway's /v1/models lists them (each card's "inferwatch" key names its pool)."""
    url = base_url.rstrip("/") + "/v1/models"
    try:
        response = httpx.get(url, headers=client_headers("client"), timeout=10)
        response.raise_for_status()
        return {m["inferwatch"]["pool"]: m["id"] for m in response.json()["data"]}
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise LoadJobError(
            f"{url}: no model list ({exc}); is the collector up? `inferwatch collector status`"
        ) from None


def served_models(base_url: str, pools: Sequence[str] = ()) -> tuple[str, ...]:
    """The model ids of `pools` (all when empty) as the gateway's /v1/models lists them."""
    listed = gateway_pools(base_url)
    unknown = [p for p in pools if p not in listed]
    if unknown:
        raise LoadJobError(
            f"--pools: no pool {', '.join(map(repr, unknown))} at {base_url}; pools are {', '.join(listed)}"
        )
    return tuple(listed[p] for p in pools) if pools else tuple(listed.values())


def wait_for_rows(store: Queryable, run_id: str, expected: int, timeout_s: float = 30.0) -> int:
    """Polls until the store holds `expected` rows of the run; returns how many it holds at the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        (found,) = store.query("SELECT count(*) AS n FROM requests WHERE run_id = ?", [run_id]).column("n").to_pylist()
        if found >= expected or time.monotonic() > deadline:
            return int(found)
        time.sleep(0.1)


def run_through_gateway(
    config: LoadConfig,
    items: Sequence[WorkItem],
    store: Queryable,
    scrape_timeout_s: float = 12.0,
    slo: Slo | None = None,
) -> tuple[LoadResult, list[PoolReport]]:
    """Sends the load, waits for its rows and a scrape after it, and reads the run's figures (goodput against
    `slo`, when one is given)."""
    result = run_load(config, items)
    stored = wait_for_rows(store, config.run_id, len(result.requests))
    if stored != len(result.requests):
        raise LoadJobError(
            f"run {config.run_id}: sent {len(result.requests)} requests but the store holds {stored} of their rows; "
            "was the load sent to the collector's gateway (not straight to a pool)? see the collector log"
        )
    wait_for_scrape(store, datetime.now(UTC), scrape_timeout_s)
    return result, fleet_report(store, Window(run_ids=(config.run_id,)), slo=slo)


def wait_for_scrape(store: Queryable, after: datetime, timeout_s: float) -> bool:
    """Waits for the collector to scrape the pools' counters once more after `after`, so that the server-side
    cache hit ratio covers the whole run. False at once for pools that are never scraped."""
    deadline = time.monotonic() + timeout_s
    while (scraped := last_scrape(store)) is not None:
        if scraped >= after:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return False


@dataclass(frozen=True)
class SweepStep:
    rate: float  # requests/s offered in all
    result: LoadResult
    reports: list[PoolReport]

    def steps(self) -> dict[str, Step]:
        """Per pool, the step as collector/loadgen/sweep.py judges it: its share of the offered rate (the models
        share it alike, round-robin) and what the store holds of it."""
        share = self.rate / max(len(self.reports), 1)
        out = {}
        for r in self.reports:
            f = r.figures
            served = r.ok / f.span_s if f is not None and f.span_s > 0 else None
            out[r.stats.pool] = Step(
                share, served, r.stats.ttft_s[0] if r.stats.ttft_s else None, f.value("queue_p50") if f else None,
                f.value("goodput") if f else None, r.usd_per_m_total_tokens,
            )  # fmt: skip
        return out


def sweep_through_gateway(
    config: LoadConfig, items: Sequence[WorkItem], store: Queryable, rates: Sequence[float], slo: Slo,
    on_step: Callable[[SweepStep], None] | None = None,
) -> list[SweepStep]:  # fmt: skip
    """One load run per rate (rising), each its own run id, each read back from the store like a plain run."""
    if not rates or any(not (r > 0 and r != float("inf")) for r in rates) or list(rates) != sorted(rates):
        raise ValueError(f"--sweep: give rising finite rates in requests/s, e.g. 2,4,8; got {list(rates)}")
    done = []
    for i, rate in enumerate(rates):
        step_config = replace(config, rate=rate, run_id=f"{config.run_id}-{i + 1}")
        result, reports = run_through_gateway(step_config, items, store, slo=slo)
        done.append(SweepStep(rate, result, reports))
        if on_step is not None:
            on_step(done[-1])
    return done
