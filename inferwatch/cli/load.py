"""`inferwatch load`: send load through the collector's gateway; the per-pool table as the store holds it."""

from __future__ import annotations

import argparse

from inferwatch.cli.options import EXIT_FAILURE, HOME, bad_input, name_list, parse_duration, running_collector, settings


def dataset(name: str) -> str:
    """One of the load generator's datasets (argparse type; read from collector.loadgen.job when parsed)."""
    from collector.loadgen.job import DATASETS

    if name not in DATASETS:
        raise argparse.ArgumentTypeError(f"{name!r}: choose from {', '.join(DATASETS)}")
    return name


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = commands.add_parser(
        "load", parents=[HOME], help="send load through the collector's gateway; per-pool table at the end"
    )
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


def run(args: argparse.Namespace) -> int:
    from collector.fleet.report import table_rows
    from collector.loadgen.job import WorkloadSpec, build_workload, run_through_gateway, served_models
    from collector.loadgen.runner import LoadConfig, error_rows, summary_rows
    from collector.store.door import open_reader
    from inferwatch.report import print_table

    state = running_collector(settings(args))
    spec = WorkloadSpec(
        dataset=args.dataset, count=args.num_requests or 64, input_len=args.input_len, output_len=args.output_len,
        prefix_len=args.prefix_len, seed=args.seed,
    )  # fmt: skip
    with bad_input("inferwatch load"):
        items = build_workload(spec)
        config = LoadConfig(
            f"{state.url}/v1", served_models(state.url, args.pools or ()), num_requests=args.num_requests,
            duration_s=args.duration, rate=args.rate, burstiness=args.burstiness,
            max_concurrency=args.max_concurrency, ignore_eos=args.ignore_eos, temperature=args.temperature,
            seed=args.seed, progress=True,
        )  # fmt: skip
    with open_reader(state.store) as store:
        result, reports = run_through_gateway(config, items, store)
    title = f"load run {result.run_id}: {len(result.requests)} requests in {result.duration_s:.1f}s"
    print_table(summary_rows(result), title=f"{title} (client side, ms)")
    if errors := error_rows(result):
        print_table(errors, title="errors")
    print_table(table_rows(reports), title=f"the run as the store holds it ({state.store})")
    return EXIT_FAILURE if all(r.status != "ok" for r in result.requests) else 0
