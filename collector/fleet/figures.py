"""Every fleet figure, defined once: each surface (fleet CLI, alerts, dashboards, gate, summary, /metrics) reads
these. The definitions, by figure key, are in docs/METRICS.md ("Figures"); the SQL is in figures_sql.py.

Rows: requests started in [start, end) of the Window, of its runs, sources and pools. Latency percentiles are
over the ok rows with a value (linear, DuckDB quantile_cont). Provisioned cost is price (as recorded at or
before the window's end) x replicas x span; the span is the window's length when it has both ends, else the
pool's own first start to last end.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from collector.fleet import figures_sql as q
from collector.fleet.cost import pool_cost_usd
from collector.fleet.slo import Slo
from collector.scraper import PrefixCacheCounters, prefix_cache_hit_ratio
from collector.store.protocols import Queryable

LATENCY = ("ttft", "tpot", "e2e", "itl", "engine_tpot", "judged_tpot")
_QUANTILES = (("p50", 0), ("p90", 1), ("p99", 2))
FIGURE_KEYS: tuple[str, ...] = (
    "requests",
    "ok",
    "errors",
    "cancelled",
    "error_rate",
    "cancel_rate",
    *(f"{m}_{p}" for m in LATENCY for p, _ in _QUANTILES),
    "queue_p50",
    "prefill_p50",
    "transport_p50",
    "gateway_p50",
    "usd_per_mtok",
    "usd_per_mtok_out",
    "usd_per_request",
    "attributed_usd_per_mtok",
    "cache_hit_ratio",
    "server_cache_hit_ratio",
    "goodput",
    "goodput_rps",
)
VALUE_METRICS = {"ttft": "ttft_s", "tpot": "tpot_s", "e2e": "e2e_s", "engine_tpot": "engine_tpot_s"}


@dataclass(frozen=True)
class Window:
    """Requests started in [start, end); run_ids, sources, pools: only those (() = any). No start or end: the
    data's own span. by_revision: one Figures per (pool, revision), else per pool (revision None)."""

    start: datetime | None = None
    end: datetime | None = None
    run_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    by_revision: bool = True

    @classmethod
    def last(cls, seconds: float, now: datetime | None = None, **kw: Any) -> Window:
        end = now or datetime.now(UTC)
        return cls(end - timedelta(seconds=seconds), end, **kw)

    @property
    def length_s(self) -> float | None:
        return (self.end - self.start).total_seconds() if self.start and self.end else None

    def describe_sources(self) -> str:
        return ",".join(str(s) for s in self.sources) or "all"


@dataclass(frozen=True)
class Key:
    pool: str
    revision: str | None


@dataclass(frozen=True)
class Counts:
    requests: int
    ok: int
    errors: int
    cancelled: int
    cache_unreported: int  # ok rows without cached_tokens


@dataclass(frozen=True)
class Tokens:
    prompt: int  # ok rows
    completion: int
    reported_prompt: int  # ok rows that report cached_tokens
    cached: int


@dataclass(frozen=True)
class Usd:
    window_cost: float | None  # None: no price recorded at or before the window's end
    attributed: float | None  # sum of the ok rows' cost_usd
    per_mtok: float | None
    per_mtok_out: float | None
    per_request: float | None
    attributed_per_mtok: float | None


@dataclass(frozen=True)
class Cache:
    request_ratio: float | None
    server_ratio: float | None


@dataclass(frozen=True)
class Goodput:
    slo: Slo
    met: int  # ok rows within every bound
    counted: int  # rows not cancelled (errors are misses)
    ratio: float | None
    per_s: float | None


@dataclass(frozen=True)
class Engine:
    queue_p50: float | None
    prefill_p50: float | None
    transport_p50: float | None  # ttft - queue - prefill, per row
    gateway_p50: float | None
    tpot: tuple[float, float, float] | None
    rows: int  # ok rows with engine timings
    coalesced: int  # ok rows with >= 2 tokens delivered in fewer reads than token events
    multi_token: int  # ok rows with >= 2 completion tokens


