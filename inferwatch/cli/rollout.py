"""`inferwatch rollout`: shift a share of traffic to a candidate, measure, judge, then promote or abort."""

from __future__ import annotations

import argparse
from pathlib import Path

from inferwatch.cli.options import HOME, bad_input, log, running_collector, settings


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rollout = commands.add_parser(
        "rollout", parents=[HOME], help="shift a share of traffic to a candidate, measure, judge, promote or abort"
    )
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
    rollout.add_argument(
        "--gateway", action="append", metavar="URL",
        help="hold the split on this gateway, e.g. another node's (repeatable; default: every gateway of this "
        "home's collector)",
    )  # fmt: skip
    rollout.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from collector.daemon import running
    from collector.store.door import open_store
    from engine.state import EngineState
    from gate import report
    from gate.rollout.plan import RolloutPlan
    from gate.rollout.run import run_rollout
    from gate.rollout.steps import step_rows
    from inferwatch.report import print_table

    current = settings(args)
    collector = running_collector(current)
    gateways = [url.rstrip("/") for url in args.gateway or [state.url for state in running(current.collector_state)]]
    with bad_input("inferwatch rollout"):
        plan = RolloutPlan(
            baseline=args.baseline, candidate=args.candidate, weight=args.weight, requests=args.requests,
            rate=args.rate, suite=args.suite, eval_limit=args.eval_limit, samples=args.samples,
            gate_config=args.config, promote_marginal=args.promote_marginal,
        )  # fmt: skip
        with open_store(collector.store) as store:
            result = run_rollout(plan, EngineState.load(current.engine_state), collector, store, current.home,
                                 current.prices, log=log, gateways=gateways)  # fmt: skip
    print_table(step_rows(result), title=f"rollout {result.rollout_id}: {plan.candidate} for {plan.baseline}")
    if result.gate is not None:
        print_table(report.table_rows(result.gate), title=f"the judgement (gate {result.gate.gate_id}; ! critical)")
        print(report.headline(result.gate))
    target = plan.candidate if result.outcome == "promoted" else plan.baseline
    print(f"{result.outcome.upper()}: traffic for {plan.baseline} now goes to {target}")
    return result.exit_code
