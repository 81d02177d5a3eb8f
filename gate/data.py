"""What the judge reads from the store for a baseline and a candidate pool over a window (the only I/O of the
judge): per-request latency values (a seeded sample when the window holds more than `max_samples`), the pool's
cost per token and cache hit ratio over the window, request and error counts, the latest eval run with both
pools, and the latest canary run of the candidate against the baseline; and for a rollout, how many requests
of its load run each pool served.

Latency values and the window figures come from collector/fleet/figures.py, the module every surface reads: the
gate's $/1M tokens and cache hit ratio for a window are the numbers `inferwatch fleet` shows for it, and its
TPOT is the judged TPOT (the engine's where the pool coalesced its stream; none where it coalesced and sent no
engine timings)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.fleet.figures import Key, Window, pool_figures, request_values
from collector.fleet.slo import Slo
from collector.store.protocols import Queryable
from collector.vocabulary import Status
from gate.work import Work

# the gate's per-request metrics and the figures' request metric each is read as (TPOT: by the pool's basis)
VALUE_METRICS = {"ttft": "ttft", "tpot": "tpot", "e2e": "e2e"}
# the gate's window metrics and the figure each is
WINDOW_FIGURES = {"cost_per_mtok": "usd_per_mtok", "cache_hit_ratio": "cache_hit_ratio"}


@dataclass(frozen=True)
class Span:
    """Requests started in [start, end). `value_sources`: read the latency and cost values only from requests
    of these sources (the error rate always counts every request): a rollout judges them on the eval requests,
    which both pools got alike (gate/rollout/plan.py MEASURED_ALIKE), because a pool's latency and cost per
    token (busy time shared among the requests in flight) depend on how much load it has."""

    start: datetime
    end: datetime
    value_sources: tuple[str, ...] = ()


@dataclass
class PoolData:
    pool: str
    requests: int = 0
    errors: int = 0
    values: dict[str, list[float]] = field(default_factory=dict)  # metric -> successful requests' values
    figures: dict[str, float | None] = field(default_factory=dict)  # window metric -> the fleet figure
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why it has no value (from the figures)
    tpot_basis: str | None = "client"  # whose TPOT `values["tpot"]` is: "client", "engine", None (none)
    good: tuple[int, int] | None = None  # goodput: (requests within the SLO, requests counted), None: no SLO
    slo: str = ""  # the SLO goodput was counted against, in words
    work: Work | None = None  # what the pool served in the window (the cost is compared only over alike work)


@dataclass(frozen=True)
class EvalPair:
    run_id: str
    suite: str
    baseline: dict[str, bool | None]  # item -> correct
    candidate: dict[str, bool | None]


@dataclass(frozen=True)
class DriftRow:
    metric: str
    value: float | None
    band_high: float | None
    p_value: float | None
    verdict: str
    evidence: dict[str, Any]


def pool_data(
    store: Queryable, pool: str, span: Span, max_samples: int, seed: int = 7, slo: Slo | None = None
) -> PoolData:
    counts = store.query(
        "SELECT count(*) AS n, count(*) FILTER (WHERE status <> ?) AS errors FROM requests "
        "WHERE pool = ? AND started_at >= ? AND started_at < ?",
        [Status.ok.value, pool, span.start, span.end],
    ).to_pylist()[0]
    window = Window(span.start, span.end, sources=span.value_sources, pools=(pool,), by_revision=False)
    found = pool_figures(store, window, slo=slo)
    figures = found[0] if found else None
    basis = figures.tpot_basis if figures else "client"
    missing: dict[str, str] = {}
    metrics = dict(VALUE_METRICS)
    if basis == "engine":
        metrics["tpot"] = "engine_tpot"
    elif basis is None and figures is not None:
        del metrics["tpot"]
        missing["tpot"] = figures.reason("judged_tpot_p50") or "no judged TPOT"
    key = Key(pool, None)
    values = {
        name: request_values(store, window, metric, max_samples=max_samples, seed=seed).get(key, [])
        for name, metric in metrics.items()
    }
    window_figures: dict[str, float | None] = {}
    for name, figure in WINDOW_FIGURES.items():
        window_figures[name] = figures.value(figure) if figures else None
        if window_figures[name] is None:
            missing[name] = (
                figures.reason(figure) if figures else None
            ) or f"no ok request of pool {pool} in the window"
    good, described = None, ""
    if figures is not None and figures.goodput is not None:
        good, described = (figures.goodput.met, figures.goodput.counted), figures.goodput.slo.describe()
    return PoolData(pool, int(counts["n"]), int(counts["errors"]), values, window_figures, missing, basis, good,
                    described, Work.of(figures) if figures else None)  # fmt: skip


def latest_eval_pairs(store: Queryable, baseline: str, candidate: str, span: Span, suite: str | None) -> list[EvalPair]:
    """Per suite (or only `suite`), the items of the latest eval run in the window that both pools took part in."""
    suite_filter = "AND suite = ?" if suite else ""
    params: list[Any] = [baseline, candidate, span.start, span.end, *([suite] if suite else [])]
    latest = store.query(
        "SELECT suite, arg_max(run_id, t) AS run_id FROM (SELECT run_id, suite, max(recorded_at) AS t FROM eval_items "
        f"WHERE pool IN (?, ?) AND recorded_at >= ? AND recorded_at < ? {suite_filter} GROUP BY run_id, suite "
        "HAVING count(DISTINCT pool) = 2) GROUP BY suite ORDER BY suite",
        params,
    ).to_pylist()
    pairs = []
    for row in latest:
        rows = store.query(
            "SELECT pool, item_id, arg_max(correct, recorded_at) AS correct FROM eval_items "
            "WHERE run_id = ? AND suite = ? AND pool IN (?, ?) GROUP BY pool, item_id",
            [row["run_id"], row["suite"], baseline, candidate],
        ).to_pylist()
        items: dict[str, dict[str, bool | None]] = {baseline: {}, candidate: {}}
        for item in rows:
            items[item["pool"]][item["item_id"]] = item["correct"]
        pairs.append(EvalPair(row["run_id"], row["suite"], items[baseline], items[candidate]))
    return pairs


def latest_drift(store: Queryable, baseline: str, candidate: str, span: Span) -> tuple[str, list[DriftRow]] | None:
    """The drift rows of the latest canary run in the window that compared the candidate with the baseline."""
    latest = store.query(
        "SELECT run_id FROM probes WHERE reference_pool = ? AND pool = ? AND recorded_at >= ? AND recorded_at < ? "
        "GROUP BY run_id ORDER BY max(recorded_at) DESC LIMIT 1",
        [baseline, candidate, span.start, span.end],
    ).to_pylist()
    if not latest:
        return None
    run_id = latest[0]["run_id"]
    rows = store.query(
        "SELECT metric, value, band_high, p_value, verdict, evidence_json FROM drift WHERE run_id = ? AND pool = ? "
        "ORDER BY metric",
        [run_id, candidate],
    ).to_pylist()
    return run_id, [
        DriftRow(r["metric"], r["value"], r["band_high"], r["p_value"], r["verdict"],
                 json.loads(r["evidence_json"]) if r["evidence_json"] else {})
        for r in rows
    ]  # fmt: skip


@dataclass(frozen=True)
class Served:
    """The requests of one run in the store: how many each pool served, and how many of them failed."""

    by_pool: dict[str, int]
    errors: int


def served_by_run(store: Queryable, run_id: str) -> Served:
    rows = store.query(
        "SELECT pool, count(*) AS n, count(*) FILTER (WHERE status <> ?) AS errors FROM requests "
        "WHERE run_id = ? GROUP BY pool ORDER BY pool",
        [Status.ok.value, run_id],
    ).to_pylist()
    return Served({r["pool"]: r["n"] for r in rows}, sum(r["errors"] for r in rows))
