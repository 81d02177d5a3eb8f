"""`inferwatch load`: send load through the collector's gateways; the per-pool table as the store holds it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from inferwatch.cli.options import (
    EXIT_FAILURE,
    HOME,
    SLO,
    STORE,
    bad_input,
    name_list,
    parse_duration,
    settings,
)
from inferwatch.settings import Settings

if TYPE_CHECKING:
    from collector.fleet.slo import Slo
    from collector.loadgen.job import SweepStep
    from collector.loadgen.runner import LoadConfig
    from collector.loadgen.sweep import Step
    from collector.loadgen.workloads import WorkItem
    from collector.store.protocols import Queryable


def dataset(name: str) -> str:
    """One of the load generator's datasets (argparse type; read from collector.loadgen.job when parsed)."""
    from collector.loadgen.job import DATASETS

    if name not in DATASETS:
        raise argparse.ArgumentTypeError(f"{name!r}: choose from {', '.join(DATASETS)}")
    return name


def rate_list(text: str) -> list[float]:
    """`2,4,8` -> [2.0, 4.0, 8.0]: rising finite positive rates (argparse type)."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give rates in requests/s separated by commas, e.g. 2,4,8"
        ) from None
    if not rates or any(not 0 < r < float("inf") for r in rates) or rates != sorted(set(rates)):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct rising rates > 0 in requests/s, e.g. 2,4,8")
    return rates


def goodput_share(text: str) -> float:
    """A share within (0, 1] (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share of requests within (0, 1], e.g. 0.9")
    return value


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "load", parents=[HOME, STORE, SLO], help="send load through the collector's gateways; per-pool table at the end"
    )
    load.add_argument(
        "--gateway", action="append", metavar="URL",
        help="send through this gateway, e.g. another node's (repeatable; requests go round-robin; default: every "
        "gateway of this home's collector)",
    )  # fmt: skip
    load.add_argument("--pools", type=name_list, help="e.g. ref,bf16 (default all)")
    load.add_argument("--dataset", type=dataset, default="mixed",
                      help="random, prefix, arith or mixed (default mixed: prefix + arith)")  # fmt: skip
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
    load.add_argument(
        "--sweep", type=rate_list, metavar="RATES",
        help="capacity sweep: one run per rate (requests/s in all, rising, e.g. 2,4,8,16), each step judged "
        "saturated or not; per pool the knee (the highest rate that kept up and met the SLO) and $/1M tokens there",
    )  # fmt: skip
    load.add_argument("--target-goodput", type=goodput_share, default=0.9,
                      help="sweep: the goodput a step must reach to meet the SLO (default 0.9)")  # fmt: skip
    load.set_defaults(func=run)


def gateways(current: Settings, explicit: list[str] | None, store_given: bool) -> tuple[list[str], str]:
    """The gateways' URLs (`--gateway`, else every gateway of this home's collector that answers) and the store
    their rows land in (`--store`, else the home's collector's, else the settings')."""
    from collector.daemon import running
    from collector.state import CollectorError

    local = running(current.collector_state)
    urls = [url.rstrip("/") for url in explicit or [state.url for state in local]]
    if not urls:
        raise CollectorError(
            f"no collector answers (state {current.collector_state}); start it with `inferwatch collector up`, or "
            "name gateways with --gateway URL"
        )
    return urls, local[0].store if local and not store_given else current.store_url


