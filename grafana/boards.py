"""The Grafana boards of inferwatch, written as data: `python grafana/boards.py` regenerates
grafana/dashboards/*.json (tests/grafana checks that the committed files are what this writes).

Every panel reads the Prometheus datasource of the `datasource` variable (default: the provisioned uid
`inferwatch-prometheus`), so that a board imported into an existing Grafana asks which Prometheus to use.
Gateway figures come from the collector's /metrics (inferwatch_*, gen_ai_*; docs/METRICS.md), engine
figures from the Ray metrics export of the engine (ray_vllm_* labelled model_name="<model>@<pool>",
ray_serve_* labelled deployment="LLMServer:<model>@<pool>").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASOURCE_UID = "inferwatch-prometheus"
DS = {"type": "prometheus", "uid": "${datasource}"}
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def quantile(q: float, histogram: str, selector: str, by: str = "pool") -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({histogram}_bucket{{{selector}}}[$__rate_interval])))"


def rate(counter: str, selector: str, by: str = "pool") -> str:
    return f"sum by ({by}) (rate({counter}{{{selector}}}[$__rate_interval]))"


def share(part: str, whole: str) -> str:
    """part / whole, 0 where the part has no series (no errors is a rate of 0, not no data)."""
    return f"({part} or {whole} * 0) / {whole}"


def latency_panel(
    histogram: str, name: str, selector: str, by: str = "pool", qs: tuple[float, ...] = (0.5, 0.99)
) -> Panel:
    legend = "{{" + by + "}}"
    return Panel(
        f"{name} p{'/p'.join(str(int(q * 100)) for q in qs)}",
        tuple((quantile(q, histogram, selector, by), f"{legend} p{int(q * 100)}") for q in qs),
        unit="s",
    )


def fleet_overview() -> list[Panel]:
    sel = 'pool=~"$pool"'
    requests = rate("inferwatch_requests_total", sel)
    tokens = (
        f"{rate('inferwatch_prompt_tokens_total', sel)} + "
        f"{rate('gen_ai_client_token_usage_sum', sel + ', gen_ai_token_type=' + chr(34) + 'output' + chr(34))}"
    )
    return [
        Panel("Requests/s", ((requests, "{{pool}}"),), unit="reqps"),
        Panel(
            "Error rate",
            ((share(rate("inferwatch_requests_total", sel + ', status="error"'), requests), "{{pool}}"),),
            unit="percentunit",
        ),
        latency_panel("gen_ai_server_time_to_first_token_seconds", "TTFT", sel),
        latency_panel("gen_ai_server_time_per_output_token_seconds", "TPOT", sel),
        Panel(
            "$ per 1M tokens (attributed)",
            ((f"{rate('inferwatch_cost_usd_total', sel)} * 1e6 / ({tokens})", "{{pool}}"),),
            unit="currencyUSD",
            description="Cost attributed to requests (busy time) per million prompt + output tokens; the "
            "dashboard and `inferwatch fleet` charge the whole window (docs/METRICS.md), so theirs is higher.",
        ),
        Panel(
            "Prefix-cache hit ratio",
            (("inferwatch_cache_hit_ratio{" + sel + "}", "{{pool}} {{source}}"),),
            unit="percentunit",
        ),
        Panel(
            "Goodput (requests within the SLO)",
            (
                (
                    f"{rate('inferwatch_requests_good_total', sel)} / "
                    f"{rate('inferwatch_requests_total', sel + ', status!=' + chr(34) + 'cancelled' + chr(34))}",
                    "{{pool}}",
                ),
            ),
            unit="percentunit",
            description="Requests within data/slo.yaml (ok, TTFT, TPOT and e2e within their bounds; errors are "
            "misses) over those not cancelled: the goodput of `inferwatch fleet` and the rule InferwatchGoodputLow.",
        ),
        Panel(
            "Figures over the last 5 minutes (as inferwatch fleet)",
            (
                (
                    f'inferwatch_pool_figure{{{sel}, figure=~"goodput|usd_per_mtok|judged_tpot_p50|ttft_p50"}}',
                    "{{pool}} {{figure}}",
                ),
            ),
            kind="table",
            description="collector/fleet/figures.py over the last 5 minutes, read from the store at each scrape: "
            "the numbers `inferwatch fleet --window 5m` shows (latency in seconds, usd_per_mtok in $ per 1M tokens).",
        ),
        Panel("Requests in flight", ((f"sum by (pool) (inferwatch_requests_in_flight{{{sel}}})", "{{pool}}"),)),
        Panel(
            "Engine: requests waiting and running",
            (
                ("sum by (model_name) (ray_vllm_num_requests_waiting)", "{{model_name}} waiting"),
                ("sum by (model_name) (ray_vllm_num_requests_running)", "{{model_name}} running"),
            ),
        ),
    ]


def pool_detail() -> list[Panel]:
    sel, engine, serve = 'pool="$pool"', 'model_name=~".*@$pool"', 'deployment=~"LLMServer:.*@$pool"'
    return [
        latency_panel("gen_ai_server_time_to_first_token_seconds", "Gateway TTFT", sel, qs=(0.5, 0.9, 0.99)),
        latency_panel("gen_ai_server_time_per_output_token_seconds", "Gateway TPOT", sel, qs=(0.5, 0.9, 0.99)),
        latency_panel("gen_ai_server_request_duration_seconds", "Gateway end-to-end", sel + ', error_type=""'),
        Panel(
            "Requests/s by status", ((rate("inferwatch_requests_total", sel, "status"), "{{status}}"),), unit="reqps"
        ),
        Panel(
            "Tokens per request",
            (
                (
                    f"{rate('gen_ai_client_token_usage_sum', sel, 'gen_ai_token_type')} / "
                    f"{rate('gen_ai_client_token_usage_count', sel, 'gen_ai_token_type')}",
                    "{{gen_ai_token_type}}",
                ),
            ),
        ),
        Panel(
            "Cost attributed to requests, $/hour",
            ((f"{rate('inferwatch_cost_usd_total', sel)} * 3600", "{{pool}}"),),
            unit="currencyUSD",
        ),
        Panel(
            "TTFT p50 split: engine queue, engine prefill, transport and batching (last 5m)",
            ((f'inferwatch_pool_figure{{{sel}, figure=~"queue_p50|prefill_p50|transport_p50"}}', "{{figure}}"),),
            unit="s",
            description="From vLLM's per-request metrics joined to each request row (collector/fleet/figures.py): "
            "the scheduler's queue, first scheduled to first token, and the rest of the gateway's TTFT.",
        ),
        Panel(
            "TPOT p50: gateway (client side) and engine",
            (
                (quantile(0.5, "gen_ai_server_time_per_output_token_seconds", sel), "gateway"),
                (quantile(0.5, "inferwatch_engine_time_per_output_token_seconds", sel), "engine"),
            ),
            unit="s",
            description="Where the pool's stream batching groups tokens, the gateway's TPOT reads low and the "
            "engine's is the one judged (docs/METRICS.md, judged TPOT).",
        ),
        latency_panel("inferwatch_engine_queue_seconds", "Engine queue", sel),
        latency_panel("ray_vllm_time_to_first_token_seconds", "vLLM TTFT", engine, "model_name"),
        latency_panel("ray_vllm_inter_token_latency_seconds", "vLLM inter-token latency", engine, "model_name"),
        Panel(
            "vLLM prefix-cache hit ratio",
            (
                (
                    f"{rate('ray_vllm_prefix_cache_hits_total', engine, 'model_name')} / "
                    f"{rate('ray_vllm_prefix_cache_queries_total', engine, 'model_name')}",
                    "{{model_name}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "vLLM requests running and waiting",
            (
                (f"sum by (model_name) (ray_vllm_num_requests_running{{{engine}}})", "running"),
                (f"sum by (model_name) (ray_vllm_num_requests_waiting{{{engine}}})", "waiting"),
            ),
        ),
        latency_panel(
            "ray_serve_deployment_processing_latency_ms", "Serve replica processing (ms)", serve, "deployment"
        ),
        Panel(
            "Serve requests/s",
            ((rate("ray_serve_deployment_request_counter_total", serve, "deployment"), "{{deployment}}"),),
            unit="reqps",
        ),
    ]


def drift_gates() -> list[Panel]:
    sel = 'pool=~"$pool"'
    table = {"showHeader": True}
    return [
        Panel(
            "Drift flagged (latest canary run: 1 drift, 0 ok)",
            ((f"inferwatch_drift_flagged{{{sel}}}", "{{pool}} {{metric}}"),),
            kind="table",
            width=24,
            options=table,
        ),
        Panel("Drift metric values", ((f"inferwatch_drift_value{{{sel}}}", "{{pool}} {{metric}}"),)),
        Panel(
            "Eval accuracy (latest run)",
            ((f"inferwatch_eval_accuracy{{{sel}}}", "{{pool}} {{suite}}"),),
            unit="percentunit",
        ),
        Panel(
            "Eval accuracy minus the reference",
            ((f"inferwatch_eval_accuracy_delta{{{sel}}}", "{{pool}} {{suite}}"),),
            unit="percentunit",
        ),
        Panel("Eval regressed (1 yes)", ((f"inferwatch_eval_regressed{{{sel}}}", "{{pool}} {{suite}}"),)),
        Panel("Gate score (latest gate, 0-100)", ((f"inferwatch_gate_score{{{sel}}}", "{{pool}} vs {{baseline}}"),)),
        Panel(
            "Gate exit code (0 pass, 1 fail, 2 marginal)",
            ((f"inferwatch_gate_exit_code{{{sel}}}", "{{pool}} vs {{baseline}}"),),
        ),
    ]


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": DS, "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []}, "options": panel.options,
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend, "range": True}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }  # fmt: skip


def _variables(multi: bool) -> list[dict[str, Any]]:
    pools = {
        "name": "pool", "label": "pool", "type": "query", "datasource": DS, "refresh": 2, "sort": 1,
        "query": {"query": "label_values(inferwatch_requests_total, pool)", "refId": "pools"},
        "definition": "label_values(inferwatch_requests_total, pool)", "multi": multi, "includeAll": multi,
        "current": {},
    }  # fmt: skip
    if multi:
        pools["allValue"] = ".*"
    datasource = {
        "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
        "current": {"text": DATASOURCE_UID, "value": DATASOURCE_UID},
    }  # fmt: skip
    return [datasource, pools]


def dashboard(uid: str, title: str, panels: list[Panel], multi: bool) -> dict[str, Any]:
    laid_out, x, y, row_height = [], 0, 0, 0
    for i, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel(panel, i, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    return {
        "uid": uid, "title": title, "tags": ["inferwatch"], "timezone": "utc", "schemaVersion": 39, "version": 1,
        "editable": True, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []}, "templating": {"list": _variables(multi)}, "panels": laid_out,
    }  # fmt: skip


BOARDS = {
    "fleet-overview": ("inferwatch-fleet", "inferwatch: fleet overview", fleet_overview, True),
    "pool-detail": ("inferwatch-pool", "inferwatch: pool detail", pool_detail, False),
    "drift-gates": ("inferwatch-drift-gates", "inferwatch: drift, evals and gates", drift_gates, True),
}


def render(name: str) -> str:
    uid, title, panels, multi = BOARDS[name]
    return json.dumps(dashboard(uid, title, panels(), multi), indent=2) + "\n"


if __name__ == "__main__":
    for name in BOARDS:
        (HERE / "dashboards" / f"{name}.json").write_text(render(name))
