"""The demo's request step against the live pools: every pool answers, the reference correctly."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from canary.job import CanaryJob
from collector import daemon
from collector.state import CollectorState
from collector.store.door import open_reader
from dashboards.launch import stop
from engine.arith import sample_problems
from engine.state import EngineConfig, EngineState
from evals.job import EvalJob
from inferwatch.cli.collector import collector_config
from inferwatch.demo import SHARED_PREFIX, Burst, ask_every_pool, run_demo
from inferwatch.settings import Settings
from tests.conftest import flush_collector, free_port

pytestmark = pytest.mark.engine


def test_demo_asks_every_pool_and_shows_cache_hits(engine: EngineState) -> None:
    rows = ask_every_pool(engine, count=3)
    assert [r["pool"] for r in rows] == [p for p in ("ref", "bf16", "boost", "noisy") for _ in range(5)]
    ref = [r for r in rows if r["pool"] == "ref"]
    assert [r["ok"] for r in ref[:3]] == ["yes"] * 3  # plain problems; the long prompts are out of distribution
    problems = sample_problems(3, seed=2026, held_out=True)
    assert [r["expected"] for r in ref] == [p.answer for p in problems] + ["-", "-"]
    # the 4th and 5th prompts share a 360-character prefix; the 5th reads whole KV blocks of it from the cache
    assert ref[4]["prompt_tok"] == 1 + len(SHARED_PREFIX) + len(problems[1].prompt)
    cached = ref[4]["cached_tok"]
    assert isinstance(cached, int) and 0 < cached <= 1 + len(SHARED_PREFIX)


def test_the_demo_sends_a_burst_through_the_gateway_and_prints_each_pool(
    engine: EngineState, engine_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(engine_home / "engine.json", tmp_path / "engine.json")  # the live pools, in a home of its own
    settings = Settings.from_env({}, home=tmp_path, collector_port=free_port(), scrape_interval_s=1.0)
    cfg = EngineConfig(state_path=settings.engine_state, models_dir=settings.models_dir)
    try:
        light = CanaryJob(reference="ref", probes=("text-v1",), samples=2, concurrencies=(1,))
        burst = Burst(requests=16, rate=50)
        evals = EvalJob(suite="arith-v1", reference="ref", limit=40, progress=False)
        demo = run_demo(settings, cfg, [collector_config(settings)], log=print, burst=burst, canary=light, evals=evals,
                        dashboard_port=free_port())  # fmt: skip
        out = capsys.readouterr().out
        assert demo.code == 0 and demo.dashboard is not None
        # the dashboard is up on the demo's store, and its Fleet page is served
        assert httpx.get(f"{demo.dashboard_url}/_stcore/health", timeout=10).text == "ok"
        assert httpx.get(f"{demo.dashboard_url}/", timeout=10).status_code == 200
        assert "reusing the pools already up" in out
        table = out[out.index("per pool, from the store") :]
        for pool in ("ref", "bf16", "boost", "noisy"):
            # 16 requests round-robin over four pools: 4 each, none failed
            assert re.search(rf"│ {pool}\s+│ r1-[^│]*│\s+4 │\s+0 │", table), table
        # the canary's verdict per pool: the sampler fault writes '#' where text belongs, a critical drift
        verdicts = out[out.index("drift against ref") :]
        assert re.search(r"│ boost\s+│ DRIFT\s+│", verdicts) and "unexpected_chars*" in verdicts, verdicts
        assert re.search(r"│ bf16\s+│ ok\s+│", verdicts), verdicts
        # the eval: 40 arithmetic items on every pool, the reference (nearly) always right
        results = out[out.index("arith-v1, each pool against ref") :]
        assert re.search(r"│ ref\s+│\s+40 │\s+0 │ (9[5-9]|100)\.\d% ", results), results
        assert all(re.search(rf"│ {pool}\s+│\s+40 │", results) for pool in ("bf16", "boost", "noisy")), results
        # the gate: boost's '#' is a critical drift, so it fails (exit 1); every other pool is judged too
        gates = out[out.index("gate: every pool against ref") :]
        assert re.search(r"│ boost\s+│ ref\s+│ fail\s+│[^│]*│\s+1 │[^│]*unexpected_chars", gates), gates
        assert all(re.search(rf"│ {pool}\s+│ ref\s+│", gates) for pool in ("bf16", "noisy")), gates
        # the alerts: boost's drift fires and reaches the receiver, signed
        active = out[out.index("alerts pending and firing") :]
        assert re.search(r"│ InferwatchDrift\s+│ pool=boost\s+│ critical\s+│ firing", active), active
        received = out[out.index("what the webhook receiver got") :]
        assert re.search(r"│ msg_\w+\s+│\s+200 │ firing\s+│\s+\d+ │[^│]*│ ok\s+│", received), received
        collector = CollectorState.load(settings.collector_state)
        assert collector is not None
        flush_collector(collector.url)  # the burst went through the gateway
        with open_reader(collector.store) as store:
            (n,) = store.query("SELECT count(*) AS n FROM requests WHERE source = 'load'").column("n").to_pylist()
            assert n == 16
            gate_rows = store.query("SELECT candidate, exit_code FROM gates ORDER BY candidate").to_pylist()
            assert [r["candidate"] for r in gate_rows] == ["bf16", "boost", "noisy"]
            assert gate_rows[1]["exit_code"] == 1
        # the closing summary: one row per pool with what every part found
        summary = out[out.index("inferwatch: every pool against ref") :]
        assert re.search(r"│ ref\s+│ cpu\s+│[^\n]*│ reference\s+│ \d+\.\d% reference\s+│ reference\s+│", summary), (
            summary
        )
        assert re.search(r"│ boost\s+│ cpu\s+│[^\n]*│ DRIFT: [^\n]*│ FAIL \(exit 1\)\s+│", summary), summary
    finally:
        if "demo" in locals() and demo.dashboard is not None:
            stop(demo.dashboard)
        daemon.down(settings.collector_state)
