"""`inferwatch eval run` against the real default pools, fanned out as Ray tasks on the engine's cluster:
the reference is accurate, the numeric-fault pool's drop is significant, bfloat16 is not flagged; the
format suite catches the sampler-fault pool's stray characters; rows, requests and gauges land."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.state import CollectorState
from collector.store.door import open_reader
from engine.state import EngineState
from tests.conftest import flush_collector, inferwatch

pytestmark = pytest.mark.engine


def table(stdout: str) -> dict[str, dict[str, str]]:
    """pool -> column -> cell, from the summary table."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")]
    header = next(line for line in stdout.splitlines() if line.startswith("┃"))
    columns = [c.strip() for c in header.split("┃")[1:-1]]
    return {row[0]: dict(zip(columns, row, strict=True)) for row in rows if row and row[0]}


@pytest.fixture(scope="module")
def eval_home(
    engine: EngineState, engine_home: Path, live_collector: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    home = tmp_path_factory.mktemp("eval-home")
    shutil.copy(engine_home / "engine.json", home / "engine.json")  # the Ray cluster the tasks run on
    live_collector.save(home / "collector.json")
    return home


def test_arith_suite_flags_the_numeric_fault_and_not_bfloat16(eval_home: Path, live_collector: CollectorState) -> None:
    done = inferwatch("eval", "run", "--home", str(eval_home), "--suite", "arith-v1", "--reference", "ref",
                      "--pools", "bf16,noisy", timeout=1200)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # a pool regressed
    assert "┃" in done.stdout, done.stdout + done.stderr[-5000:]  # exit 1 from the table, not from an error
    got = table(done.stdout)
    assert float(got["ref"]["accuracy"].rstrip("%")) >= 95.0, done.stdout
    assert got["noisy"]["verdict"] == "regressed" and float(got["noisy"]["p"]) < 0.05, done.stdout
    assert got["bf16"]["verdict"] in ("pass", "inconclusive"), done.stdout
    assert all(got[p]["errors"] == "0" for p in ("ref", "bf16", "noisy")), done.stdout
    run_id = re.search(r"eval (\w+): arith-v1", done.stdout).group(1)  # type: ignore[union-attr]
    flush_collector(live_collector.url)  # the eval's requests went through the gateway
    with open_reader(live_collector.store) as store:
        items = store.query("SELECT pool, count(*) AS n FROM eval_items WHERE run_id = ? GROUP BY pool ORDER BY pool",
                            [run_id]).to_pylist()  # fmt: skip
        requests = store.query("SELECT count(*) AS n FROM requests WHERE run_id = ? AND source = 'eval'", [run_id])
        summary = store.query("SELECT pool, verdict FROM eval_runs WHERE run_id = ? ORDER BY pool", [run_id])
    assert items == [{"pool": p, "n": 1000} for p in ("bf16", "noisy", "ref")]
    assert requests.column("n")[0].as_py() == 3000  # every item went through the gateway once
    assert dict(zip(*summary.to_pydict().values(), strict=True))["noisy"] == "regressed"
    metrics = httpx.get(f"{live_collector.url}/metrics").text
    assert re.search(r'inferwatch_eval_regressed\{[^}]*pool="noisy"[^}]*suite="arith-v1"[^}]*\} 1\.0', metrics)
    # the gate on that store: the numeric fault fails, naming the critical metric (issue 6's acceptance)
    home = Path(live_collector.store).parent
    gate = inferwatch("gate", "--home", str(home), "--store", live_collector.store, "--baseline", "ref",
                      "--candidate", "noisy", "--window", "30m")  # fmt: skip
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert re.search(r"│ eval:arith-v1 !\s+│ quality\s+│[^\n]*│ low\s+│", gate.stdout), gate.stdout


def test_format_suite_catches_the_sampler_fault(eval_home: Path) -> None:
    # the first 150 items check that the answer stays in the digits: the boost pool slips '#' into some
    done = inferwatch("eval", "run", "--home", str(eval_home), "--suite", "format-v1", "--reference", "ref",
                      "--pools", "boost", "--limit", "150", timeout=600)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    got = table(done.stdout)
    assert got["ref"]["accuracy"] == "100.0%" and got["boost"]["verdict"] == "regressed", done.stdout
