"""One number everywhere (issue 18): for one window of one seeded store, every surface shows the same figure.

Surfaces: `inferwatch fleet` (collector/fleet/report.py), the gate (gate/judge.py), /metrics
(collector/export/store_state.py; and the gateway's good-requests counter, what the Prometheus goodput rule
reads), the dashboard's Fleet page (dashboards/queries.py, fleet_figures.py) and the alert rules
(collector/alerts/sources.py). The window is the last 5 minutes, the one /metrics exports; each
surface reads it a moment apart, so the seeded requests sit well inside it. Values by hand in the comments.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.alerts.rules import AlertConfig
from collector.alerts.sources import read_samples
from collector.export.metrics import POOL_LABELS, GatewayMetrics, PoolLabels
from collector.export.store_state import StoreState
from collector.fleet.figures import Window
from collector.fleet.report import fleet_report
from collector.fleet.slo import DEFAULT_SLO_PATH, Slo, load_slo
from collector.store.api import Store
from collector.store.rows import RequestRecord
from dashboards.fleet_figures import pool_figures as dashboard_figures
from dashboards.queries import fleet_windows
from gate.config import load_gate_config
from gate.data import Span
from gate.judge import run_gate

WINDOW_S = 300.0
ROUTED = {"ref": PoolLabels("ref", "cpu", "arith@ref", "r1"), "cand": PoolLabels("cand", "cpu", "arith@cand", "r1")}


def rows(pool: str, now: datetime, ttft_scale: float, cached: int) -> list[dict[str, Any]]:
    """40 ok requests 60-99 s ago: TTFT scale x (0.1 + i/1000) s, 100 prompt tokens (`cached` of them cached),
    10 output tokens; and 2 errors."""
    out = [{"id": f"{pool}-{i}", "pool": pool, "revision": "r1", "hardware": "cpu", "source": "load", "status": "ok",
            "started_at": now - timedelta(seconds=60 + i), "ttft_s": ttft_scale * (0.1 + i / 1000), "tpot_s": 0.01,
            "e2e_s": 0.5, "prompt_tokens": 100, "cached_tokens": cached, "completion_tokens": 10}
           for i in range(40)]  # fmt: skip
    out += [{"id": f"{pool}-e{i}", "pool": pool, "revision": "r1", "hardware": "cpu", "source": "load",
             "status": "error", "started_at": now - timedelta(seconds=30 + i), "e2e_s": 0.1}
            for i in range(2)]  # fmt: skip
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    now = datetime.now(UTC)
    with Store(tmp_path_factory.mktemp("one") / "s.duckdb") as s:
        s.append("pools", [{"pool": pool, "revision": "r1", "hardware": "cpu", "accelerator": "cpu",
                            "model": f"arith@{pool}", "dtype": "float32", "spec_json": "{}", "replicas": replicas,
                            "price_per_hour": 3.6, "recorded_at": now - timedelta(hours=1)}
                           for pool, replicas in (("ref", 1), ("cand", 2))])  # fmt: skip
        s.append("requests", rows("ref", now, 1.0, 50) + rows("cand", now, 2.0, 25))
        yield s


def metrics_figures(store: Store) -> dict[tuple[str, str], float]:
    metrics = GatewayMetrics()
    StoreState(store, ROUTED.get, registry=metrics.registry)
    body, _ = metrics.exposition()
    return {
        (s.labels["pool"], s.labels["figure"]): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name == "inferwatch_pool_figure"
    }


def gateway_goodput(store: Store, slo: Slo) -> dict[str, tuple[float, float]]:
    """Per pool, (good, not cancelled) requests as the gateway's counters count the store's rows."""
    metrics = GatewayMetrics(slo=slo)
    names = {f.name for f in fields(RequestRecord)}
    for row in store.query("SELECT * FROM requests").to_pylist():
        record = RequestRecord(**{k: v for k, v in row.items() if k in names})
        metrics.observe(record, ROUTED[record.pool])
    get = metrics.registry.get_sample_value
    return {
        pool: (get("inferwatch_requests_good_total", {**dict(zip(POOL_LABELS, labels.values(), strict=True)),
                                                      "source": "load"}) or 0.0,
               sum(get("inferwatch_requests_total", {**dict(zip(POOL_LABELS, labels.values(), strict=True)),
                                                     "status": status, "source": "load"}) or 0.0
                   for status in ("ok", "error")))
        for pool, labels in ROUTED.items()
    }  # fmt: skip


def test_every_surface_shows_the_same_cost_cache_latency_and_goodput(store: Store) -> None:
    now = datetime.now(UTC)
    slo = load_slo(DEFAULT_SLO_PATH)
    fleet = {r.stats.pool: r for r in fleet_report(store, Window.last(WINDOW_S, now), slo=slo)}
    exported = metrics_figures(store)
    dashboard = {r.stats.pool: dashboard_figures(r).values for r in fleet_windows(store, WINDOW_S, now).now}
    gate = {r.metric: r for r in run_gate(store, "ref", "cand", Span(now - timedelta(seconds=WINDOW_S), now),
                                          load_gate_config()).results}  # fmt: skip
    alert_rules = AlertConfig.model_validate({"rules": [
        {"name": m, "metric": m, "condition": "> 0", "window": "5m"}
        for m in ("cost_per_mtok", "cache_hit_ratio", "ttft_p50", "error_rate", "goodput")
    ]})  # fmt: skip
    alerts = {name: {s.subject["pool"]: s.value for s in samples}
              for name, samples in read_samples(store, alert_rules.rules, now).items()}  # fmt: skip
    counted = gateway_goodput(store, slo)

    for pool, replicas, cached in (("ref", 1, 50), ("cand", 2, 25)):
        f = fleet[pool]
        # 3.6 $/h x replicas x 300 s over 40 x 110 tokens; cached / 100 prompt tokens; 2 errors of 42
        usd = 3.6 * replicas * WINDOW_S / 3600 / 4400 * 1e6
        assert f.usd_per_m_total_tokens == pytest.approx(usd)
        assert exported[(pool, "usd_per_mtok")] == pytest.approx(usd, rel=1e-3)
        assert dashboard[pool]["usd_per_m_tokens"] == pytest.approx(usd, rel=1e-3)
        assert alerts["cost_per_mtok"][pool] == pytest.approx(usd, rel=1e-3)
        gate_cost = gate["cost_per_mtok"].baseline if pool == "ref" else gate["cost_per_mtok"].candidate
        assert gate_cost == pytest.approx(usd, rel=1e-3)

        ratio = cached / 100
        assert f.request_cache_hit_ratio == exported[(pool, "cache_hit_ratio")] == ratio
        assert dashboard[pool]["cache_hit_ratio"] == alerts["cache_hit_ratio"][pool] == ratio
        gate_cache = gate["cache_hit_ratio"].baseline if pool == "ref" else gate["cache_hit_ratio"].candidate
        assert gate_cache == ratio

        # TTFT p50 of scale x (0.1 .. 0.139): scale x 0.1195; goodput (data/slo.yaml): 40 ok within it of 42
        ttft = (1.0 if pool == "ref" else 2.0) * 0.1195
        assert f.stats.ttft_s is not None and f.stats.ttft_s[0] == pytest.approx(ttft)
        assert exported[(pool, "ttft_p50")] == alerts["ttft_p50"][pool] == pytest.approx(ttft)
        assert dashboard[pool]["ttft_p50_ms"] == pytest.approx(ttft * 1e3)
        assert f.figures is not None and f.figures.value("goodput") == pytest.approx(40 / 42)
        assert exported[(pool, "goodput")] == dashboard[pool]["goodput"] == pytest.approx(40 / 42)
        gate_good = gate["goodput"].baseline if pool == "ref" else gate["goodput"].candidate
        assert gate_good == alerts["goodput"][pool] == pytest.approx(40 / 42)
        # the Prometheus rule's twin: the gateway's good-requests counter over its requests counter
        assert counted[pool] == (40, 42)
        assert exported[(pool, "error_rate")] == alerts["error_rate"][pool] == pytest.approx(2 / 42)
    # the candidate at twice the replicas costs +100 % per token; its cache ratio is half: the gate says so
    assert gate["cost_per_mtok"].effect == pytest.approx(1.0) and gate["cost_per_mtok"].critical
    assert gate["cache_hit_ratio"].effect == pytest.approx(-0.5)


def test_the_figures_a_surface_shows_are_none_with_a_reason_not_zero(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with Store(tmp_path / "s.duckdb") as s:  # no price recorded
        s.append("requests", rows("ref", now, 1.0, 0)[:3])
        (f,) = fleet_report(s, Window.last(WINDOW_S, now))
        assert f.usd_per_m_total_tokens is None and f.figures is not None
        assert f.figures.reason("usd_per_mtok") is not None
        assert ("ref", "usd_per_mtok") not in metrics_figures(s)
