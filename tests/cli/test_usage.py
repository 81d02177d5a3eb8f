"""Usage errors exit 3 naming the flag (never argparse's 2, which the gate's CI reads as "marginal"), and
`--help` prints without importing the library: vLLM, Ray, torch and the collector stay out of the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inferwatch.cli import GROUPS, build_parser, main
from tests.conftest import ROOT

# every command as a user types it, with what it needs to get past its positional arguments
COMMANDS = [
    ["engine", "up"], ["engine", "status"], ["collector", "up"], ["load"], ["fleet"], ["canary", "run"],
    ["eval", "run"], ["eval", "report"], ["eval", "import", "ref=x.jsonl"], ["eval"], ["gate"], ["rollout"],
    ["alerts", "check"], ["dashboard"], ["demo"],
]  # fmt: skip


def test_every_command_is_covered() -> None:
    groups = {name for action in build_parser()._subparsers._group_actions for name in action.choices}
    assert {c[0] for c in COMMANDS} == groups and len(GROUPS) == len(groups) == 11


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_flag_exits_3_naming_it(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--bogus"]) == 3
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["gate", "--window", "15x", "--baseline", "a", "--candidate", "b"],
            "argument --window: '15x' is not a duration",
        ),
        (["gate", "--window", "15m", "--baseline", "a"], "the following arguments are required: --candidate"),
        ([], "the following arguments are required: command"),
        (["engine"], "the following arguments are required: action"),
        (["engine", "sideways"], "argument action: invalid choice: 'sideways'"),
        (["load", "--dataset", "poems"], "argument --dataset: 'poems': choose from random, prefix, arith, mixed"),
        (["load", "--num-requests", "many"], "argument --num-requests: invalid int value: 'many'"),
        (["fleet", "--window", "0s"], "argument --window: '0s': a duration must be > 0"),
        (["gate", "--baseline", "a", "--candidate", "b", "--format", "pdf"], "argument --format: invalid choice"),
    ],
)
def test_a_bad_or_missing_value_exits_3_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 3
    assert message in capsys.readouterr().err


def test_an_abbreviated_flag_and_a_negative_number_are_not_unknown() -> None:
    parser = build_parser()
    args = parser.parse_args(["load", "--num-req", "3", "--temperature", "-1"])
    assert (args.num_requests, args.temperature) == (3, -1.0)


def test_the_console_script_exits_3_on_usage_too() -> None:
    done = subprocess.run([sys.executable, "-m", "inferwatch.cli", "gate", "--bogus"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 3 and "unrecognized arguments: --bogus" in done.stderr


PROBE = """
import contextlib, io, sys
from inferwatch.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:] + ["--help"])
heavy = {"vllm", "ray", "torch", "collector", "canary", "evals", "gate", "engine", "dashboards", "duckdb"}
print(code, len(out.getvalue()) > 200, sorted({m.split(".")[0] for m in sys.modules} & heavy))
"""


@pytest.mark.parametrize("command", [[], *sorted({c[0]: c[:1] for c in COMMANDS}.values()), ["eval", "run"]],
                         ids=lambda c: " ".join(c) or "inferwatch")  # fmt: skip
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, *command], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "True", "[]"], done.stdout
