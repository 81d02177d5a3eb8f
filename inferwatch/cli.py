"""The `inferwatch` command: parse, call one library function, print, map errors to exit codes.

Exit codes: 0 success, 1 a runtime failure (engine did not come up, ...), 2 command-line usage,
3 bad input data or configuration (spec file, settings).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from collector.loadgen.job import DATASETS
from collector.service import CollectorConfig
from collector.state import CollectorError, CollectorState, health
from collector.store.door import connect, open_store
from engine.lifecycle import EngineConfig
from inferwatch.settings import Settings, SettingsError

if TYPE_CHECKING:
    from evals.compare import CompareConfig, PoolSummary

EXIT_FAILURE, EXIT_BAD_INPUT = 1, 3  # argparse itself exits 2 on usage errors


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        collector_port=getattr(args, "collector_port", None),
        store=getattr(args, "store", None),
        spec=getattr(args, "spec", None),
        serve_port=getattr(args, "port", None),
        ray_port=getattr(args, "ray_port", None),
        metrics_port=getattr(args, "metrics_port", None),
        home=getattr(args, "home", None),
    )


def _engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        state_path=settings.engine_state,
        models_dir=settings.models_dir,
        host=settings.host,
        serve_port=settings.serve_port,
        ray_port=settings.ray_port,
        metrics_port=settings.metrics_port,
        ray_num_cpus=settings.ray_num_cpus,
        timeout_s=settings.up_timeout_s,
    )


def cmd_engine(args: argparse.Namespace) -> int:
    from engine import lifecycle
    from engine.specs import load_pools
    from inferwatch.report import print_table

    settings = _settings(args)
    cfg = _engine_config(settings)
    if args.action == "up":
        pools = load_pools(settings.spec, settings.prices)
        state = lifecycle.up(pools, cfg, log=_log)
        print_table(lifecycle.as_rows(state), title=f"pools of {settings.spec} are up")
        if state.metrics_url:
            print(f"server metrics (vllm, serve): {state.metrics_url}")
        print(f"state: {cfg.state_path}    stop with: inferwatch engine down")
        return 0
    if args.action == "status":
        state, rows = lifecycle.status(cfg)
        table = [
            {"pool": r.endpoint.name, "model": r.endpoint.model_id, "deployment": r.deployment,
             "answering": "yes" if r.answering else "NO", "url": r.endpoint.base_url, "detail": r.detail}
            for r in rows
        ]  # fmt: skip
        print_table(table, title=f"engine from {state.spec}")
        return 0 if all(r.answering for r in rows) else EXIT_FAILURE
    if lifecycle.down(cfg, log=_log):
        print("engine is down")
    else:
        print(f"nothing to stop ({cfg.state_path} does not exist)")
    return 0


def collector_config(
    settings: Settings, splits: Sequence[str] = (), alert_rules: Path | None = None, alert_interval_s: float = 15.0
) -> CollectorConfig:
    return CollectorConfig(
        store_path=str(settings.store_path), engine_state=str(settings.engine_state), prices=str(settings.prices),
        host=settings.host, port=settings.collector_port, splits=tuple(splits),
        scrape_interval_s=settings.scrape_interval_s, alert_rules=str(alert_rules) if alert_rules else None,
        alert_interval_s=alert_interval_s,
    )  # fmt: skip


def cmd_collector(args: argparse.Namespace) -> int:
    from collector import daemon
    from collector.alerts.rules import AlertConfigError
    from collector.gateway.routes import SplitError
    from inferwatch.report import print_table

    settings = _settings(args)
    if args.action == "up":
        config = collector_config(settings, args.split or (), args.alert_rules, args.alert_interval)
        try:
            state = daemon.up(config, settings.collector_state, log=_log)
        except SplitError as exc:
            raise SettingsError(f"--split: {exc}") from None
        except AlertConfigError as exc:
            raise SettingsError(f"--alert-rules: {exc}") from None
        print(f"collector (gateway, store, scraper) at {state.url}")
        print(f"  OpenAI API: {state.url}/v1 (model <model>@<pool>)    metrics: {state.url}/metrics")
        if config.alert_rules:
            print(f"  alerts: {config.alert_rules}, evaluated every {config.alert_interval_s:g}s")
        print(f"  store: {state.store}    log: {state.log}    stop with: inferwatch collector down")
        return 0
    if args.action == "status":
        state, health = daemon.status(settings.collector_state)
        if health is None:
            print(
                f"the collector recorded in {settings.collector_state} (pid {state.pid}) does not answer at {state.url}"
            )
            return EXIT_FAILURE
        print_table([{"url": state.url, "pid": state.pid, **health}], title="collector")
        return 0
    if daemon.down(settings.collector_state, log=_log):
        print("collector is down (store flushed)")
    else:
        print(f"nothing to stop ({settings.collector_state} does not exist)")
    return 0


def parse_duration(text: str) -> float:
    """Seconds from `90s`, `15m`, `2h`, `1d` or a plain number of seconds (argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
    try:
        seconds = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 90s, 15m, 2h") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be > 0")
    return seconds


