"""Latency and cost over time, from per-bucket aggregates (dashboards/queries.py latency_series). Pure.

A bucket's cost per token follows docs/METRICS.md: the pool costs price x replicas for the part of the bucket
inside the window (the first and last bucket may be cut by the window), divided by the tokens of its ok
requests that started in the bucket; no tokens, no figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa

from collector.fleet.cost import pool_cost_usd, summarize_cost
from collector.fleet.report import PoolPrice

NICE_BUCKETS_S = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def bucket_seconds(span_s: float, buckets: int = 60) -> float:
    """The smallest round bucket that cuts `span_s` into at most `buckets` pieces."""
    for size in NICE_BUCKETS_S:
        if span_s / size <= buckets:
            return float(size)
    return float(NICE_BUCKETS_S[-1])


def percentile_frame(series: pa.Table) -> pd.DataFrame:
    """Long form for the latency plot: bucket, pool, metric (TTFT, TPOT), p50, p90, p99 in milliseconds."""
    rows = []
    for r in series.to_pylist():
        for metric, column in (("TTFT", "ttft_s"), ("TPOT", "tpot_s")):
            q = r[column]
            if q is not None:
                rows.append({"bucket": r["bucket"], "pool": r["pool"], "revision": r["revision"], "metric": metric,
                             "p50": q[0] * 1e3, "p90": q[1] * 1e3, "p99": q[2] * 1e3})  # fmt: skip
    return pd.DataFrame(rows, columns=["bucket", "pool", "revision", "metric", "p50", "p90", "p99"])


def cost_frame(
    series: pa.Table,
    prices: Mapping[tuple[str, str | None], PoolPrice],
    bucket_s: float,
    start: datetime,
    end: datetime,
) -> pd.DataFrame:
    """bucket, pool, $/1M tokens and $/1M output tokens for the buckets whose pool has a price and tokens."""
    rows = []
    for r in series.to_pylist():
        price = prices.get((r["pool"], r["revision"]))
        if price is None:
            continue
        lo, hi = max(r["bucket"], start), min(r["bucket"] + timedelta(seconds=bucket_s), end)
        cost = pool_cost_usd(price.price_per_hour, price.replicas, max((hi - lo).total_seconds(), 0.0))
        unit = summarize_cost(cost, r["ok"], r["completion_tokens"], r["prompt_tokens"] + r["completion_tokens"])
        if unit.usd_per_m_total_tokens is not None:
            rows.append({"bucket": r["bucket"], "pool": r["pool"], "revision": r["revision"],
                         "$/1M tokens": unit.usd_per_m_total_tokens,
                         "$/1M output tokens": unit.usd_per_m_output_tokens})  # fmt: skip
    return pd.DataFrame(rows, columns=["bucket", "pool", "revision", "$/1M tokens", "$/1M output tokens"])
