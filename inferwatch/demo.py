"""`make demo`: bring the default pools and the collector up (or reuse them), show what each pool answers,
send a load burst through the gateway and print what each pool costs and how fast it serves, run the
canary and print which pools drift from the reference, then run the arithmetic eval suite on every pool and
print which pools answer worse than the reference, gate every other pool against the reference over what the
demo measured, and deliver the alerts that fire to a local webhook receiver, printing what it got."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from subprocess import Popen
from typing import Any

import httpx
from pydantic import SecretStr

from canary.job import CanaryJob, run_canary_job, verdict_rows
from canary.runner import CanaryRun
from collector import daemon
from collector.alerts.job import CheckResult, active_rows, check_once, delivery_rows
from collector.alerts.receiver import WebhookReceiver, received_rows
from collector.alerts.rules import Receiver, load_alert_config
from collector.alerts.signing import new_secret
from collector.fleet.report import PoolReport, table_rows
from collector.fleet.slo import load_slo
from collector.loadgen.job import WorkloadSpec, build_workload, run_through_gateway, served_models
from collector.loadgen.runner import LoadConfig, LoadResult, error_rows
from collector.service import CollectorConfig
from collector.state import CollectorState
from collector.store.door import open_store
from collector.store.postgres import TempPostgres
from collector.store.protocols import StoreLike
from dashboards.launch import start_streamlit, stop
from engine import lifecycle
from engine.arith import sample_problems
from engine.ports import port_is_free
from engine.specs import load_pools
from engine.state import EngineConfig, EngineError, EngineState
from evals.job import EvalJob, EvalRun, run_eval_job
from gate import report as gate_report
from gate.config import load_gate_config
from gate.data import Span
from gate.judge import GateResult, judge_and_record
from inferwatch.report import print_eval, print_table
from inferwatch.settings import Settings
from inferwatch.summary import closing_rows

Log = Callable[[str], None]
SHARED_PREFIX = "12+34=46 " * 40  # repeated across requests: the second one hits the prefix cache


def ensure_engine(settings: Settings, cfg: EngineConfig, log: Log) -> tuple[EngineState, bool]:
    """Reuse pools that are up and answering; otherwise (re)start them. True when reused."""
    if cfg.state_path.exists():
        try:
            state, rows = lifecycle.status(cfg)
            if all(r.answering for r in rows):
                log(f"reusing the pools already up ({cfg.state_path})")
                return state, True
        except EngineError as exc:
            log(f"recorded engine is unusable ({exc})")
        log("stopping the recorded engine before starting again")
        lifecycle.down(cfg, log=log)
    return lifecycle.up(
        load_pools(settings.spec, settings.prices), cfg, log=log, insecure_bind=settings.insecure_bind
    ), False


def complete(base_url: str, model: str, prompt: str, **params: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = httpx.post(
        f"{base_url}/completions",
        json={"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0, **params},
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise EngineError(f"{model}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json(), elapsed


def ask_every_pool(state: EngineState, count: int = 3) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    problems = sample_problems(count, seed=2026, held_out=True)
    for pool in state.pools:
        # plain problems are graded; the long prompts (out of the model's distribution) show the prefix cache
        prompts: list[tuple[str, str | None]] = [(p.prompt, p.answer) for p in problems]
        prompts += [(SHARED_PREFIX + p.prompt, None) for p in problems[:2]]
        for prompt, expected in prompts:
            body, seconds = complete(pool.base_url, pool.model_id, prompt)
            usage = body.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            text = body["choices"][0]["text"]
            shown = prompt if expected else f"[{len(SHARED_PREFIX)}-char prefix]{prompt[len(SHARED_PREFIX) :]}"
            rows.append({
                "pool": pool.name,
                "prompt": shown,
                "completion": text,
                "expected": expected or "-",
                "ok": "-" if expected is None else "yes" if text.strip() == expected else "NO",
                "prompt_tok": usage.get("prompt_tokens"),
                "cached_tok": details.get("cached_tokens"),
                "ms": round(seconds * 1000, 1),
            })  # fmt: skip
    return rows


def load_burst(gateways: Sequence[CollectorState], burst: Burst) -> tuple[LoadResult, list[PoolReport]]:
    """Mixed prompts (shared prefixes for the cache, arithmetic) on every pool, through the gateways."""
    first = gateways[0]
    items = build_workload(WorkloadSpec(dataset="mixed", count=burst.requests, seed=burst.seed))
    config = LoadConfig(
        f"{first.url}/v1", served_models(first.url), num_requests=burst.requests, rate=burst.rate,
        max_concurrency=burst.max_concurrency, seed=burst.seed, progress=True,
        spread_over=tuple(f"{g.url}/v1" for g in gateways[1:]),
    )  # fmt: skip
    with open_store(first.store) as store:
        return run_through_gateway(config, items, store, slo=load_slo())


@dataclass(frozen=True)
class Burst:
    """The demo's load: below the knee of the four default pools on a 2-core machine (`inferwatch load --sweep`,
    BENCHMARKS.md "Capacity": each pool keeps up to 2 requests/s, 8 in all, and saturates at ~1.9 served beyond),
    so that its latency figures are the pools' and not a queue's."""

    requests: int = 96
    rate: float = 6.0  # requests/s in all, Poisson: 1.5 per pool
    max_concurrency: int = 32
    seed: int = 2026


def gate_every_pool(store: StoreLike, reference: str, pools: list[str], span: Span) -> list[GateResult]:
    """Each pool judged against the reference over `span` (the demo's own load, canary and eval), recorded."""
    config = load_gate_config(None)
    return [judge_and_record(store, reference, pool, span, config) for pool in pools if pool != reference]


def deliver_alerts(store: StoreLike, external_url: str) -> tuple[CheckResult, list[dict[str, object]]]:
    """The default alert rules, evaluated once, delivered (signed) to a webhook receiver on loopback. Every
    firing alert is notified again (repeat interval 0), so a second demo shows them too."""
    with WebhookReceiver() as hook:
        receiver = Receiver(name="demo", url=hook.url, secret=SecretStr(new_secret()))
        config = load_alert_config().with_receivers((receiver,))
        result = check_once(store, config, repeat_interval_s=0, deliver_within_s=20, external_url=external_url)
    return result, received_rows(hook.received, receiver.key())


@dataclass
class Demo:
    code: int
    dashboard: Popen[bytes] | None = None  # the dashboard this demo started (None: one was up already, or none)
    dashboard_url: str | None = None


def run_demo(
    settings: Settings,
    cfg: EngineConfig,
    collectors: Sequence[CollectorConfig],
    log: Log = print,
    burst: Burst | None = None,
    canary: CanaryJob | None = None,
    evals: EvalJob | None = None,
    dashboard_port: int | None = None,
) -> Demo:
    """The whole job with one gateway per config in `collectors` (the first is the one readers are shown)."""
    state, reused = ensure_engine(settings, cfg, log)
    started = _now()
    rows = ask_every_pool(state)
    print_table(rows, title="what each pool answered (greedy, held-out problems; long prompts share a prefix)")
    gateways = start_collectors(settings, collectors, reused, log)
    gateway = gateways[0]
    reports = show_load(gateways, burst or Burst(), log)
    canary = canary or CanaryJob(reference=state.pools[0].name, samples=8)
    run = show_canary(canary, state, gateway, settings, log)
    evals = evals or EvalJob(suite="arith-v1", reference=canary.reference, limit=DEMO_EVAL_ITEMS)
    checked = show_eval(evals, state, gateway, log)
    span = Span(started, _now())
    gates = show_gates_and_alerts(gateway, canary.reference, [p.name for p in state.pools], span, log)
    print_table(closing_rows(reports, run, checked.summaries, gates), title=SUMMARY_TITLE.format(canary.reference))
    show_where(state, gateways, log)
    if dashboard_port is None:
        log("the pools and the collector stay up; stop them with: .venv/bin/inferwatch collector down && "
            ".venv/bin/inferwatch engine down")  # fmt: skip
        return Demo(0)
    return start_dashboard(settings, gateway, dashboard_port, log)


def start_collectors(
    settings: Settings, collectors: Sequence[CollectorConfig], reused: bool, log: Log
) -> list[CollectorState]:
    """The gateways on the engine: fresh ones for fresh pools (the previous ones route to pools now gone) or for
    another store (a fleet demo after a plain one, or the other way round)."""
    recorded = [CollectorState.load(path) for path in daemon.state_files(settings.collector_state)]
    elsewhere = any(s is not None and s.store != collectors[0].store_url for s in recorded)
    if (not reused or elsewhere or len(recorded) > len(collectors)) and stop_collectors(settings, log):
        log("stopped the collectors of the previous demo (other pools or another store)")
    return [daemon.up(c, daemon.state_file(settings.collector_state, i), log=log) for i, c in enumerate(collectors)]


def stop_collectors(settings: Settings, log: Log) -> bool:
    stopped = [daemon.down(path, log=log) for path in daemon.state_files(settings.collector_state)]
    return any(stopped)


class FleetStore:
    """The fleet mode's store: DuckLake with its catalog in a PostgreSQL of the demo's own (a fresh cluster in the
    system temp dir, which the postgres user can reach, on a free loopback port) and its Parquet files in
    <home>/fleet-lake/<time>; stopped and removed at the end of the demo."""

    def __init__(self, settings: Settings, log: Log) -> None:
        self._postgres = TempPostgres()
        server = self._postgres.start()
        self.cluster = server.data_dir
        server.create_database("inferwatch")
        self.data = settings.home / "fleet-lake" / _now().strftime("%Y%m%dT%H%M%S")
        self.url = f"ducklake:postgres://{server.user}@{server.host}:{server.port}/inferwatch?data={self.data}"
        log(f"fleet mode: PostgreSQL {server.host}:{server.port} (log {server.log}), store {self.url}")

    def stop(self, log: Log) -> None:
        self._postgres.stop()
        shutil.rmtree(self.data, ignore_errors=True)
        log("fleet mode: PostgreSQL stopped, the lake's files removed")


def show_load(gateways: Sequence[CollectorState], burst: Burst, log: Log) -> list[PoolReport]:
    over = f"over {len(gateways)} gateways " if len(gateways) > 1 else ""
    log(f"load burst through the gateway: {burst.requests} requests at {burst.rate:g}/s {over}over every pool")
    result, reports = load_burst(gateways, burst)
    if errors := error_rows(result):
        print_table(errors, title="errors in the burst")
    print_table(
        [{k: row[k] for k in FLEET_COLUMNS} for row in table_rows(reports)],
        title=f"per pool, from the store (run {result.run_id}, {result.duration_s:.1f}s; $ = price x replicas x run)",
    )
    return reports


def show_canary(
    canary: CanaryJob, state: EngineState, gateway: CollectorState, settings: Settings, log: Log
) -> CanaryRun:
    log(f"canary: every pool against {canary.reference} (teacher-forced, greedy at batch sizes "
        f"{', '.join(map(str, canary.concurrencies))}, sampled), as Ray tasks")  # fmt: skip
    run, _ = run_canary_job(canary, state, gateway, settings.home, settings.prices, log=log)
    print_table(verdict_rows(run), title=f"drift against {run.reference} (canary {run.run_id}; * critical)")
    log(f"every metric with its band and p-value: .venv/bin/inferwatch canary run --reference {run.reference}")
    return run


def show_eval(evals: EvalJob, state: EngineState, gateway: CollectorState, log: Log) -> EvalRun:
    log(f"eval: suite {evals.suite} on every pool through the gateway, each item compared with {evals.reference}")
    checked = run_eval_job(evals, gateway, state.ray_address, log=log)
    print_eval(checked.run_id, checked.suite, checked.reference, checked.summaries)
    return checked


def show_gates_and_alerts(
    gateway: CollectorState, reference: str, pools: list[str], span: Span, log: Log
) -> list[GateResult]:
    """Every pool gated against the reference over the demo's span, then the alert rules checked and delivered."""
    with open_store(gateway.store) as store:
        gates = gate_every_pool(store, reference, pools, span)
        print_table(gate_report.summary_rows(gates), title=f"gate: every pool against {reference} over this "
                    "demo's load, canary and eval (exit 0 pass, 1 fail, 2 marginal)")  # fmt: skip
        log(f"each metric of a gate: .venv/bin/inferwatch gate --baseline {reference} --candidate boost")
        alerts, received = deliver_alerts(store, gateway.url)
    print_table(active_rows(alerts.active), title="alerts pending and firing (data/alerts.yaml)")
    print_table(delivery_rows(alerts.attempts), title="alert notifications sent")
    print_table(received, title="what the webhook receiver got (Alertmanager v4 JSON, Standard Webhooks signature)")
    return gates


def show_where(state: EngineState, gateways: Sequence[CollectorState], log: Log) -> None:
    print_table(lifecycle.as_rows(state), title="where")
    for gateway in gateways:
        log(f"gateway (OpenAI API): {gateway.url}/v1    collector metrics: {gateway.url}/metrics")
    if state.metrics_url:
        log(f"server metrics (vllm:*, ray_serve_*): {state.metrics_url}")
    log(f"store: {gateways[0].store}    more load: .venv/bin/inferwatch load --rate 10 --num-requests 200")


def start_dashboard(settings: Settings, gateway: CollectorState, port: int, log: Log) -> Demo:
    """The dashboard on the collector's store, unless one already answers on `port` (another demo's)."""
    url = f"http://{settings.host}:{port}"
    if not port_is_free(settings.host, port):
        log(f"dashboard: {url} (already up)")
        return Demo(0, None, url)
    log(f"starting the dashboard on {gateway.store}")
    process = start_streamlit(settings.host, port, gateway.store, settings.collector_state,
                              settings.home / "dashboard.log", insecure_bind=settings.insecure_bind)  # fmt: skip
    return Demo(0, process, url)


def serve_until_interrupted(
    demo: Demo, settings: Settings, cfg: EngineConfig, log: Log = print, fleet: FleetStore | None = None
) -> int:
    """`make demo`'s last step: the dashboard runs until Ctrl-C, which stops it, the collector and the pools."""
    if demo.dashboard is None:  # another demo's dashboard (and pools): that one stops them
        log(f"dashboard: {demo.dashboard_url} (the demo that started it stops everything on Ctrl-C)")
        if fleet is not None:  # but this demo's store goes with this demo
            stop_collectors(settings, log)
            fleet.stop(log)
        return demo.code
    interrupt_on_sigterm()  # again: connecting to Ray (canary, evals) installed Ray's handler, which aborts
    log(f"dashboard: {demo.dashboard_url}    Ctrl-C stops the dashboard, the collector and the pools")
    try:
        demo.dashboard.wait()
        log(f"the dashboard stopped (exit {demo.dashboard.returncode}); see {settings.home / 'dashboard.log'}")
    except KeyboardInterrupt:
        log("stopping the dashboard, the collector and the pools")
    finally:
        shut_down(demo.dashboard, settings, cfg, log, fleet)
    return demo.code


def interrupt_on_sigterm() -> None:
    """SIGTERM (`kill`, a service manager) stops the demo the way Ctrl-C does: everything it started, cleanly."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def shut_down(
    dashboard: Popen[bytes] | None,
    settings: Settings,
    cfg: EngineConfig,
    log: Log = print,
    fleet: FleetStore | None = None,
) -> None:
    """Everything the demo runs, stopped in order: the dashboard, the collectors (committing their journals), the
    fleet mode's PostgreSQL, the pools."""
    if dashboard is not None:
        stop(dashboard)
    stop_collectors(settings, log)
    if fleet is not None:
        fleet.stop(log)
    lifecycle.down(cfg, log=log)


def _now() -> datetime:
    return datetime.now(UTC)


# the first 600 of arith-v1's 1,000 items keep the demo under 10 minutes on 2 cores; noisy's regression still
# shows there (7 items right only on the reference, none the other way: McNemar p = 0.016; 15 in all 1,000)
DEMO_EVAL_ITEMS = 600
SUMMARY_TITLE = (
    "inferwatch: every pool against {} (latency, cost and cache from the load burst; * a critical drift "
    "metric; eval: accuracy, its difference from the reference in points, verdict)"
)
FLEET_COLUMNS = (
    "pool", "revision", "requests", "errors", "ttft_p50_ms", "ttft_p99_ms", "queue_p50_ms", "tpot_p50_ms",
    "tpot from", "goodput", "$/1M out tok", "$/1M tok", "hit req", "hit srv",
)  # fmt: skip
