"""The demo's request step against the live pools: every pool answers, the reference correctly."""

from __future__ import annotations

import pytest

from engine.arith import sample_problems
from engine.lifecycle import EngineState
from inferwatch.demo import SHARED_PREFIX, ask_every_pool

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