def _running_collector(settings: Settings) -> CollectorState:

    state = CollectorState.load(settings.collector_state)
    if state is None or health(state.url) is None:
        raise CollectorError(
            f"no collector answers (state {settings.collector_state}); start it with `inferwatch collector up`"
        )
    return state


def cmd_load(args: argparse.Namespace) -> int:
    from collector.fleet.report import table_rows
    from collector.loadgen.job import WorkloadSpec, build_workload, run_through_gateway, served_models
    from collector.loadgen.runner import LoadConfig, error_rows, summary_rows
    from inferwatch.report import print_table

    settings = _settings(args)
    state = _running_collector(settings)
    spec = WorkloadSpec(
        dataset=args.dataset, count=args.num_requests or 64, input_len=args.input_len, output_len=args.output_len,
        prefix_len=args.prefix_len, seed=args.seed,
    )  # fmt: skip
    try:
        items = build_workload(spec)
        config = LoadConfig(
            f"{state.url}/v1", served_models(state.url, args.pools or ()), num_requests=args.num_requests,
            duration_s=args.duration, rate=args.rate, burstiness=args.burstiness,
            max_concurrency=args.max_concurrency, ignore_eos=args.ignore_eos, temperature=args.temperature,
            seed=args.seed, progress=True,
        )  # fmt: skip
    except ValueError as exc:
        raise SettingsError(f"inferwatch load: {exc}") from None
    with connect(state.url) as store:
        result, reports = run_through_gateway(config, items, store)
    title = f"load run {result.run_id}: {len(result.requests)} requests in {result.duration_s:.1f}s"
    print_table(summary_rows(result), title=f"{title} (client side, ms)")
    if errors := error_rows(result):
        print_table(errors, title="errors")
    print_table(table_rows(reports), title=f"the run as the store holds it ({state.store})")
    return EXIT_FAILURE if all(r.status != "ok" for r in result.requests) else 0


def cmd_fleet(args: argparse.Namespace) -> int:
    from collector.fleet.report import Window, fleet_report, table_rows
    from collector.store.door import open_store
    from inferwatch.report import print_table

    settings = _settings(args)
    window = Window(run_id=args.run) if args.run else Window.last(args.window)
    if not settings.store_path.exists():
        raise SettingsError(f"{settings.store_path}: no store there yet; `inferwatch collector up` creates it")
    store = open_store(settings.store_path, settings.collector_state)
    try:
        reports = fleet_report(store, window)
    finally:
        store.close()
    what = f"run {args.run}" if args.run else f"the last {args.window:g}s"
    print_table(table_rows(reports), title=f"pools over {what} ({settings.store_path})")
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    from canary.job import CanaryJob, run_canary_job
    from canary.runner import summary_rows
    from engine.lifecycle import EngineState
    from inferwatch.report import print_table

    settings = _settings(args)
    collector = _running_collector(settings)
    job = CanaryJob(
        reference=args.reference, pools=tuple(args.pools or ()), probes=tuple(args.probes), samples=args.samples,
        concurrencies=tuple(args.concurrency), alpha=args.alpha, seed=args.seed, recalibrate=args.recalibrate,
        in_process=args.in_process,
    )  # fmt: skip
    try:
        run, path = run_canary_job(
            job, EngineState.load(settings.engine_state), collector, settings.home, settings.prices, log=_log
        )
    except ValueError as exc:
        raise SettingsError(f"inferwatch canary run: {exc}") from None
    print_table(summary_rows(run), title=f"canary {run.run_id}: each pool against {run.reference} (* critical)")
    drifting = [r.pool for r in run.reports if r.drifting]
    print(f"drifting: {', '.join(drifting) or 'none'}    calibration: {path}    store: {collector.store}")
    return EXIT_FAILURE if drifting else 0


