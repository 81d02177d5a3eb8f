"""The gateway in front of the real pools (vLLM CPU engines on Ray Serve)."""

from __future__ import annotations

import json
import random
import string
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.state import CollectorState
from collector.store.door import open_reader
from engine.state import EngineState
from tests.conftest import flush_collector

pytestmark = pytest.mark.engine


def events(text: str) -> list[Any]:
    """The events of a stream without the fields that differ per request (id, created, the engine's timings:
    `metrics` is kept as its keys)."""
    out: list[Any] = []
    for event in (e for e in text.split("\n\n") if e):
        assert event.startswith("data: ")
        payload = event[6:]
        if payload == "[DONE]":
            out.append(payload)
            continue
        chunk = json.loads(payload)
        chunk.pop("id")
        chunk.pop("created")
        if isinstance(chunk.get("metrics"), dict):
            chunk["metrics"] = sorted(chunk["metrics"])
        out.append(chunk)
    return out


def merged(stream: list[Any]) -> dict[str, Any]:
    """What a stream says whatever its chunking: the text of each choice, its finish, the usage, every field the
    events carried (the keys of each event and choice), and that it ended with [DONE]."""
    text: dict[int, str] = {}
    finish: dict[int, Any] = {}
    keys: set[tuple[str, ...]] = set()
    usage = None
    for event in stream[:-1]:
        keys.add(tuple(sorted(event)))
        usage = event.get("usage") or usage
        for choice in event["choices"]:
            keys.add(tuple(sorted(choice)))
            text[choice["index"]] = text.get(choice["index"], "") + choice["text"]
            finish[choice["index"]] = choice["finish_reason"] or finish.get(choice["index"])
    return {"text": text, "finish": finish, "usage": usage, "keys": keys, "last": stream[-1]}


def stored(collector: CollectorState, request_id: str) -> dict[str, Any]:
    """The request's row, once the collector has committed its journal."""
    flush_collector(collector.url)
    with open_reader(collector.store) as store:
        rows: list[dict[str, Any]] = store.query("SELECT * FROM requests WHERE id = ?", [request_id]).to_pylist()
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("include_usage", [False, True])
def test_the_client_gets_what_the_pool_sends(
    engine: EngineState, live_collector: CollectorState, include_usage: bool
) -> None:
    body = {"model": "arith@ref", "prompt": "347+85=", "max_tokens": 6, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": include_usage}}  # fmt: skip
    direct = httpx.post(f"{engine.pools[0].base_url}/completions", json=body, timeout=60)
    through = httpx.post(f"{live_collector.url}/v1/completions", json=body, timeout=60,
                         headers={"x-request-id": f"live-same-{include_usage}"})  # fmt: skip
    assert through.status_code == direct.status_code == 200
    # the pool's stream batching groups tokens into events differently per request: the same text, end and
    # fields, not necessarily the same events
    assert merged(events(through.text)) == merged(events(direct.text))
    assert "".join(e["choices"][0]["text"] for e in events(through.text)[:-1] if e["choices"]) == "432"
    row = stored(live_collector, f"live-same-{include_usage}")
    # "432" then the end: 4 completion tokens (3 digits + </s>)
    assert (row["status"], row["completion_tokens"], row["prompt_tokens"], row["finish_reason"]) == ("ok", 4, 8, "stop")
    assert 0 < row["ttft_s"] <= row["e2e_s"]  # equal when the proxy delivers all events in one read


def test_chat_is_recorded_as_chat(live_collector: CollectorState) -> None:
    body = {"model": "arith@bf16", "messages": [{"role": "user", "content": "12+34="}], "max_tokens": 5,
            "temperature": 0, "stream": True}  # fmt: skip
    reply = httpx.post(f"{live_collector.url}/v1/chat/completions", json=body, timeout=60,
                       headers={"x-request-id": "live-chat"})  # fmt: skip
    assert reply.status_code == 200
    row = stored(live_collector, "live-chat")
    assert (row["operation"], row["pool"], row["revision"], row["status"]) == ("chat", "bf16", "r1-bf16", "ok")
    assert row["completion_tokens"] >= 1 and row["ttft_s"] is not None


def test_a_shared_prefix_shows_as_cached_tokens(live_collector: CollectorState) -> None:
    # a prefix no other test used: 300 random letters. Prompt = BOS + 300 + " 1i+2=" (6) = 307 tokens (one per
    # char). The CPU KV cache block is 128 tokens: the second request finds the two full blocks both prompts
    # share (tokens 0-255) cached; the third block is partial and differs.
    prefix = "".join(random.Random(time.time_ns()).choices(string.ascii_lowercase, k=300))
    for i in range(2):
        body = {"model": "arith@ref", "prompt": f"{prefix} 1{i}+2=", "max_tokens": 2, "stream": True}
        httpx.post(
            f"{live_collector.url}/v1/completions", json=body, timeout=60, headers={"x-request-id": f"live-prefix-{i}"}
        )
    first, second = stored(live_collector, "live-prefix-0"), stored(live_collector, "live-prefix-1")
    assert (first["prompt_tokens"], first["cached_tokens"]) == (307, 0)
    assert (second["prompt_tokens"], second["cached_tokens"]) == (307, 256)


def serve_log_lines(request_id: str) -> list[str]:
    """Ray Serve's log lines about one request (proxy, ingress, the pool's LLMServer replica: the replicas'
    request lines reach their worker's .err file before the serve/ log)."""
    logs = Path("/tmp/ray/session_latest/logs")
    lines = []
    for path in [*logs.glob("serve/*.log"), *logs.glob("worker-*.err")]:
        lines += [line for line in path.read_text(errors="replace").splitlines() if f" {request_id} -- " in line]
    return lines


def test_a_client_that_goes_away_cancels_the_request_in_the_pool(live_collector: CollectorState) -> None:
    # 500 tokens take the pool about 2 s; the client leaves after the first few events
    body = {"model": "arith@noisy", "prompt": "1+1=", "max_tokens": 500, "ignore_eos": True, "stream": True}
    request_id = f"live-gone-{time.time_ns()}"
    with httpx.stream("POST", f"{live_collector.url}/v1/completions", json=body, timeout=60,
                      headers={"x-request-id": request_id}) as reply:  # fmt: skip
        next(reply.iter_raw())  # the first bytes, then the client leaves
    # Serve's proxy cancels it; the pool's replica logs "CANCELLED", except when the cancel overtakes the call
    # before the replica logs it (seen once in CI: no replica line at all). Either way the pool must never
    # finish the 500 tokens (about 2 s): no "OK" from the replica.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = serve_log_lines(request_id)
        if any("LLMServer:arith@noisy" in line and "CANCELLED" in line for line in lines):
            break
        time.sleep(0.5)
    pool = [line for line in lines if "LLMServer:arith@noisy" in line]
    assert not any("CALL completions OK" in line for line in pool), pool
    assert any("CALL completions CANCELLED" in line for line in pool) or any(
        "disconnected, cancelling request" in line for line in lines
    ), lines
    row = stored(live_collector, request_id)
    assert (row["status"], row["error_type"]) == ("cancelled", "cancelled")
    assert row["completion_tokens"] is None  # the usage event never came
