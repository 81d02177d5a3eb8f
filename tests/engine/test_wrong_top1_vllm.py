"""The batch-dependent wrong-top-1 fault in a real vLLM engine (in-process), where the batch size is ours to set."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.arith import sample_problems
from engine.serve_app import engine_kwargs
from engine.specs import load_pools

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    spec = load_pools(DATA / "pools-faults.yaml").get("topk")
    kwargs = engine_kwargs(spec)
    for frontend_option in ("enable_prompt_tokens_details", "enable_per_request_metrics"):
        kwargs.pop(frontend_option)  # server (frontend) options, not engine ones
    engine = LLM(model=spec.model, **kwargs)
    yield engine
    del engine
    gc.collect()


def greedy(llm: Any, prompts: list[str]) -> list[str]:
    from vllm import SamplingParams

    outputs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=6), use_tqdm=False)
    return [o.outputs[0].text for o in outputs]


def test_wrong_top1_is_harmless_at_small_batches_and_wrong_at_large_ones(llm: Any) -> None:
    problems = sample_problems(8, seed=77, held_out=True)
    # one at a time: batch 1 <= 4, the fault sleeps and the model is right
    alone = [greedy(llm, [p.prompt])[0] for p in problems]
    assert sum(a == p.answer for a, p in zip(alone, problems, strict=True)) >= 7
    # all eight together: batch 8 > 4, the true top-1 is dropped and the first digit is the runner-up
    together = greedy(llm, [p.prompt for p in problems])
    assert all(t != p.answer for t, p in zip(together, problems, strict=True))
    assert all(t[:1] != p.answer[:1] for t, p in zip(together, problems, strict=True))