EXIT_INCONCLUSIVE = 2  # as the gate: missing or too little data is never a pass


def _eval_exit(summaries: Sequence[PoolSummary]) -> int:
    from evals.compare import Verdict

    verdicts = {s.verdict for s in summaries}
    if Verdict.regressed in verdicts:
        return EXIT_FAILURE
    return EXIT_INCONCLUSIVE if verdicts & {Verdict.inconclusive, Verdict.nodata} else 0


def _compare_config(args: argparse.Namespace) -> CompareConfig:
    from evals.compare import CompareConfig

    try:
        return CompareConfig(alpha=args.alpha, margin=args.margin)
    except ValueError as exc:
        raise SettingsError(f"--alpha/--margin: {exc}") from None


def cmd_eval(args: argparse.Namespace) -> int:
    from inferwatch.report import print_eval

    settings = _settings(args)
    if args.action == "run":
        return _eval_run(args, settings)
    from collector.store.door import open_store
    from evals.job import import_lm_eval
    from evals.lm_eval_import import SamplesError
    from evals.results import compare_stored

    config = _compare_config(args)
    if not settings.store_path.exists() and args.action == "report":
        raise SettingsError(f"{settings.store_path}: no store there yet; `inferwatch collector up` creates it")
    store = open_store(settings.store_path, settings.collector_state)
    try:
        if args.action == "report":
            run_id, by_suite = args.run, compare_stored(store, args.run, args.reference, config)
        else:
            sources = dict(_pool_source(text) for text in args.sources)
            run_id, by_suite = import_lm_eval(
                store, sources, run_id=args.run, reference=args.reference, metric=args.metric,
                filter_name=args.filter, compare=config,
            )  # fmt: skip
            print(f"imported {', '.join(f'{p}={s}' for p, s in sources.items())} as eval run {run_id}")
    except (ValueError, SamplesError) as exc:
        raise SettingsError(f"inferwatch eval {args.action}: {exc}") from None
    finally:
        store.close()
    for suite, summaries in by_suite.items():
        print_eval(run_id, suite, args.reference, summaries)
    return _eval_exit([s for summaries in by_suite.values() for s in summaries]) if by_suite else 0


def _pool_source(text: str) -> tuple[str, Path]:
    pool, sep, path = text.partition("=")
    if not sep or not pool or not path:
        raise SettingsError(f"{text!r}: write POOL=PATH, e.g. ref=lm-eval-out/ (a samples file or lm-eval's output)")
    return pool, Path(path)


def _eval_run(args: argparse.Namespace, settings: Settings) -> int:
    from evals.job import EvalJob, failure_rows, run_eval_job
    from evals.runner import AskConfig
    from inferwatch.report import print_eval, print_table

    collector = _running_collector(settings)
    config = _compare_config(args)
    if args.concurrency < 1 or args.retries < 0:
        raise SettingsError("--concurrency must be >= 1 and --retries >= 0")
    job = EvalJob(
        suite=args.suite, reference=args.reference, pools=tuple(args.pools or ()), limit=args.limit,
        ask=AskConfig(concurrency=args.concurrency, retries=args.retries), compare=config,
        in_process=args.in_process,
    )  # fmt: skip
    engine = _engine_ray_address(settings)
    try:
        run = run_eval_job(job, collector.url, engine, log=_log)
    except ValueError as exc:
        raise SettingsError(f"inferwatch eval run: {exc}") from None
    print_eval(run.run_id, run.suite, run.reference, run.summaries)
    if failures := failure_rows(run):
        print_table(failures, title="failed items (recorded in eval_items with their error)")
    retried = ", ".join(f"{p} {n}" for p, n in run.retries.items() if n)
    print(f"retries: {retried or 'none'}    store: {collector.store}")
    return _eval_exit(run.summaries)


