"""Per-pool figures over a window, read from the store: latency, errors, cost per token, prefix-cache hits.

The latency percentiles are over the ok requests of the window (linear interpolation, as numpy's default
and DuckDB's quantile_cont). A pool's cost over the window is price_per_hour x replicas x window
(collector/fleet/cost.py): a pool costs what it costs while it is up, busy or idle, so the unit costs divide the
whole window's cost by the tokens and requests the pool served in it. Prices and replicas come from the
`pools` table, the snapshot the collector writes of every pool it routes to when it starts.

Two cache hit ratios: the request side (sum of usage cached_tokens / sum of prompt_tokens over the ok
requests, what clients were served from the cache) and the server side (the pool's prefix-cache hit and
query counters, first and last scrape in the window: every request the pool saw, whoever sent it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.fleet.cost import pool_cost_usd, summarize_cost
from collector.scraper import PrefixCacheCounters, prefix_cache_hit_ratio
from collector.store.protocols import Queryable
from collector.vocabulary import Status
from engine.specs import PoolSpec

PERCENTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Window:
    """Requests started in [start, end); with a run id, only that run's. No start or end: the data's own span."""

    start: datetime | None = None
    end: datetime | None = None
    run_id: str | None = None

    @classmethod
    def last(cls, seconds: float, now: datetime | None = None) -> Window:
        end = now or datetime.now(UTC)
        return cls(end - timedelta(seconds=seconds), end)


@dataclass(frozen=True)
class PoolPrice:
    price_per_hour: float  # USD per replica-hour
    replicas: int


@dataclass(frozen=True)
class PoolStats:
    """What the store holds of one pool and revision in a window (one row of `_STATS_SQL`)."""

    pool: str
    revision: str | None
    hardware: str | None
    requests: int
    errors: int
    cancelled: int
    ttft_s: tuple[float, ...] | None  # at PERCENTILES; None without an ok request that has one
    tpot_s: tuple[float, ...] | None
    e2e_s: tuple[float, ...] | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    attributed_usd: float | None  # sum of the requests' cost_usd (busy-time shares)
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

    @property
    def ok(self) -> int:
        return self.stats.requests - self.stats.errors - self.stats.cancelled

    @property
    def error_rate(self) -> float:
        return self.stats.errors / self.stats.requests if self.stats.requests else 0.0


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
            "spec_json": json.dumps(spec.model_dump(mode="json")),
            "recorded_at": recorded_at,
        }
        for spec in specs
    ]


def report(
    stats: Iterable[PoolStats],
    prices: Mapping[tuple[str, str | None], PoolPrice],
    server_ratios: Mapping[str, float | None],
    window_s: float | None = None,
) -> list[PoolReport]:
    """Cost and cache figures per pool and revision. `window_s` None: each pool's own span, first request
    start to last request end (a run's duration)."""
    reports = []
    for s in stats:
        span = window_s if window_s is not None else max((s.last_end - s.first_start).total_seconds(), 0.0)
        price = prices.get((s.pool, s.revision))
        ok = s.requests - s.errors - s.cancelled
        cost = pool_cost_usd(price.price_per_hour, price.replicas, span) if price else None
        unit = (
            summarize_cost(cost, ok, s.completion_tokens, s.prompt_tokens + s.completion_tokens)
            if cost is not None
            else None
        )
        reports.append(
            PoolReport(
                stats=s,
                window_s=span,
                window_cost_usd=cost,
                usd_per_m_output_tokens=unit.usd_per_m_output_tokens if unit else None,
                usd_per_m_total_tokens=unit.usd_per_m_total_tokens if unit else None,
                usd_per_request=unit.usd_per_request if unit else None,
                request_cache_hit_ratio=s.cached_tokens / s.prompt_tokens if s.prompt_tokens else None,
                server_cache_hit_ratio=server_ratios.get(s.pool),
            )
        )
    return reports


def _where(window: Window, time_column: str) -> tuple[str, list[Any]]:
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if window.start is not None:
        clauses.append(f"{time_column} >= ?")
        params.append(window.start)
    if window.end is not None:
        clauses.append(f"{time_column} < ?")
        params.append(window.end)
    if window.run_id is not None and time_column == "started_at":
        clauses.append("run_id = ?")
        params.append(window.run_id)
    return " AND ".join(clauses), params


_OK = f"status = '{Status.ok}'"
# a template: {q} (the percentiles) and {where} are filled in by query_stats
_STATS_SQL = f"""
SELECT pool, revision, any_value(hardware) AS hardware,
    count(*) AS requests,
    count(*) FILTER (WHERE status = '{Status.error}') AS errors,
    count(*) FILTER (WHERE status = '{Status.cancelled}') AS cancelled,
    quantile_cont(ttft_s, {{q}}) FILTER (WHERE {_OK}) AS ttft_s,
    quantile_cont(tpot_s, {{q}}) FILTER (WHERE {_OK}) AS tpot_s,
    quantile_cont(e2e_s, {{q}}) FILTER (WHERE {_OK}) AS e2e_s,
    CAST(coalesce(sum(prompt_tokens) FILTER (WHERE {_OK}), 0) AS BIGINT) AS prompt_tokens,
    CAST(coalesce(sum(cached_tokens) FILTER (WHERE {_OK}), 0) AS BIGINT) AS cached_tokens,
    CAST(coalesce(sum(completion_tokens) FILTER (WHERE {_OK}), 0) AS BIGINT) AS completion_tokens,
    sum(cost_usd) AS attributed_usd,
    min(started_at) AS first_start,
    max(started_at + to_microseconds(CAST(coalesce(e2e_s, 0) * 1e6 AS BIGINT))) AS last_end
FROM requests WHERE {{where}}
GROUP BY pool, revision ORDER BY pool, revision
"""


def query_stats(store: Queryable, window: Window) -> list[PoolStats]:
    where, params = _where(window, "started_at")
    sql = _STATS_SQL.format(q=list(PERCENTILES), where=where)
    stats = []
    for row in store.query(sql, params).to_pylist():
        for key in ("ttft_s", "tpot_s", "e2e_s"):
            row[key] = tuple(row[key]) if row[key] is not None else None
        stats.append(PoolStats(**row))
    return stats


def query_prices(store: Queryable) -> dict[tuple[str, str | None], PoolPrice]:
    """The latest recorded price and replicas of every pool and revision."""
    rows = store.query(
        "SELECT pool, revision, arg_max(price_per_hour, recorded_at) AS price, arg_max(replicas, recorded_at) AS n "
        "FROM pools GROUP BY pool, revision"
    ).to_pylist()
    return {(r["pool"], r["revision"]): PoolPrice(r["price"], r["n"]) for r in rows}


_RATIO_SQL = """
WITH bounds AS (SELECT ?::TIMESTAMPTZ AS lo, ?::TIMESTAMPTZ AS hi, ?::BOOLEAN AS bracket), s AS (
    SELECT pool, sampled_at, value AS q, 0.0 AS h FROM pool_samples WHERE metric = 'prefix_cache_queries_total'
    UNION ALL
    SELECT pool, sampled_at, 0.0, value FROM pool_samples WHERE metric = 'prefix_cache_hits_total'
), scrapes AS (SELECT pool, sampled_at, sum(q) AS q, sum(h) AS h, count(*) AS n FROM s GROUP BY pool, sampled_at)
SELECT pool,
    coalesce(arg_max(struct_pack(q, h), sampled_at) FILTER (WHERE sampled_at <= lo),
             arg_min(struct_pack(q, h), sampled_at) FILTER (WHERE sampled_at > lo AND sampled_at < hi))
        AS before,
    coalesce(arg_min(struct_pack(q, h), sampled_at) FILTER (WHERE bracket AND sampled_at >= hi),
             arg_max(struct_pack(q, h), sampled_at) FILTER (WHERE sampled_at > lo AND sampled_at < hi))
        AS after
FROM scrapes, bounds WHERE n = 2 GROUP BY pool
"""


def query_server_ratios(
    store: Queryable, start: datetime | None, end: datetime | None, *, bracket_end: bool = False
) -> dict[str, float | None]:
    """Per pool: the prefix-cache hit ratio from the pool's counters at `start` (the last scrape at or before
    it, else the first inside the window) to those at `end` (the last scrape inside the window; with
    `bracket_end`, the first scrape at or after `end` when there is one: a run's own requests all counted)."""
    low, high = start or datetime.min.replace(tzinfo=UTC), end or datetime.max.replace(tzinfo=UTC)
    rows = store.query(_RATIO_SQL, [low, high, bracket_end])
    ratios: dict[str, float | None] = {}
    for r in rows.to_pylist():
        before, after = r["before"], r["after"]
        ratios[r["pool"]] = (
            prefix_cache_hit_ratio(
                PrefixCacheCounters(before["q"], before["h"]), PrefixCacheCounters(after["q"], after["h"])
            )
            if before and after
            else None
        )
    return ratios


def fleet_report(store: Queryable, window: Window) -> list[PoolReport]:
    """Every pool with requests in the window. The window's length sets the cost when it has both ends;
    otherwise (a run) each pool's own span of requests does, and the server-side ratio brackets the run."""
    window_s = (window.end - window.start).total_seconds() if window.start and window.end else None
    stats = query_stats(store, window)
    if not stats:
        return []
    start = window.start or min(s.first_start for s in stats)
    end = window.end or max(s.last_end for s in stats)
    ratios = query_server_ratios(store, start, end, bracket_end=window.end is None)
    return report(stats, query_prices(store), ratios, window_s)


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


def table_rows(reports: Sequence[PoolReport]) -> list[dict[str, object]]:
    """For print_table: milliseconds, dollars per million tokens, ratios."""
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
            "tpot_p50_ms": ms_at(r.stats.tpot_s, 0),
            "tpot_p99_ms": ms_at(r.stats.tpot_s, 2),
            "e2e_p50_ms": ms_at(r.stats.e2e_s, 0),
            "$/1M out tok": r.usd_per_m_output_tokens,
            "$/1M tok": r.usd_per_m_total_tokens,
            "$/req": r.usd_per_request,
            "hit req": r.request_cache_hit_ratio,
            "hit srv": r.server_cache_hit_ratio,
        }
        for r in reports
    ]
