"""Per-pool figures over a window as the fleet surfaces show them (fleet CLI, load runs, the demo, alerts, the
dashboard, the summary): a view of collector/fleet/figures.py, where every figure is computed once.

The latency percentiles are over the ok requests of the window (linear interpolation, as numpy's default
and DuckDB's quantile_cont). A pool's cost over the window is price_per_hour x replicas x window
(collector/fleet/cost.py): a pool costs what it costs while it is up, busy or idle, so the unit costs divide the
whole window's cost by the tokens and requests the pool served in it. Prices and replicas come from the
`pools` table, the snapshot the collector writes of every pool it routes to when it starts (the last one at or
before the window's end).

Two cache hit ratios: the request side (sum of usage cached_tokens / sum of prompt_tokens over the ok
requests that report cached tokens, what clients were served from the cache) and the server side (the pool's
prefix-cache hit and query counters, first and last scrape in the window: every request the pool saw, whoever
sent it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector.fleet.figures import Figures, PoolPrice, Window, pool_figures, prices_at
from collector.fleet.figures_sql import PERCENTILES
from collector.fleet.slo import Slo
from collector.store.protocols import Queryable
from engine.specs import PoolSpec

__all__ = ["PERCENTILES", "PoolPrice", "PoolReport", "PoolStats", "Window", "cost_rows", "fleet_report", "latency_rows",
           "table_rows"]  # fmt: skip


@dataclass(frozen=True)
class PoolStats:
    """What the store holds of one pool and revision in a window (from its Figures)."""

    pool: str
    revision: str | None
    hardware: str | None
    requests: int
    errors: int
    cancelled: int
    ttft_s: tuple[float, ...] | None  # at PERCENTILES; None without an ok request that has one
    tpot_s: tuple[float, ...] | None  # the judged TPOT (Figures.tpot_basis: the client's, or the engine's)
    e2e_s: tuple[float, ...] | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    attributed_usd: float | None  # sum of the ok requests' cost_usd (busy-time shares)
    first_start: datetime
    last_end: datetime


@dataclass(frozen=True)
class PoolReport:
    stats: PoolStats
    window_s: float
    window_cost_usd: float | None  # None: the pool's price is not in the store
    usd_per_m_output_tokens: float | None
    usd_per_m_total_tokens: float | None
    usd_per_request: float | None
    request_cache_hit_ratio: float | None
    server_cache_hit_ratio: float | None
    figures: Figures | None = None  # everything else: goodput, the engine's split, why a figure is missing

    @property
    def ok(self) -> int:
        return self.stats.requests - self.stats.errors - self.stats.cancelled

    @property
    def error_rate(self) -> float:
        return self.stats.errors / self.stats.requests if self.stats.requests else 0.0


def from_figures(f: Figures) -> PoolReport:
    t = f.tokens
    stats = PoolStats(
        pool=f.key.pool, revision=f.key.revision, hardware=f.hardware, requests=f.counts.requests,
        errors=f.counts.errors, cancelled=f.counts.cancelled, ttft_s=f.latency["ttft"],
        tpot_s=f.latency["judged_tpot"], e2e_s=f.latency["e2e"], prompt_tokens=t.prompt, cached_tokens=t.cached,
        completion_tokens=t.completion, attributed_usd=f.usd.attributed,
        first_start=f.first_start or datetime.min.replace(tzinfo=UTC),
        last_end=f.last_end or datetime.min.replace(tzinfo=UTC),
    )  # fmt: skip
    return PoolReport(
        stats, f.span_s, f.usd.window_cost, f.usd.per_mtok_out, f.usd.per_mtok, f.usd.per_request,
        f.cache.request_ratio, f.cache.server_ratio, f,
    )  # fmt: skip


def pools_rows(specs: Iterable[PoolSpec], recorded_at: datetime) -> list[dict[str, Any]]:
    """The `pools` table snapshot of pool specs (prices resolved, as load_pools gives them)."""
    return [
        {
            "pool": spec.name,
            "revision": spec.revision,
            "hardware": spec.hardware,
            "accelerator": spec.accelerator,
            "model": spec.model_id,
            "dtype": spec.dtype,
            "replicas": spec.replicas,
            "price_per_hour": spec.price_per_hour or 0.0,
            "stream_batch_ms": spec.stream_batch_interval_ms,
            "spec_json": json.dumps(spec.model_dump(mode="json")),
            "recorded_at": recorded_at,
        }
        for spec in specs
    ]


def fleet_report(store: Queryable, window: Window, *, slo: Slo | None = None) -> list[PoolReport]:
    """Every pool with requests in the window (collector/fleet/figures.py pool_figures). The window's length
    sets the cost when it has both ends; otherwise (a run) each pool's own span of requests does, and the
    server-side ratio brackets the run."""
    return [from_figures(f) for f in pool_figures(store, window, slo=slo)]


def latest_prices(store: Queryable) -> dict[tuple[str, str | None], PoolPrice]:
    """The latest recorded price and replicas of every pool and revision."""
    prices = prices_at(store, datetime.max.replace(tzinfo=UTC))
    return {(k.pool, k.revision): p for k, p in prices.items()}


def last_scrape(store: Queryable) -> datetime | None:
    """When the prefix-cache counters were last scraped (None: never, e.g. pools without server metrics)."""
    rows = store.query("SELECT max(sampled_at) AS t FROM pool_samples WHERE metric = 'prefix_cache_queries_total'")
    found: datetime | None = rows.column("t")[0].as_py()
    return found


def query_latest_drift(store: Queryable) -> list[dict[str, Any]]:
    """Per pool and drift metric, the row of the latest canary run (pool, metric, value, verdict)."""
    rows: list[dict[str, Any]] = store.query(
        "SELECT pool, metric, arg_max_null(value, recorded_at) AS value, arg_max(verdict, recorded_at) AS verdict "
        "FROM drift GROUP BY pool, metric ORDER BY pool, metric"
    ).to_pylist()
    return rows


def query_latest_evals(store: Queryable) -> list[dict[str, Any]]:
    """Per eval suite and pool, the summary of its latest run (suite, pool, accuracy, delta, verdict)."""
    rows: list[dict[str, Any]] = store.query(
        "SELECT suite, pool, arg_max_null(accuracy, recorded_at) AS accuracy, "
        "arg_max_null(delta, recorded_at) AS delta, arg_max(verdict, recorded_at) AS verdict "
        "FROM eval_runs GROUP BY suite, pool ORDER BY suite, pool"
    ).to_pylist()
    return rows


def query_latest_gates(store: Queryable) -> list[dict[str, Any]]:
    """Per candidate and baseline, the latest gate (candidate, baseline, verdict, score, exit_code)."""
    rows: list[dict[str, Any]] = store.query(
        "SELECT candidate, baseline, arg_max(verdict, decided_at) AS verdict, "
        "arg_max_null(score, decided_at) AS score, arg_max(exit_code, decided_at) AS exit_code "
        "FROM gates GROUP BY candidate, baseline ORDER BY candidate, baseline"
    ).to_pylist()
    return rows


def ms_at(values: Sequence[float] | None, i: int) -> float | None:
    """The i-th of a pool's (p50, p90, p99) seconds, in milliseconds."""
    return values[i] * 1e3 if values else None