def _engine_ray_address(settings: Settings) -> str | None:
    from engine.lifecycle import EngineError, EngineState

    try:
        return EngineState.load(settings.engine_state).ray_address
    except EngineError:
        return None  # no engine of ours: RAY_ADDRESS or a local Ray


def cmd_gate(args: argparse.Namespace) -> int:
    from collector.store.door import open_store
    from gate import report
    from gate.config import GateConfigError, load_gate_config
    from gate.data import Span
    from gate.judge import judge_and_record
    from inferwatch.report import print_table

    settings = _settings(args)
    try:
        config = load_gate_config(args.config)
    except GateConfigError as exc:
        raise SettingsError(str(exc)) from None
    if not settings.store_path.exists():
        raise SettingsError(f"{settings.store_path}: no store there yet; `inferwatch collector up` creates it")
    end = datetime.now(UTC)
    span = Span(end - timedelta(seconds=args.window), end)
    store = open_store(settings.store_path, settings.collector_state)
    try:
        try:
            result = judge_and_record(store, args.baseline, args.candidate, span, config)
        except ValueError as exc:
            raise SettingsError(f"inferwatch gate: {exc}") from None
    finally:
        store.close()
    if args.format == "table":
        print_table(report.table_rows(result), title=f"gate {result.gate_id}: {result.candidate} against "
                    f"{result.baseline} over the last {args.window:g}s (! critical)")  # fmt: skip
        print("\n".join(report.reason_lines(result)))
        print(report.headline(result))
    else:
        text = {"md": report.markdown, "json": report.as_json, "junit": report.junit}[args.format](result)
        if args.output:
            args.output.write_text(text)
            print(report.headline(result))
        else:
            print(text, end="")
    return result.exit_code


def cmd_rollout(args: argparse.Namespace) -> int:
    from engine.lifecycle import EngineState
    from gate import report
    from gate.config import GateConfigError
    from gate.rollout import RolloutPlan, run_rollout, step_rows
    from inferwatch.report import print_table

    settings = _settings(args)
    collector = _running_collector(settings)
    try:
        plan = RolloutPlan(
            baseline=args.baseline, candidate=args.candidate, weight=args.weight, requests=args.requests,
            rate=args.rate, suite=args.suite, eval_limit=args.eval_limit, samples=args.samples,
            gate_config=args.config, promote_marginal=args.promote_marginal,
        )  # fmt: skip
        with connect(collector.url) as store:
            result = run_rollout(plan, EngineState.load(settings.engine_state), collector, store, settings.home,
                                 settings.prices, log=_log)  # fmt: skip
    except (ValueError, GateConfigError) as exc:
        raise SettingsError(f"inferwatch rollout: {exc}") from None
    print_table(step_rows(result), title=f"rollout {result.rollout_id}: {plan.candidate} for {plan.baseline}")
    if result.gate is not None:
        print_table(report.table_rows(result.gate), title=f"the judgement (gate {result.gate.gate_id}; ! critical)")
        print(report.headline(result.gate))
    target = plan.candidate if result.outcome == "promoted" else plan.baseline
    print(f"{result.outcome.upper()}: traffic for {plan.baseline} now goes to {target}")
    return result.exit_code


