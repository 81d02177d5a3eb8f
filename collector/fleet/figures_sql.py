"""The SQL behind collector/fleet/figures.py: the one row filter and the queries every figure comes from."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from collector.vocabulary import Status

PERCENTILES = (0.5, 0.9, 0.99)
OK = f"status = '{Status.ok}'"
# a row counts for goodput when it is not cancelled; it meets the SLO when ok and inside every bound
_GOOD = f"{OK} AND ttft_s <= ? AND ({{tpot}} <= ? OR {{tpot}} IS NULL) AND e2e_s <= ?"


class RowFilter(Protocol):
    @property
    def start(self) -> datetime | None: ...
    @property
    def end(self) -> datetime | None: ...
    @property
    def run_ids(self) -> tuple[str, ...]: ...
    @property
    def sources(self) -> tuple[str, ...]: ...
    @property
    def pools(self) -> tuple[str, ...]: ...


def rows_where(window: RowFilter) -> tuple[str, list[Any]]:
    """THE row filter: requests started in [start, end), of the given runs, sources and pools (() = any)."""
    clauses: list[str] = ["TRUE"]
    params: list[Any] = []
    if window.start is not None:
        clauses.append("started_at >= ?")
        params.append(window.start)
    if window.end is not None:
        clauses.append("started_at < ?")
        params.append(window.end)
    for column, values in (("run_id", window.run_ids), ("source", window.sources), ("pool", window.pools)):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params.extend(str(v) for v in values)
    return " AND ".join(clauses), params


def _q(column: str) -> str:
    return f"quantile_cont({column}, {list(PERCENTILES)}) FILTER (WHERE {OK})"


def _p50(column: str) -> str:
    return f"quantile_cont({column}, 0.5) FILTER (WHERE {OK})"


def _sum(column: str, extra: str = "") -> str:
    return f"CAST(coalesce(sum({column}) FILTER (WHERE {OK}{extra}), 0) AS BIGINT)"


_MULTI = f"{OK} AND completion_tokens >= 2"
# {revision} (the grouping), {where} filled in by stats_sql; the goodput bounds are parameters before the filter's
STATS_SQL = f"""
SELECT pool, {{revision}} AS revision, any_value(hardware) AS hardware,
    count(*) AS requests,
    count(*) FILTER (WHERE {OK}) AS ok,
    count(*) FILTER (WHERE status = '{Status.error}') AS errors,
    count(*) FILTER (WHERE status = '{Status.cancelled}') AS cancelled,
    count(*) FILTER (WHERE {OK} AND cached_tokens IS NULL) AS cache_unreported,
    {_q("ttft_s")} AS ttft, {_q("tpot_s")} AS tpot, {_q("e2e_s")} AS e2e, {_q("itl_p50_s")} AS itl,
    {_q("engine_tpot_s")} AS engine_tpot,
    {_p50("engine_queue_s")} AS queue_p50, {_p50("engine_prefill_s")} AS prefill_p50,
    {_p50("ttft_s - engine_queue_s - engine_prefill_s")} AS transport_p50, {_p50("gateway_s")} AS gateway_p50,
    {_sum("prompt_tokens")} AS prompt_tokens, {_sum("completion_tokens")} AS completion_tokens,
    {_sum("prompt_tokens", " AND cached_tokens IS NOT NULL")} AS reported_prompt_tokens,
    {_sum("cached_tokens", " AND cached_tokens IS NOT NULL")} AS cached_tokens,
    sum(cost_usd) FILTER (WHERE {OK}) AS attributed_usd,
    count(*) FILTER (WHERE {_MULTI}) AS multi_token,
    count(*) FILTER (WHERE {_MULTI} AND chunk_arrivals < token_events) AS coalesced,
    count(*) FILTER (WHERE {OK} AND engine_tpot_s IS NOT NULL) AS engine_rows,
    count(*) FILTER (WHERE status <> '{Status.cancelled}') AS good_counted,
    count(*) FILTER (WHERE {_GOOD.format(tpot="tpot_s")}) AS good_client,
    count(*) FILTER (WHERE {_GOOD.format(tpot="engine_tpot_s")}) AS good_engine,
    min(started_at) AS first_start,
    max(started_at + to_microseconds(CAST(coalesce(e2e_s, 0) * 1e6 AS BIGINT))) AS last_end
FROM requests WHERE {{where}}
GROUP BY ALL ORDER BY pool, revision
"""

PRICES_SQL = """
SELECT pool, {revision} AS revision, arg_max(price_per_hour, recorded_at) AS price,
    arg_max(replicas, recorded_at) AS replicas
FROM pools WHERE recorded_at <= ? GROUP BY ALL
"""

# at most ? values per (pool, revision): a seeded pseudo-random sample (by the hash of id and the seed), in SQL
VALUES_SQL = (
    f"SELECT pool, {{revision}} AS revision, {{column}} AS v FROM requests "
    f"WHERE {{where}} AND {OK} AND {{column}} IS NOT NULL "
    f"QUALIFY row_number() OVER (PARTITION BY pool, {{revision}} ORDER BY hash(id, ?::BIGINT)) <= ? "
    f"ORDER BY started_at, id"
)

# the server side: per pool, the counters at the last scrape at or before lo (else the first inside) and at the
# last scrape inside the window (with bracket, the first at or after hi: a run's own requests all counted)
RATIO_SQL = """
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

# the requests columns the figures read, for in_memory (client-side rows through the same SQL)
REQUEST_COLUMNS = {
    "id": "VARCHAR", "pool": "VARCHAR", "revision": "VARCHAR", "hardware": "VARCHAR", "source": "VARCHAR",
    "run_id": "VARCHAR", "status": "VARCHAR", "started_at": "TIMESTAMPTZ", "ttft_s": "DOUBLE", "tpot_s": "DOUBLE",
    "e2e_s": "DOUBLE", "itl_p50_s": "DOUBLE", "prompt_tokens": "BIGINT", "cached_tokens": "BIGINT",
    "completion_tokens": "BIGINT", "cost_usd": "DOUBLE", "engine_queue_s": "DOUBLE", "engine_prefill_s": "DOUBLE",
    "engine_tpot_s": "DOUBLE", "gateway_s": "DOUBLE", "token_events": "INTEGER", "chunk_arrivals": "INTEGER",
}  # fmt: skip