@dataclass(frozen=True)
class Figures:
    key: Key
    hardware: str | None
    window: Window
    span_s: float
    counts: Counts
    latency: dict[str, tuple[float, float, float] | None]
    tokens: Tokens
    usd: Usd
    cache: Cache
    goodput: Goodput | None
    engine: Engine
    tpot_basis: str | None  # what judged TPOT is: "client", "engine", or None (no trustworthy TPOT)
    missing: dict[str, str] = field(default_factory=dict)
    first_start: datetime | None = None
    last_end: datetime | None = None

    def value(self, name: str) -> float | None:
        if name not in FIGURE_KEYS:
            raise KeyError(f"unknown figure {name!r}; the figures are {', '.join(FIGURE_KEYS)}")
        return _values(self)[name]

    def reason(self, name: str) -> str | None:
        return self.missing.get(name) if self.value(name) is None else None


def _ratio(num: float | None, den: float, scale: float = 1.0) -> float | None:
    return num / den * scale if num is not None and den else None


def _values(f: Figures) -> dict[str, float | None]:
    c, u, g, e = f.counts, f.usd, f.goodput, f.engine
    values: dict[str, float | None] = {
        "requests": c.requests, "ok": c.ok, "errors": c.errors, "cancelled": c.cancelled,
        "error_rate": _ratio(c.errors, c.requests), "cancel_rate": _ratio(c.cancelled, c.requests),
        "queue_p50": e.queue_p50, "prefill_p50": e.prefill_p50, "transport_p50": e.transport_p50,
        "gateway_p50": e.gateway_p50, "usd_per_mtok": u.per_mtok, "usd_per_mtok_out": u.per_mtok_out,
        "usd_per_request": u.per_request, "attributed_usd_per_mtok": u.attributed_per_mtok,
        "cache_hit_ratio": f.cache.request_ratio, "server_cache_hit_ratio": f.cache.server_ratio,
        "goodput": g.ratio if g else None, "goodput_rps": g.per_s if g else None,
    }  # fmt: skip
    for metric in LATENCY:
        triple = f.latency.get(metric)
        for name, i in _QUANTILES:
            values[f"{metric}_{name}"] = triple[i] if triple else None
    return values


def _triple(value: Any) -> tuple[float, float, float] | None:
    return (float(value[0]), float(value[1]), float(value[2])) if value is not None else None


