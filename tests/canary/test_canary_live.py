"""`inferwatch canary run` against the real default pools: each fault pool is flagged by the metric and probe
that caught it; bfloat16 is not; the A/A calibration is kept and reused; rows land in the store."""

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


def verdicts(stdout: str) -> dict[tuple[str, str], str]:
    """(pool, metric) -> verdict from the summary table."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 8 and cells[1] in ("bf16", "boost", "noisy"):
            found[cells[1], cells[3].rstrip(" *")] = cells[7]
    return found


@pytest.fixture(scope="module")
def canary_home(
    engine: EngineState, engine_home: Path, live_collector: Any, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    home = tmp_path_factory.mktemp("canary-home")
    shutil.copy(engine_home / "engine.json", home / "engine.json")
    live_collector.save(home / "collector.json")
    return home


def test_fault_pools_drift_and_bfloat16_does_not(canary_home: Path, live_collector: CollectorState) -> None:
    done = inferwatch("canary", "run", "--home", str(canary_home), "--reference", "ref", timeout=1200)
    assert done.returncode == 1, done.stdout + done.stderr  # drift found: exit 1
    assert "calibrating: an A/A run of ref" in done.stdout
    got = verdicts(done.stdout)
    # the sampler fault: '#' where a digit belongs, a token the reference never ranks, its own logprobs disown it
    for metric in ("unexpected_chars", "greedy_hard_mismatch", "self_inconsistency"):
        assert got["boost", metric] == "drift", done.stdout
    assert got["boost", "tf_mean_kl"] == "ok"  # raw logprobs: a sampler fault leaves teacher-forced scores alone
    # the numeric fault moves the distribution itself
    assert got["noisy", "tf_mean_kl"] == "drift" or got["noisy", "tf_confident_flips"] == "drift", done.stdout
    assert all(v != "drift" for (pool, _), v in got.items() if pool == "bf16"), done.stdout
    assert "drifting: boost, noisy" in done.stdout
    run_id = re.search(r"canary (\w+): each pool", done.stdout).group(1)  # type: ignore[union-attr]
    flush_collector(live_collector.url)  # the canary's requests went through the gateway
    with open_reader(live_collector.store) as store:
        drift = store.query("SELECT pool, metric, verdict FROM drift WHERE run_id = ?", [run_id]).to_pylist()
        probes = store.query("SELECT count(*) AS n FROM probes WHERE run_id = ?", [run_id]).column("n")[0].as_py()
        canary_requests = (
            store.query("SELECT count(*) AS n FROM requests WHERE run_id = ? AND source = 'canary'", [run_id])
            .column("n")[0]
            .as_py()
        )
    assert {(r["pool"], r["metric"]) for r in drift if r["verdict"] == "drift"} >= {("boost", "unexpected_chars")}
    assert len(drift) == 3 * 7 and probes > 0 and canary_requests > 0
    exposition = httpx.get(f"{live_collector.url}/metrics", timeout=10).text
    assert re.search(
        r'inferwatch_drift_flagged\{[^}]*metric="unexpected_chars"[^}]*pool="boost"[^}]*\} 1\.0', exposition
    )
    assert re.search(
        r'inferwatch_drift_flagged\{[^}]*metric="unexpected_chars"[^}]*pool="bf16"[^}]*\} 0\.0', exposition
    )
    # the calibration is kept: a second run reuses it
    again = inferwatch(
        "canary", "run", "--home", str(canary_home), "--reference", "ref", "--pools", "bf16", timeout=1200
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "calibrating" not in again.stdout