def run(args: argparse.Namespace) -> int:
    from collector.fleet.report import cost_rows, latency_rows
    from collector.fleet.slo import DEFAULT_SLO_PATH, load_slo
    from collector.loadgen.job import WorkloadSpec, build_workload, run_through_gateway, served_models
    from collector.loadgen.runner import LoadConfig, error_rows, gateway_rows, summary_rows
    from collector.store.door import open_reader
    from inferwatch.report import print_table

    urls, store_url = gateways(settings(args), args.gateway, args.store is not None)
    spec = WorkloadSpec(
        dataset=args.dataset, count=args.num_requests or 64, input_len=args.input_len, output_len=args.output_len,
        prefix_len=args.prefix_len, seed=args.seed,
    )  # fmt: skip
    with bad_input("inferwatch load"):
        items = build_workload(spec)
        config = LoadConfig(
            f"{urls[0]}/v1", served_models(urls[0], args.pools or ()), num_requests=args.num_requests,
            duration_s=args.duration, rate=args.rate, burstiness=args.burstiness,
            max_concurrency=args.max_concurrency, ignore_eos=args.ignore_eos, temperature=args.temperature,
            seed=args.seed, progress=True, spread_over=tuple(f"{url}/v1" for url in urls[1:]),
        )  # fmt: skip
    slo = load_slo(args.slo or DEFAULT_SLO_PATH)
    if args.sweep:
        with open_reader(store_url) as store:
            return sweep(config, items, store, args.sweep, slo, args.target_goodput)
    with open_reader(store_url) as store:
        result, reports = run_through_gateway(config, items, store, slo=slo)
    title = f"load run {result.run_id}: {len(result.requests)} requests in {result.duration_s:.1f}s"
    print_table(summary_rows(result), title=f"{title} (client side, ms)")
    if len(urls) > 1:
        print_table(gateway_rows(result), title=f"spread over {len(urls)} gateways")
    if errors := error_rows(result):
        print_table(errors, title="errors")
    print_table(
        latency_rows(reports), title=f"the run as the store holds it, ms; goodput: {slo.describe()} ({store_url})"
    )
    print_table(cost_rows(reports), title="its cost and cache ($ = price x replicas x the run's span)")
    return EXIT_FAILURE if all(r.status != "ok" for r in result.requests) else 0


def sweep(config: LoadConfig, items: Sequence[WorkItem], store: Queryable, rates: list[float], slo: Slo,
          target: float) -> int:  # fmt: skip
    """The sweep's steps as they finish, then the knee per pool."""
    from collector.loadgen.job import sweep_through_gateway
    from collector.loadgen.sweep import judge_steps, knee
    from inferwatch.report import print_table

    def shown(step: SweepStep) -> None:
        rows = [step_row(step.rate, pool, s) for pool, s in step.steps().items()]
        print_table(rows, title=f"step {step.rate:g} requests/s (run {step.result.run_id})")

    done = sweep_through_gateway(config, items, store, rates, slo, on_step=shown)
    by_pool: dict[str, list[Step]] = {}
    for step in done:
        for pool, s in step.steps().items():
            by_pool.setdefault(pool, []).append(s)
    ttft_slo = slo.ttft_ms / 1e3 if slo.ttft_ms is not None else None
    steps_rows, knee_rows = [], []
    for pool, steps in by_pool.items():
        verdicts = judge_steps(steps, target_goodput=target, ttft_slo_s=ttft_slo)
        steps_rows += [step_row(v.step.rate, pool, v.step, v.saturated, v.reason) for v in verdicts]
        found = knee(verdicts)
        at = found.step
        knee_rows.append({
            "pool": pool, "knee req/s": _num(at.rate if at else None),
            "served req/s": _num(at.throughput if at else None),
            "$/1M tok": _num(at.usd_per_mtok if at else None), "goodput": _num(at.goodput if at else None),
            "where it stops": found.reason,
        })  # fmt: skip
    print_table(steps_rows, title=f"sweep {','.join(f'{r:g}' for r in rates)} requests/s: every step, per pool")
    print_table(knee_rows, title=f"capacity per pool (goodput >= {target:g} against {slo.describe()}, not saturated)")
    return 0


def step_row(total: float, pool: str, s: Step, saturated: bool | None = None, why: str = "") -> dict[str, object]:
    row: dict[str, object] = {
        "rate": total, "pool": pool, "offered/s": _num(s.rate), "served/s": _num(s.throughput),
        "ttft p50 ms": _num(s.ttft_p50 and 1e3 * s.ttft_p50), "queue p50 ms": _num(s.queue_p50 and 1e3 * s.queue_p50),
        "goodput": _num(s.goodput), "$/1M tok": _num(s.usd_per_mtok),
    }  # fmt: skip
    if saturated is not None:
        row["saturated"] = f"SATURATED: {why}" if saturated else "no"
    return row


def _num(x: float | None) -> float | str:
    return "-" if x is None else float(f"{x:.4g}")