def cmd_alerts(args: argparse.Namespace) -> int:
    from collector.alerts.job import active_rows, change_rows, check_once, delivery_rows
    from collector.alerts.rules import DEFAULT_RULES, AlertConfigError, load_alert_config
    from inferwatch.report import print_table

    settings = _settings(args)
    try:
        config = load_alert_config(args.rules or DEFAULT_RULES)
    except AlertConfigError as exc:
        raise SettingsError(str(exc)) from None
    if not settings.store_path.exists():
        raise SettingsError(f"{settings.store_path}: no store there yet; `inferwatch collector up` creates it")
    state = CollectorState.load(settings.collector_state)
    answer = health(state.url) if state else None
    if state and answer and answer.get("alerts") and Path(state.store).resolve() == settings.store_path.resolve():
        raise CollectorError(
            f"the collector at {state.url} evaluates the alert rules {answer['alerts']} on this store already; "
            "a second evaluator would notify twice. Read its `alerts` table, or restart it without --alert-rules"
        )
    store = open_store(settings.store_path, settings.collector_state)
    try:
        result = check_once(store, config, deliver_within_s=args.deliver_within,
                            external_url=state.url if state and answer else "")  # fmt: skip
    finally:
        store.close()
    print_table(change_rows(result.evaluation.changes), title="what changed in this evaluation")
    print_table(active_rows(result.active), title="pending and firing alerts")
    if result.attempts:
        print_table(delivery_rows(result.attempts), title="deliveries")
    if not config.receivers:
        print(f"no receivers in {args.rules or DEFAULT_RULES}: nothing is delivered (see docs/ALERTS.md)")
    if result.undelivered:
        print(f"{result.undelivered} notification(s) not delivered yet; they stay in the store's outbox and the "
              "next `inferwatch alerts check` (or a collector with --alert-rules) retries them")  # fmt: skip
        return EXIT_FAILURE
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboards.launch import exec_streamlit
    from engine.lifecycle import port_is_free

    settings = _settings(args)
    if not port_is_free(settings.host, args.dashboard_port):
        raise SettingsError(f"--port: port {args.dashboard_port} on {settings.host} is already in use")
    print(f"dashboard at http://{settings.host}:{args.dashboard_port} on {settings.store_path} (read-only; "
          "through the collector while it runs); Ctrl-C stops it", flush=True)  # fmt: skip
    exec_streamlit(settings.host, args.dashboard_port, settings.store_path, settings.home)
    return 0  # not reached: exec_streamlit replaces this process


def cmd_demo(args: argparse.Namespace) -> int:
    from inferwatch.demo import interrupt_on_sigterm, run_demo, serve_until_interrupted, shut_down

    settings = _settings(args)
    cfg = _engine_config(settings)
    interrupt_on_sigterm()
    try:
        demo = run_demo(settings, cfg, collector_config(settings), log=_log, dashboard_port=args.dashboard_port)
    except KeyboardInterrupt:
        _log("interrupted: stopping the collector and the pools")
        shut_down(None, settings, cfg, _log)
        return 130
    return serve_until_interrupted(demo, settings, cfg, log=_log)


