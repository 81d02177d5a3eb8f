"""What the dashboard reads from the store: per-pool figures (collector/fleet/report.py) and the rows of the canary,
evals, gates and alerts tables, as Arrow tables or the fleet's own dataclasses. No Streamlit here.

Every function takes a Queryable (a RemoteStore while the collector runs, else a ReadOnlyStore) and raises
StoreError or duckdb.Error when the store cannot answer (dashboards/data.py turns both into a message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from collector.fleet.report import (
    PERCENTILES,
    PoolPrice,
    PoolReport,
    Window,
    fleet_report,
    latest_prices,
    query_latest_drift,
)
from collector.fleet.slo import DEFAULT_SLO_PATH, Slo, load_slo
from collector.store.protocols import Queryable
from collector.vocabulary import Status

HISTORY_LIMIT = 500  # gates and alert rows shown, newest first


@dataclass(frozen=True)
class FleetWindows:
    now: list[PoolReport]
    before: list[PoolReport]  # the window of the same length just before; empty for the whole store


def fleet_windows(store: Queryable, seconds: float | None, now: datetime, slo: Slo | None = None) -> FleetWindows:
    """The last `seconds` and the `seconds` before them; None: every request in the store, nothing before.
    Goodput against `slo` (default data/slo.yaml)."""
    slo = slo or load_slo(DEFAULT_SLO_PATH)
    if seconds is None:
        return FleetWindows(fleet_report(store, Window(), slo=slo), [])
    current = Window.last(seconds, now)
    assert current.start is not None
    previous = Window(current.start - timedelta(seconds=seconds), current.start)
    return FleetWindows(fleet_report(store, current, slo=slo), fleet_report(store, previous, slo=slo))


def request_span(store: Queryable) -> tuple[datetime | None, datetime | None]:
    """When the first and the last request in the store started."""
    row = store.query("SELECT min(started_at) AS lo, max(started_at) AS hi FROM requests").to_pylist()[0]
    return row["lo"], row["hi"]


_OK = f"status = '{Status.ok}'"
# a template: {q} (the percentiles) is filled in by latency_series
_SERIES_SQL = f"""
SELECT to_timestamp(floor(epoch(started_at) / $1) * $1) AS bucket, pool, revision,
    count(*) AS requests,
    count(*) FILTER (WHERE {_OK}) AS ok,
    quantile_cont(ttft_s, {{q}}) FILTER (WHERE {_OK}) AS ttft_s,
    quantile_cont(tpot_s, {{q}}) FILTER (WHERE {_OK}) AS tpot_s,
    CAST(coalesce(sum(prompt_tokens) FILTER (WHERE {_OK}), 0) AS BIGINT) AS prompt_tokens,
    CAST(coalesce(sum(completion_tokens) FILTER (WHERE {_OK}), 0) AS BIGINT) AS completion_tokens
FROM requests WHERE started_at >= $2 AND started_at < $3
GROUP BY ALL ORDER BY bucket, pool, revision
"""


def latency_series(store: Queryable, start: datetime, end: datetime, bucket_s: float) -> pa.Table:
    """Per time bucket (aligned to multiples of `bucket_s` since the epoch), pool and revision: requests, ok
    requests, TTFT and TPOT at PERCENTILES (ok requests), prompt and output tokens (ok requests)."""
    return store.query(_SERIES_SQL.format(q=list(PERCENTILES)), [bucket_s, start, end])


def prices(store: Queryable) -> dict[tuple[str, str | None], PoolPrice]:
    return latest_prices(store)


def latest_drift(store: Queryable) -> list[dict[str, Any]]:
    """Per pool and metric, the verdict of its latest canary run (collector.fleet.report.query_latest_drift)."""
    return query_latest_drift(store)


def drift_rows(store: Queryable) -> pa.Table:
    """Every drift verdict, newest run first."""
    return store.query(
        "SELECT run_id, pool, metric, value, band_high, p_value, verdict, evidence_json, recorded_at FROM drift "
        "ORDER BY recorded_at DESC, pool, metric"
    )


def probe_outputs(store: Queryable, run_id: str, pool: str) -> pa.Table:
    """The generated outputs (greedy and sampled, not the teacher-forced scores) of a pool and of its reference
    in a canary run (the reference's own rows have pool = reference_pool)."""
    return store.query(
        "SELECT pool, reference_pool, probe_id, mode, seed, tokens_json, top_logprobs_json FROM probes "
        "WHERE run_id = ? AND mode <> 'teacher_forced' AND (pool = ? OR pool = reference_pool) "
        "ORDER BY probe_id, mode, seed",
        [run_id, pool],
    )


def model_paths(store: Queryable) -> dict[str, str]:
    """pool -> the model its latest spec names (a local directory or a hub id)."""
    rows = store.query("SELECT pool, arg_max(spec_json, recorded_at) AS spec FROM pools GROUP BY pool").to_pylist()
    found: dict[str, str] = {}
    for row in rows:
        model = json.loads(row["spec"]).get("model")
        if isinstance(model, str):
            found[row["pool"]] = model
    return found


def eval_runs(store: Queryable) -> pa.Table:
    return store.query("SELECT * FROM eval_runs ORDER BY recorded_at DESC, suite, pool")


def gates(store: Queryable, limit: int = HISTORY_LIMIT) -> pa.Table:
    return store.query("SELECT * FROM gates ORDER BY decided_at DESC LIMIT ?", [limit])


def alert_changes(store: Queryable, limit: int = HISTORY_LIMIT) -> pa.Table:
    """State changes of alerts (pending, firing, resolved, inactive), newest first."""
    return store.query(
        "SELECT recorded_at, fingerprint, rule, status, payload_json FROM alerts WHERE notification_id IS NULL "
        "ORDER BY recorded_at DESC LIMIT ?",
        [limit],
    )


def deliveries(store: Queryable, limit: int = HISTORY_LIMIT) -> pa.Table:
    """Delivery attempts of notifications, newest first, with the notification each belongs to."""
    return store.query(
        "SELECT a.recorded_at, a.notification_id, a.receiver, a.attempt, a.status AS outcome, a.http_status, "
        "a.error, a.next_attempt_at, o.status AS notification, o.rules, o.alerts, o.body, o.created_at "
        "FROM alerts a LEFT JOIN alert_outbox o USING (notification_id) WHERE a.notification_id IS NOT NULL "
        "ORDER BY a.recorded_at DESC, a.attempt DESC LIMIT ?",
        [limit],
    )


def pending_notifications(store: Queryable) -> pa.Table:
    """Outbox notifications without any attempt yet."""
    return store.query(
        "SELECT o.* FROM alert_outbox o WHERE NOT EXISTS "
        "(SELECT 1 FROM alerts a WHERE a.notification_id = o.notification_id) ORDER BY o.created_at DESC"
    )