def _figure_ms(r: PoolReport, name: str) -> float | None:
    value = r.figures.value(name) if r.figures else None
    return value * 1e3 if value is not None else None


def latency_rows(reports: Sequence[PoolReport]) -> list[dict[str, object]]:
    """For print_table: counts and latency in milliseconds. `tpot from`: whose TPOT the tpot columns are (the
    client's, or the engine's where the pool coalesced its stream); queue, prefill and transport: TTFT's parts
    (the engine's queue and prefill; the rest is transport and batching); goodput: the share of requests within
    the SLO, when one was given."""
    return [
        {
            "pool": r.stats.pool,
            "revision": r.stats.revision,
            "hardware": r.stats.hardware,
            "requests": r.stats.requests,
            "errors": r.stats.errors,
            "cancelled": r.stats.cancelled,
            "ttft_p50_ms": ms_at(r.stats.ttft_s, 0),
            "ttft_p90_ms": ms_at(r.stats.ttft_s, 1),
            "ttft_p99_ms": ms_at(r.stats.ttft_s, 2),
            "queue_p50_ms": _figure_ms(r, "queue_p50"),
            "prefill_p50_ms": _figure_ms(r, "prefill_p50"),
            "transport_p50_ms": _figure_ms(r, "transport_p50"),
            "tpot_p50_ms": ms_at(r.stats.tpot_s, 0),
            "tpot_p99_ms": ms_at(r.stats.tpot_s, 2),
            "tpot from": r.figures.tpot_basis if r.figures else None,
            "e2e_p50_ms": ms_at(r.stats.e2e_s, 0),
            "goodput": r.figures.value("goodput") if r.figures else None,
        }
        for r in reports
    ]


def cost_rows(reports: Sequence[PoolReport]) -> list[dict[str, object]]:
    """For print_table: dollars per million tokens and per request, cache hit ratios (request and server side)."""
    return [
        {
            "pool": r.stats.pool,
            "revision": r.stats.revision,
            "window_s": r.window_s,
            "$ in window": r.window_cost_usd,
            "$/1M out tok": r.usd_per_m_output_tokens,
            "$/1M tok": r.usd_per_m_total_tokens,
            "$/req": r.usd_per_request,
            "hit req": r.request_cache_hit_ratio,
            "hit srv": r.server_cache_hit_ratio,
        }
        for r in reports
    ]


def table_rows(reports: Sequence[PoolReport]) -> list[dict[str, object]]:
    """Latency and cost in one row per pool (for a chosen subset of columns, as the demo shows)."""
    return [{**lat, **cost} for lat, cost in zip(latency_rows(reports), cost_rows(reports), strict=True)]