def _log(message: str) -> None:
    print(message, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferwatch", description="Observe and validate LLM serving pools.")
    commands = parser.add_subparsers(dest="command", required=True)

    def engine_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spec", type=Path, help="pool spec file (default data/pools.yaml)")
        p.add_argument("--port", type=int, help="engine HTTP port (default 8000)")
        p.add_argument("--ray-port", type=int, help="port of the local Ray head (default 6379)")
        p.add_argument("--metrics-port", type=int, help="Ray metrics export port (default 8079)")
        p.add_argument("--home", type=Path, help="state directory (default ./var)")

    engine = commands.add_parser("engine", help="deploy the pools of a spec on Ray Serve (vLLM)")
    engine.add_argument("action", choices=["up", "status", "down"])
    engine_flags(engine)
    engine.set_defaults(func=cmd_engine)

    collector = commands.add_parser("collector", help="the gateway, store and metrics scraper in front of the pools")
    collector.add_argument("action", choices=["up", "status", "down"])
    collector.add_argument("--home", type=Path, help="state directory (default ./var)")
    collector.add_argument("--collector-port", type=int, help="the collector's HTTP port (default 8090)")
    collector.add_argument("--store", type=Path, help="DuckDB store (default <home>/inferwatch.duckdb)")
    collector.add_argument(
        "--split", action="append", metavar="BASELINE=CANDIDATE:WEIGHT",
        help="send a share of one pool's traffic to another, e.g. ref=bf16:0.1 (repeatable)",
    )  # fmt: skip
    collector.add_argument("--alert-rules", type=Path, help="evaluate these alert rules (data/alerts.yaml) here")
    collector.add_argument("--alert-interval", type=parse_duration, default=15.0, help="how often (default 15s)")
    collector.set_defaults(func=cmd_collector)

    load = commands.add_parser("load", help="send load through the collector's gateway; per-pool table at the end")
    load.add_argument("--home", type=Path, help="state directory (default ./var)")
    load.add_argument("--pools", type=lambda t: [p for p in t.split(",") if p], help="e.g. ref,bf16 (default all)")
    load.add_argument("--dataset", choices=DATASETS, default="mixed", help="prompts (default mixed: prefix + arith)")
    load.add_argument("--num-requests", type=int, help="requests to send (default 64 unless --duration)")
    load.add_argument("--duration", type=parse_duration, help="send for this long instead, e.g. 30s")
    load.add_argument("--rate", type=float, default=float("inf"), help="requests/s (default: all at once)")
    load.add_argument("--burstiness", type=float, default=1.0, help="1 Poisson; gamma shape otherwise")
    load.add_argument("--max-concurrency", type=int, help="requests in flight at most")
    load.add_argument("--input-len", type=int, default=64, help="random dataset: prompt tokens")
    load.add_argument("--output-len", type=int, default=16, help="random and prefix datasets: max_tokens")
    load.add_argument("--prefix-len", type=int, default=256, help="prefix dataset: shared characters")
    load.add_argument("--ignore-eos", action="store_true", help="always generate max_tokens")
    load.add_argument("--temperature", type=float, help="sampling temperature (default the server's)")
    load.add_argument("--seed", type=int, default=0)
    load.set_defaults(func=cmd_load)

    fleet = commands.add_parser("fleet", help="per-pool latency, cost per token and cache hits from the store")
    fleet.add_argument("--home", type=Path, help="state directory (default ./var)")
    fleet.add_argument("--store", type=Path, help="DuckDB store (default <home>/inferwatch.duckdb)")
    fleet.add_argument("--window", type=parse_duration, default=900.0, help="how far back (default 15m)")
    fleet.add_argument("--run", help="one load run instead of a window")
    fleet.set_defaults(func=cmd_fleet)

    canary = commands.add_parser("canary", help="probe every pool against a reference: per-hardware output drift")
    canary.add_argument("action", choices=["run"])
    canary.add_argument("--home", type=Path, help="state directory (default ./var)")
    canary.add_argument("--reference", required=True, help="the pool the others are compared with")
    canary.add_argument("--pools", type=lambda t: [p for p in t.split(",") if p], help="default: all the others")
    canary.add_argument(
        "--probes",
        type=lambda t: [p for p in t.split(",") if p],
        default=["arith-v1", "text-v1", "prefix-v1"],
        help="probe sets (names or .jsonl files)",
    )
    canary.add_argument("--samples", type=int, default=16, help="samples per sampled probe")
    canary.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="batch sweep of greedy probes")
    canary.add_argument("--alpha", type=float, default=0.05, help="false-alarm level of every test")
    canary.add_argument("--seed", type=int, default=0)
    canary.add_argument("--recalibrate", action="store_true", help="run the A/A calibration again")
    canary.add_argument("--in-process", action="store_true", help="collect in this process, not as Ray tasks")
    canary.set_defaults(func=cmd_canary)

    evals = commands.add_parser("eval", help="eval suites on pools, compared item by item with a reference")
    eval_actions = evals.add_subparsers(dest="action", required=True)

    def compare_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--home", type=Path, help="state directory (default ./var)")
        p.add_argument("--store", type=Path, help="DuckDB store (default <home>/inferwatch.duckdb)")
        p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
        p.add_argument("--margin", type=float, default=0.02, help="non-inferiority margin (default 0.02)")

    run = eval_actions.add_parser("run", help="run a suite on pools through the gateway")
    compare_flags(run)
    run.add_argument("--suite", required=True, help="built-in suite (arith-v1, format-v1) or a .jsonl file")
    run.add_argument("--reference", required=True, help="the pool the others are compared with")
    run.add_argument("--pools", type=lambda t: [p for p in t.split(",") if p], help="default: every pool")
    run.add_argument("--limit", type=int, help="only the first N items")
    run.add_argument("--concurrency", type=int, default=8, help="requests in flight per pool (default 8)")
    run.add_argument("--retries", type=int, default=2, help="retries of a transient failure (default 2)")
    run.add_argument("--in-process", action="store_true", help="ask from this process, not as Ray tasks")
    report = eval_actions.add_parser("report", help="the comparison of a stored run, again")
    compare_flags(report)
    report.add_argument("--run", required=True, help="eval run id")
    report.add_argument("--reference", required=True, help="the pool the others are compared with")
    imports = eval_actions.add_parser("import", help="import lm-evaluation-harness --log_samples output")
    compare_flags(imports)
    imports.add_argument("sources", nargs="+", metavar="POOL=PATH", help="a samples_*.jsonl file or lm-eval output dir")
    imports.add_argument("--run", help="run id (default: a new one)")
    imports.add_argument("--reference", help="compare the imported pools with this one")
    imports.add_argument("--metric", help="the 0/1 metric to read (default: the line's only metric, acc, exact_match)")
    imports.add_argument("--filter", help="which lm-eval filter's lines to read, when a file has several")
    evals.set_defaults(func=cmd_eval)

    gate = commands.add_parser(
        "gate",
        help="judge a candidate pool against its baseline (exit 0 pass, 1 fail, 2 marginal)",
    )
    gate.add_argument("--home", type=Path, help="state directory (default ./var)")
    gate.add_argument("--store", type=Path, help="DuckDB store (default <home>/inferwatch.duckdb)")
    gate.add_argument("--baseline", required=True, help="the pool (revision) in production")
    gate.add_argument("--candidate", required=True, help="the pool (revision) to roll out")
    gate.add_argument("--window", type=parse_duration, default=900.0, help="how far back (default 15m)")
    gate.add_argument("--config", type=Path, help="judge config laid over data/gate.yaml")
    gate.add_argument("--format", choices=["table", "md", "json", "junit"], default="table")
    gate.add_argument("--output", type=Path, help="write the md/json/junit report here (a CI artifact)")
    gate.set_defaults(func=cmd_gate)

    rollout = commands.add_parser(
        "rollout", help="shift a share of traffic to a candidate, measure, judge, promote or abort"
    )
    rollout.add_argument("--home", type=Path, help="state directory (default ./var)")
    rollout.add_argument("--baseline", required=True, help="the pool that serves the traffic now")
    rollout.add_argument("--candidate", required=True, help="the pool to roll out")
    rollout.add_argument("--weight", type=float, default=0.2, help="the candidate's share meanwhile (default 0.2)")
    rollout.add_argument("--requests", type=int, default=250, help="load burst for the baseline (default 250)")
    rollout.add_argument("--rate", type=float, default=20.0, help="requests/s of the burst (default 20)")
    rollout.add_argument("--suite", default="arith-v1", help="eval suite run on both pools (default arith-v1)")
    rollout.add_argument("--eval-limit", type=int, default=300, help="eval items (default 300)")
    rollout.add_argument("--samples", type=int, default=8, help="canary samples per sampled probe (default 8)")
    rollout.add_argument("--config", type=Path, help="judge config laid over data/gate.yaml")
    rollout.add_argument("--promote-marginal", action="store_true", help="promote a marginal verdict too")
    rollout.set_defaults(func=cmd_rollout)

    alerts = commands.add_parser("alerts", help="evaluate the alert rules over the store once and deliver")
    alerts.add_argument("action", choices=["check"])
    alerts.add_argument("--home", type=Path, help="state directory (default ./var)")
    alerts.add_argument("--store", type=Path, help="DuckDB store (default <home>/inferwatch.duckdb)")
    alerts.add_argument("--rules", type=Path, help="alert rules file (default data/alerts.yaml)")
    alerts.add_argument(
        "--deliver-within", type=parse_duration, default=30.0, help="keep retrying deliveries this long (default 30s)"
    )
    alerts.set_defaults(func=cmd_alerts)

    dashboard = commands.add_parser("dashboard", help="the Streamlit dashboard on the store (read-only)")
    dashboard.add_argument("--home", type=Path, help="state directory (default ./var)")
    dashboard.add_argument("--store", type=Path, help="DuckDB store (default <home>/inferwatch.duckdb)")
    dashboard.add_argument("--port", dest="dashboard_port", type=int, default=8501, help="HTTP port (default 8501)")
    dashboard.set_defaults(func=cmd_dashboard)

    demo = commands.add_parser(
        "demo", help="the whole job: pools, load, canary, evals, gates, alerts, then the dashboard until Ctrl-C"
    )
    engine_flags(demo)
    demo.add_argument("--dashboard-port", type=int, default=8501, help="the dashboard's port (default 8501)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.specs import SpecError

    try:
        code: int = args.func(args)
    except (SpecError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # EngineError and friends: a message meant for the user
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    sys.exit(main())