def _basis(pool: str, r: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Which TPOT to judge: the client's unless most multi-token rows were coalesced; then the engine's."""
    if not r["multi_token"] or 2 * r["coalesced"] <= r["multi_token"]:
        return "client", None
    share = f"{r['coalesced']} of {r['multi_token']} ok requests with >= 2 tokens arrived coalesced"
    if r["engine_rows"]:
        return "engine", f"pool {pool} coalesces its stream ({share}): judged TPOT is the engine's"
    return None, (
        f"pool {pool} coalesces its stream and sends no per-request metrics (vLLM --enable-per-request-metrics)"
    )


@dataclass(frozen=True)
class PoolPrice:
    price_per_hour: float  # USD per replica-hour
    replicas: int


def prices_at(store: Queryable, when: datetime, *, by_revision: bool = True) -> dict[Key, PoolPrice]:
    """Each pool's price and replicas as last recorded at or before `when` (a later change is not history)."""
    sql = q.PRICES_SQL.format(revision="revision" if by_revision else "CAST(NULL AS VARCHAR)")
    rows = store.query(sql, [when]).to_pylist()
    return {Key(r["pool"], r["revision"]): PoolPrice(r["price"], r["replicas"]) for r in rows}


def server_cache_ratios(
    store: Queryable, start: datetime | None, end: datetime | None, *, bracket_end: bool = False
) -> dict[str, float | None]:
    """Per pool: the prefix-cache hit ratio of the pool's counters from the last scrape at or before `start`
    (else the first inside the window) to the last scrape inside it (with `bracket_end`, the first at or
    after `end`): every request the pool's engine saw, whoever sent it."""
    low, high = start or datetime.min.replace(tzinfo=UTC), end or datetime.max.replace(tzinfo=UTC)
    ratios: dict[str, float | None] = {}
    for r in store.query(q.RATIO_SQL, [low, high, bracket_end]).to_pylist():
        before, after = r["before"], r["after"]
        ratios[r["pool"]] = (
            prefix_cache_hit_ratio(
                PrefixCacheCounters(before["q"], before["h"]), PrefixCacheCounters(after["q"], after["h"])
            )
            if before and after
            else None
        )
    return ratios


def _stats(store: Queryable, window: Window, slo: Slo | None) -> list[dict[str, Any]]:
    where, params = q.rows_where(window)
    revision = "revision" if window.by_revision else "CAST(NULL AS VARCHAR)"
    bounds = list((slo or Slo()).bounds_s())
    rows: list[dict[str, Any]] = (
        store.query(q.STATS_SQL.format(revision=revision, where=where), bounds + bounds + params)
    ).to_pylist()
    return rows


def _usd(r: Mapping[str, Any], price: PoolPrice | None, span_s: float) -> Usd:
    cost = pool_cost_usd(price.price_per_hour, price.replicas, span_s) if price else None
    total = r["prompt_tokens"] + r["completion_tokens"]
    return Usd(
        window_cost=cost,
        attributed=r["attributed_usd"],
        per_mtok=_ratio(cost, total, 1e6),
        per_mtok_out=_ratio(cost, r["completion_tokens"], 1e6),
        per_request=_ratio(cost, r["ok"]),
        attributed_per_mtok=_ratio(r["attributed_usd"], total, 1e6),
    )


def _missing(f: Figures, priced_at: datetime, has_slo: bool, basis_reason: str | None) -> dict[str, str]:
    pool, why = f.key.pool, {}
    for metric, column in (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("e2e", "e2e_s"), ("itl", "itl_p50_s")):
        why[metric] = f"no ok request of pool {pool} in the window has {column}"
    why["engine_tpot"] = why["queue_p50"] = why["prefill_p50"] = why["transport_p50"] = (
        f"pool {pool} sent no per-request metrics in the window (vLLM --enable-per-request-metrics)"
    )
    why["judged_tpot"] = basis_reason or why["tpot"]
    missing = {f"{m}_{p}": why[m] for m in LATENCY for p, _ in _QUANTILES}
    missing |= {k: why[k] for k in ("queue_p50", "prefill_p50", "transport_p50")}
    missing["gateway_p50"] = f"no ok request of pool {pool} in the window has gateway_s"
    no_price = f"no price recorded for pool {pool} at or before {priced_at.isoformat()}"
    no_tokens = f"pool {pool} served no tokens in an ok request in the window"
    for key in ("usd_per_mtok", "usd_per_mtok_out", "usd_per_request"):
        missing[key] = no_price if f.usd.window_cost is None else no_tokens
    missing["usd_per_request"] = no_price if f.usd.window_cost is None else f"pool {pool} has no ok request"
    missing["attributed_usd_per_mtok"] = no_tokens if f.usd.attributed is not None else f"no cost_usd on pool {pool}"
    missing["cache_hit_ratio"] = f"pool {pool} does not report cached tokens"
    missing["server_cache_hit_ratio"] = f"no prefix-cache scrapes of pool {pool} bracket the window"
    missing["goodput"] = missing["goodput_rps"] = "no SLO given" if not has_slo else f"pool {pool}: no request"
    missing["error_rate"] = missing["cancel_rate"] = f"pool {pool}: no request"
    return missing


def _figures(r: dict[str, Any], window: Window, price: PoolPrice | None, server: float | None, slo: Slo | None,
             priced_at: datetime) -> Figures:  # fmt: skip
    key = Key(r["pool"], r["revision"])
    span = window.length_s
    if span is None:
        span = max((r["last_end"] - r["first_start"]).total_seconds(), 0.0)
    basis, basis_reason = _basis(key.pool, r)
    latency = {m: _triple(r[m]) for m in ("ttft", "tpot", "e2e", "itl", "engine_tpot")}
    latency["judged_tpot"] = latency["engine_tpot"] if basis == "engine" else latency["tpot"] if basis else None
    met = r["good_engine"] if basis == "engine" else r["good_client"]
    goodput = Goodput(slo, met, r["good_counted"], _ratio(met, r["good_counted"]), _ratio(met, span)) if slo else None
    f = Figures(
        key=key, hardware=r["hardware"], window=window, span_s=span,
        counts=Counts(r["requests"], r["ok"], r["errors"], r["cancelled"], r["cache_unreported"]),
        latency=latency,
        tokens=Tokens(r["prompt_tokens"], r["completion_tokens"], r["reported_prompt_tokens"], r["cached_tokens"]),
        usd=_usd(r, price, span),
        cache=Cache(_ratio(r["cached_tokens"], r["reported_prompt_tokens"]), server),
        goodput=goodput,
        engine=Engine(r["queue_p50"], r["prefill_p50"], r["transport_p50"], r["gateway_p50"],
                      latency["engine_tpot"], r["engine_rows"], r["coalesced"], r["multi_token"]),
        tpot_basis=basis, first_start=r["first_start"], last_end=r["last_end"],
    )  # fmt: skip
    return replace(f, missing=_missing(f, priced_at, slo is not None, basis_reason))


def pool_figures(store: Queryable, window: Window, *, slo: Slo | None = None) -> list[Figures]:
    """One Figures per pool (and revision) with requests in the window."""
    rows = _stats(store, window, slo)
    if not rows:
        return []
    start = window.start or min(r["first_start"] for r in rows)
    end = window.end or max(r["last_end"] for r in rows)
    server = server_cache_ratios(store, start, end, bracket_end=window.end is None)
    prices = prices_at(store, end, by_revision=window.by_revision)
    return [
        _figures(r, window, prices.get(Key(r["pool"], r["revision"])), server.get(r["pool"]), slo, end) for r in rows
    ]


def request_values(
    store: Queryable, window: Window, metric: str, *, max_samples: int, seed: int = 7
) -> dict[Key, list[float]]:
    """The ok rows' per-request values of one metric (ttft, tpot, e2e, engine_tpot), seconds, per Key; at most
    max_samples each: a seeded pseudo-random sample, drawn in SQL (the hash of each row's id and the seed), when
    there are more; in start order."""
    if metric not in VALUE_METRICS:
        raise ValueError(f"unknown request metric {metric!r}; one of {', '.join(VALUE_METRICS)}")
    where, params = q.rows_where(window)
    revision = "revision" if window.by_revision else "CAST(NULL AS VARCHAR)"
    sql = q.VALUES_SQL.format(revision=revision, column=VALUE_METRICS[metric], where=where)
    values: dict[Key, list[float]] = {}
    for r in store.query(sql, [*params, seed, max_samples]).to_pylist():
        values.setdefault(Key(r["pool"], r["revision"]), []).append(float(r["v"]))
    return values


def bucketed(store: Queryable, window: Window, bucket_s: float) -> list[tuple[datetime, Figures]]:
    """Figures per bucket of bucket_s seconds from the window's start; each bucket is a bounded window."""
    if window.start is None or window.end is None or bucket_s <= 0:
        raise ValueError("bucketed needs a window with a start and an end and a positive bucket length")
    out: list[tuple[datetime, Figures]] = []
    at = window.start
    while at < window.end:
        upper = min(at + timedelta(seconds=bucket_s), window.end)
        out.extend((at, f) for f in pool_figures(store, replace(window, start=at, end=upper)))
        at = upper
    return out


class _Memory:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return self._con.execute(sql, params or []).to_arrow_table()


def in_memory(rows: Iterable[Mapping[str, Any]]) -> Queryable:
    """Rows (requests columns, e.g. a load run's client-side results) as a store the figures can read."""
    con = duckdb.connect(":memory:")
    columns = ", ".join(f"{name} {kind}" for name, kind in q.REQUEST_COLUMNS.items())
    con.execute(f"CREATE TABLE requests ({columns})")
    con.execute("CREATE TABLE pools (pool VARCHAR, revision VARCHAR, price_per_hour DOUBLE, replicas INTEGER, "
                "recorded_at TIMESTAMPTZ)")  # fmt: skip
    con.execute("CREATE TABLE pool_samples (pool VARCHAR, sampled_at TIMESTAMPTZ, metric VARCHAR, value DOUBLE)")
    names = list(q.REQUEST_COLUMNS)
    data = [[row.get(n) for n in names] for row in rows]
    if data:
        con.executemany(f"INSERT INTO requests VALUES ({', '.join('?' for _ in names)})", data)
    return _Memory(con)
