"""`inferwatch canary run` refuses what it cannot run, naming the option, and names the pool and probe when a
pool does not answer as the API promises (a scripted upstream without prompt_logprobs)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import daemon
from tests.collector.faulty_upstream import FaultyUpstream, start_collector
from tests.conftest import inferwatch


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("canary-cli")
    with FaultyUpstream() as upstream:
        start_collector(home, upstream)
        yield home
        daemon.down(home / "collector.json")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reference", "nope"], "no pool 'nope'; pools are ok, err500, garbage, truncated, slow, down"),
        (["--reference", "ok", "--pools", "ok"], "the reference 'ok' is compared with itself by the A/A run"),
        (["--reference", "ok", "--pools", "err500", "--probes", "arith-v9"], "probe set 'arith-v9': no file"),
        (["--reference", "ok", "--pools", "err500", "--alpha", "2"], "alpha must be in (0, 1)"),
    ],
)
def test_bad_options_exit_3_naming_them(home: Path, args: list[str], message: str) -> None:
    done = inferwatch("canary", "run", "--home", str(home), *args)
    assert done.returncode == 3, done.stdout + done.stderr
    assert message in done.stderr


def test_a_pool_that_gives_no_prompt_logprobs_is_named(home: Path) -> None:
    done = inferwatch("canary", "run", "--home", str(home), "--reference", "ok", "--pools", "err500",
                      "--probes", "text-v1", "--in-process", timeout=120)  # fmt: skip
    assert done.returncode == 1
    # probes go out concurrently: whichever failed first is named
    assert re.search(r"probe text-v1-\d{4}\b", done.stderr), done.stderr
    assert "pool ok" in done.stderr or "pool err500" in done.stderr


def test_without_a_collector_it_says_how_to_start_one(tmp_path: Path) -> None:
    done = inferwatch("canary", "run", "--home", str(tmp_path), "--reference", "ref")
    assert done.returncode == 1 and "inferwatch collector up" in done.stderr
