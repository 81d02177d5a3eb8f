"""`inferwatch load`: send load through the collector's gateways; the per-pool table as the store holds it."""

from __future__ import annotations

import argparse

from inferwatch.cli.options import EXIT_FAILURE, HOME, SLO, STORE, bad_input, name_list, parse_duration, settings
from inferwatch.settings import Settings


def dataset(name: str) -> str:
    """One of the load generator's datasets (argparse type; read from collector.loadgen.job when parsed)."""
    from collector.loadgen.job import DATASETS

    if name not in DATASETS:
        raise argparse.ArgumentTypeError(f"{name!r}: choose from {', '.join(DATASETS)}")
    return name


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
