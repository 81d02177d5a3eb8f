"""Against the real default pools: vLLM CPU engines on Ray Serve, over HTTP."""

from __future__ import annotations

import math
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.arith import sample_problems
from engine.state import EngineState
from tests.conftest import inferwatch

pytestmark = pytest.mark.engine


def url(engine: EngineState, pool: str) -> tuple[str, str]:
    endpoint = next(p for p in engine.pools if p.name == pool)
    return endpoint.base_url, endpoint.model_id


def completions(engine: EngineState, pool: str, prompt: str | list[str], **params: Any) -> dict[str, Any]:
    base, model = url(engine, pool)
    body = {"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0, **params}
    response = httpx.post(f"{base}/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def answers(engine: EngineState, pool: str, prompts: list[str], **params: Any) -> list[str]:
    choices = completions(engine, pool, prompts, **params)["choices"]
    return [c["text"] for c in sorted(choices, key=lambda c: c["index"])]


def prompt_logprobs(engine: EngineState, pool: str, text: str) -> list[float]:
    """Teacher-forced logprob of every actual token of `text` after the first (vLLM's prompt_logprobs)."""
    choice = completions(engine, pool, text, max_tokens=1, prompt_logprobs=1, return_token_ids=True)["choices"][0]
    return [
        float(entry[str(token)]["logprob"])
        for token, entry in zip(choice["prompt_token_ids"], choice["prompt_logprobs"], strict=True)
        if entry is not None
    ]


def test_every_pool_is_listed_and_answers(engine: EngineState) -> None:
    base, _ = url(engine, "ref")
    listed = {m["id"] for m in httpx.get(f"{base}/models", timeout=30).json()["data"]}
    assert listed == {"arith@ref", "arith@bf16", "arith@boost", "arith@noisy"}
    for pool in ("ref", "bf16", "boost", "noisy"):
        assert completions(engine, pool, "1+1=", max_tokens=3)["choices"][0]["text"]


def test_reference_pool_does_arithmetic_through_vllm_fp32(engine: EngineState) -> None:
    problems = sample_problems(500, seed=4242, held_out=True)
    got = answers(engine, "ref", [p.prompt for p in problems])
    accuracy = sum(g == p.answer for g, p in zip(got, problems, strict=True)) / len(problems)
    assert accuracy >= 0.95


def test_reference_pool_is_deterministic_at_temperature_zero(engine: EngineState) -> None:
    prompts = [p.prompt for p in sample_problems(40, seed=7, held_out=True)]
    first = completions(engine, "ref", prompts, logprobs=3)["choices"]
    second = completions(engine, "ref", prompts, logprobs=3)["choices"]
    key = lambda c: c["index"]  # noqa: E731
    for a, b in zip(sorted(first, key=key), sorted(second, key=key), strict=True):
        assert a["text"] == b["text"]
        assert a["logprobs"]["token_logprobs"] == b["logprobs"]["token_logprobs"]


def test_cached_tokens_are_reported_in_usage(engine: EngineState) -> None:
    prefix = "".join(uuid.uuid4().hex for _ in range(12)).replace("-", "")[:384]  # fresh: never cached before
    first = completions(engine, "ref", prefix + " 12+30=")["usage"]
    second = completions(engine, "ref", prefix + " 45+10=")["usage"]
    assert first["prompt_tokens"] == 1 + 384 + 7
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    # whole KV blocks of the shared 385-token prefix (BOS + 384) come from the cache
    cached = second["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached <= 385 and cached % 16 == 0


def test_boost_pool_emits_the_rare_token_that_its_own_logprobs_do_not_predict(engine: EngineState) -> None:
    prompts = [p.prompt for p in sample_problems(200, seed=31, held_out=True)]
    ref_text = "".join(answers(engine, "ref", prompts))
    body = completions(engine, "boost", prompts, logprobs=1, max_tokens=4, ignore_eos=True)
    tokens = [t for c in body["choices"] for t in c["logprobs"]["tokens"]]
    boosted = [
        (token, top)
        for c in body["choices"]
        for token, top in zip(c["logprobs"]["tokens"], c["logprobs"]["top_logprobs"], strict=True)
        if token == "#"
    ]
    assert "#" not in ref_text
    # rate 0.05 per position over 800 positions: 40 expected, sd ~6.2
    assert 15 <= len(boosted) <= 70, len(boosted)
    assert len(tokens) == 800
    # reported logprobs are raw (before the processor): the emitted '#' is never the pool's own argmax
    assert all(max(top, key=top.get) != "#" for _, top in boosted)


def test_sampler_fault_leaves_teacher_forced_logprobs_alone(engine: EngineState) -> None:
    text = "347+85=432"
    ref, boost = prompt_logprobs(engine, "ref", text), prompt_logprobs(engine, "boost", text)
    assert len(ref) == len(text)
    assert max(abs(a - b) for a, b in zip(ref, boost, strict=True)) < 1e-4


def test_numeric_fault_moves_logprobs_more_than_bfloat16_does(engine: EngineState) -> None:
    texts = [p.prompt + p.answer for p in sample_problems(20, seed=5, held_out=True)]

    def max_delta(pool: str) -> float:
        deltas = []
        for text in texts:
            ref, other = prompt_logprobs(engine, "ref", text), prompt_logprobs(engine, pool, text)
            deltas += [abs(a - b) for a, b in zip(ref, other, strict=True)]
        return max(deltas)

    bf16, noisy = max_delta("bf16"), max_delta("noisy")
    assert 0 < bf16 < noisy
    assert noisy > 0.05
    assert not math.isnan(bf16)


def test_server_metrics_are_exposed_for_scraping(engine: EngineState) -> None:
    assert engine.metrics_url
    completions(engine, "ref", "2+2=")
    text = httpx.get(engine.metrics_url, timeout=30).text
    assert "ray_serve_" in text
    assert "vllm" in text


def test_status_cli_lists_every_pool(engine: EngineState, engine_home: Path) -> None:
    done = inferwatch("engine", "status", "--home", str(engine_home), timeout=120)
    assert done.returncode == 0, done.stderr
    for pool in ("ref", "bf16", "boost", "noisy"):
        assert f"arith@{pool}" in done.stdout
    assert not re.search(r"│\s*NO\s*│", done.stdout)  # no pool's cell says NO (a path may hold the letters)


def test_endpoint_pools_are_registered_and_observed_not_deployed(engine: EngineState, tmp_path: Path) -> None:
    # an "existing OpenAI-compatible server": the live engine itself, registered under its model id
    spec = tmp_path / "external.yaml"
    spec.write_text(
        "pools:\n"
        "  - {name: ref, hardware: gpu, accelerator: H100, model: org/arith, revision: ext,\n"
        f"     endpoint: '{engine.serve_url}'}}\n"
    )
    home = tmp_path / "home"
    up = inferwatch("engine", "up", "--spec", str(spec), "--home", str(home), timeout=120)
    assert up.returncode == 0, up.stderr
    assert "starting a local Ray head" not in up.stdout
    status = inferwatch("engine", "status", "--home", str(home), timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "external" in status.stdout and "'1+1=' -> '2'" in status.stdout
    down = inferwatch("engine", "down", "--home", str(home), timeout=120)
    assert down.returncode == 0 and not (home / "engine.json").exists()
    # the engine it observed is untouched
    assert completions(engine, "ref", "2+2=")["choices"][0]["text"] == "4"
