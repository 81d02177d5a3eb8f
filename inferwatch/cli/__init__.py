"""The `inferwatch` command: parse, call one library function, print, map errors to exit codes.

One module per command group (engine, collector, load, fleet, canary, eval, gate, rollout, alerts, dashboard,
demo) defines its parser and its commands; options.py holds what they share. Parsing imports nothing but
argparse, the standard library and inferwatch.settings: each command imports the library it calls.

Exit codes (DESIGN): 0 ok, 1 fail, 2 marginal or inconclusive, 3 usage or data error (a bad flag or value, a
bad spec, settings or config file), 130 interrupted. An exception not in ERROR_EXIT_CODES is a bug: it is
raised with its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from inferwatch.cli import alerts, canary, collector, dashboard, demo, engine, evals, fleet, gate, load, rollout
from inferwatch.cli.options import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, Parser

GROUPS = (engine, collector, load, fleet, canary, evals, gate, rollout, alerts, dashboard, demo)

# the errors the library raises with a message meant for the user (module.Class, looked up along the MRO, so
# the command line imports none of them); a test checks that each names a class defined there
ERROR_EXIT_CODES: dict[str, int] = {
    # bad input data or configuration: the message names the file, field or flag
    "inferwatch.settings.SettingsError": EXIT_BAD_INPUT,
    "engine.specs.SpecError": EXIT_BAD_INPUT,
    "gate.config.GateConfigError": EXIT_BAD_INPUT,
    "collector.alerts.rules.AlertConfigError": EXIT_BAD_INPUT,
    "collector.gateway.routes.SplitError": EXIT_BAD_INPUT,
    "canary.probes.ProbeError": EXIT_BAD_INPUT,
    "evals.suites.SuiteError": EXIT_BAD_INPUT,
    "collector.fleet.slo.SloError": EXIT_BAD_INPUT,
    "evals.lm_eval_import.SamplesError": EXIT_BAD_INPUT,
    "collector.auth.AuthConfigError": EXIT_BAD_INPUT,
    "collector.auth.ExposedBind": EXIT_BAD_INPUT,
    # a runtime failure: an engine, collector or store that is not there or did not do its part
    "engine.state.EngineError": EXIT_FAILURE,
    "collector.state.CollectorError": EXIT_FAILURE,
    "collector.store.errors.StoreError": EXIT_FAILURE,
    "collector.store.errors.StoreBusy": EXIT_FAILURE,
    "collector.loadgen.job.LoadJobError": EXIT_FAILURE,
    "canary.client.CanaryError": EXIT_FAILURE,
    "gate.rollout.run.RolloutError": EXIT_FAILURE,
    "dashboards.launch.DashboardError": EXIT_FAILURE,
    "collector.alerts.receiver.ReceiverError": EXIT_FAILURE,
}


def build_parser() -> Parser:
    parser = Parser(prog="inferwatch", description="Observe and validate LLM serving pools.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in GROUPS:
        group.add_to(commands)
    return parser


def exit_code_for(exc: BaseException) -> int | None:
    """The exit code of a library error meant for the user; None for anything else (a bug)."""
    for cls in type(exc).__mro__:
        code = ERROR_EXIT_CODES.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (3, naming the flag; Parser.error)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if (mapped := exit_code_for(exc)) is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return mapped
    return code
