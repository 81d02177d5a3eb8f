from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import pytest
from aiohttp import web

from collector.loadgen.runner import (
    LoadConfig,
    LoadResult,
    RequestResult,
    error_message,
    error_rows,
    pool_of,
    run_load,
    run_load_async,
    summary_rows,
    weighted_round_robin,
)
from collector.loadgen.workloads import WorkItem, arith_workload, prefix_workload, random_workload
from collector.vocabulary import Status
from engine.state import EngineState
from tests.collector.faulty_upstream import FaultyUpstream
from tests.conftest import free_port

# ---------------------------------------------------------------- pure parts


def test_round_robin_and_weighted_shares() -> None:
    assert list(islice(weighted_round_robin(["a", "b"]), 5)) == ["a", "b", "a", "b", "a"]
    # smooth weighted round-robin, weights 3:1 (total 4): current (3,1) a -> (-1,1); (2,2) a -> (-2,2);
    # (1,3) b -> (1,-1); (4,0) a -> (0,0): the cycle a a b a repeats
    assert list(islice(weighted_round_robin(["a", "b"], [3, 1]), 8)) == ["a", "a", "b", "a"] * 2


def test_pool_of_model_id() -> None:
    assert (pool_of("arith@bf16"), pool_of("plain"), pool_of("m@a@b")) == ("bf16", "plain", "a@b")


def test_error_messages_of_both_styles() -> None:
    assert error_message(b'{"error": {"message": "max_tokens too big", "code": 400}}') == "max_tokens too big"
    assert error_message(b'{"detail": "Could not find base model"}') == "Could not find base model"
    assert error_message(b'{"object": "error", "message": "engine dead"}') == "engine dead"
    assert error_message(b"<html>bad gateway</html>\n") == "<html>bad gateway</html>"
    assert error_message(b"") == "(empty body)"
    assert error_message(b"x" * 2000) == "x" * 500


def test_completions_url() -> None:
    assert LoadConfig("http://h:8000/v1/", ("m",)).completions_url == "http://h:8000/v1/completions"
    assert LoadConfig("http://h:8000", ("m",)).completions_url == "http://h:8000/v1/completions"
    assert LoadConfig("http://h/pool/v1", ("m",)).completions_url == "http://h/pool/v1/completions"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"models": ()}, "models"), ({"weights": (1.0,)}, "weights"), ({"weights": (1.0, 0.0)}, "weights"),
     ({"num_requests": 0}, "num_requests"), ({"duration_s": 0.0}, "duration_s"),
     ({"max_concurrency": 0}, "max_concurrency"), ({"rate": 0.0}, "rate"), ({"burstiness": -1.0}, "burstiness"),
     ({"duration_s": 5.0}, "rate"), ({"base_url": "127.0.0.1:8000"}, "base_url")],
)  # fmt: skip
def test_bad_config_names_the_field(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"base_url": "http://127.0.0.1:8000/v1", "models": ("a@x", "b@y"), **kwargs}
    with pytest.raises(ValueError, match=f"^{field}"):
        LoadConfig(**args)


def _done(pool: str, ttft: float, tpot: float | None, itl: tuple[float, ...], e2e: float, out: int) -> RequestResult:
    return RequestResult(
        id="r", model=f"m@{pool}", pool=pool, status=Status.ok, sent_s=0.0, e2e_s=e2e, ttft_s=ttft, tpot_s=tpot,
        itl_s=itl, prompt_tokens=100, cached_tokens=50, completion_tokens=out,
    )  # fmt: skip


def test_summary_by_hand() -> None:
    requests = (
        _done("x", 0.010, 0.001, (0.001, 0.003), 0.020, 5),
        _done("x", 0.040, 0.004, (0.002,), 0.050, 3),
        _done("x", 0.020, 0.002, (), 0.030, 2),
        _done("x", 0.030, None, (), 0.030, 1),  # one token: no TPOT
        RequestResult(id="e", model="m@x", pool="x", status=Status.error, sent_s=0, e2e_s=9.0, error="HTTP 500: no"),
        _done("y", 0.100, 0.010, (0.010,), 0.200, 10),
    )
    x, y = summary_rows(LoadResult("run", "http://h", duration_s=2.0, requests=requests))
    assert (x["pool"], x["requests"], x["errors"], y["pool"], y["requests"], y["errors"]) == ("x", 5, 1, "y", 1, 0)
    # TTFT of the ok requests, sorted 10 20 30 40 ms; linear interpolation at (n - 1) q = 3q:
    # p50 at 1.5 -> 25; p90 at 2.7 -> 37; p99 at 2.97 -> 39.7 (the 9 s error is left out)
    assert x["ttft_p50_ms"] == pytest.approx(25.0)
    assert x["ttft_p90_ms"] == pytest.approx(37.0)
    assert x["ttft_p99_ms"] == pytest.approx(39.7)
    # TPOT 1 2 4 ms (None dropped): p50 2; p90 at 1.8 -> 2 + 0.8 * 2 = 3.6; p99 at 1.98 -> 3.96
    assert (x["tpot_p50_ms"], x["tpot_p90_ms"], x["tpot_p99_ms"]) == pytest.approx((2.0, 3.6, 3.96))
    assert x["itl_p50_ms"] == pytest.approx(2.0)  # all gaps pooled: 1 3 2 ms -> median 2
    assert x["e2e_p50_ms"] == pytest.approx(30.0)  # 20 50 30 30 -> 30
    assert x["out_tok_s"] == pytest.approx((5 + 3 + 2 + 1) / 2.0)
    assert x["req_s"] == pytest.approx(4 / 2.0)
    assert x["cache_hit"] == pytest.approx(0.5)
    assert y["ttft_p99_ms"] == pytest.approx(100.0) and y["out_tok_s"] == pytest.approx(5.0)


def test_a_pool_with_only_errors_has_no_latency() -> None:
    failed = RequestResult(id="e", model="m@z", pool="z", status=Status.error, sent_s=0, e2e_s=0.1, error="boom")
    (row,) = summary_rows(LoadResult("run", "http://h", 1.0, (failed, failed)))
    assert (row["requests"], row["errors"], row["ttft_p50_ms"], row["req_s"], row["cache_hit"]) == (2, 2, None, 0, None)
    assert error_rows(LoadResult("run", "http://h", 1.0, (failed, failed))) == [
        {"pool": "z", "count": 2, "error": "boom"}
    ]


# ---------------------------------------------------------------- a scripted server, for what pools cannot show


class Scripted:
    """Streams max_tokens digits `gap_s` apart and answers like the gateway (x-inferwatch-pool); records the
    headers it saw and the peak number of concurrent streams. Model "x@midstream" fails after one token."""

    def __init__(self, gap_s: float = 0.0) -> None:
        self.gap_s = gap_s
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.active = self.peak = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    def event(payload: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(payload).encode() + b"\n\n"

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, body))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            response = web.StreamResponse(headers={"content-type": "text/event-stream", "x-inferwatch-pool": "east"})
            await response.prepare(request)
            for i in range(body["max_tokens"]):
                await asyncio.sleep(self.gap_s)
                if i == 1 and body["model"] == "x@midstream":
                    await response.write(self.event({"error": {"message": "engine died", "code": 500}}))
                    return response
                await response.write(self.event({"choices": [{"index": 0, "text": str(i), "finish_reason": None}]}))
            usage = {"prompt_tokens": 9, "completion_tokens": body["max_tokens"]}
            await response.write(self.event({"choices": [], "usage": usage}) + b"data: [DONE]\n\n")
            return response
        finally:
            self.active -= 1

    def run(self, config: Callable[[str], LoadConfig], items: list[WorkItem]) -> LoadResult:
        async def scenario() -> LoadResult:
            app = web.Application()
            app.router.add_post("/v1/completions", self.completions)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            try:
                return await run_load_async(config(self.url), items)
            finally:
                await runner.cleanup()

        return asyncio.run(scenario())


ITEMS = [WorkItem("1+1=", 3, 5, expected="2"), WorkItem("2+2=", 3, 5, expected="4")]


def test_gateway_contract_headers_and_pool() -> None:
    server = Scripted()
    result = server.run(
        lambda url: LoadConfig(url, ("arith@ref", "arith@bf16"), num_requests=4, run_id="run-7", ignore_eos=True),
        ITEMS,
    )
    assert [r.status for r in result.requests] == [Status.ok] * 4
    assert {r.pool for r in result.requests} == {"east"}  # the gateway's header wins over the model id
    assert [r.model for r in result.requests] == ["arith@ref", "arith@bf16"] * 2
    assert [(r.completion_tokens, r.prompt_tokens, r.text) for r in result.requests] == [(3, 9, "012")] * 4
    assert all(r.ttft_s is not None and r.ttft_s <= r.e2e_s and len(r.itl_s) == 2 for r in result.requests)
    headers = [h for h, _ in server.received]
    assert {(h["x-inferwatch-source"], h["x-inferwatch-run"]) for h in headers} == {("load", "run-7")}
    assert sorted(h["x-request-id"] for h in headers) == ["run-7-0", "run-7-1", "run-7-2", "run-7-3"]
    body = server.received[0][1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and "temperature" not in body
    # each model gets the items in the same order (the same prompts for every pool), cycling
    sent = sorted((h["x-request-id"], b["model"], b["prompt"]) for h, b in server.received)
    assert [(model, prompt) for _, model, prompt in sent] == [
        ("arith@ref", "1+1="), ("arith@bf16", "1+1="), ("arith@ref", "2+2="), ("arith@bf16", "2+2=")
    ]  # fmt: skip


def test_concurrency_cap_holds() -> None:
    server = Scripted(gap_s=0.02)
    result = server.run(lambda url: LoadConfig(url, ("m@a",), num_requests=8, max_concurrency=3), ITEMS)
    assert len(result.requests) == 8 and all(r.status is Status.ok for r in result.requests)
    assert server.peak == 3  # all 8 arrive at once; each stream lasts >= 60 ms, so exactly 3 overlap


def test_duration_bounds_the_sending() -> None:
    # regular arrivals (burstiness inf) every 1/32 s = 0.03125 s, exact in binary: offsets 1..7 x 0.03125
    # fall before 0.25 s, the 8th is at 0.25 and is not sent
    server = Scripted()
    result = server.run(
        lambda url: LoadConfig(url, ("m@a",), duration_s=0.25, rate=32.0, burstiness=math.inf, progress=False),
        ITEMS,
    )
    assert len(result.requests) == 7 and all(r.status is Status.ok for r in result.requests)
    # never before its time (how late depends on the machine: a loaded one sent it a second late)
    assert result.requests[-1].sent_s >= 7 * 0.03125 - 0.005


def test_an_error_event_mid_stream() -> None:
    result = Scripted().run(lambda url: LoadConfig(url, ("x@midstream",), num_requests=1), ITEMS)
    (r,) = result.requests
    assert (r.status, r.http_status, r.error, r.text) == (Status.error, 200, "stream error: engine died", "0")


@pytest.fixture(scope="module")
def faulty() -> Iterator[FaultyUpstream]:
    with FaultyUpstream() as upstream:
        yield upstream


@pytest.mark.parametrize(
    ("mode", "http_status", "error"),
    [("err500", 500, "HTTP 500: engine dead"), ("garbage", 200, "malformed stream: "),
     ("truncated", 200, "the stream ended before [DONE]")],
)  # fmt: skip
def test_broken_upstreams_become_error_rows(faulty: FaultyUpstream, mode: str, http_status: int, error: str) -> None:
    result = run_load(LoadConfig(f"{faulty.url}/{mode}/v1", ("arith@x",), num_requests=2, progress=False), ITEMS)
    assert [(r.status, r.http_status) for r in result.requests] == [(Status.error, http_status)] * 2
    assert all(r.error is not None and r.error.startswith(error) for r in result.requests)
    (row,) = summary_rows(result)
    assert (row["pool"], row["requests"], row["errors"], row["ttft_p50_ms"]) == ("x", 2, 2, None)


def test_nothing_listening_gives_errors_not_a_crash() -> None:
    config = LoadConfig(f"http://127.0.0.1:{free_port()}/v1", ("arith@ref",), num_requests=3, progress=False)
    result = run_load(config, ITEMS)
    assert [(r.status, r.http_status, r.pool) for r in result.requests] == [(Status.error, None, "ref")] * 3
    assert all("Cannot connect" in (r.error or "") for r in result.requests)


# ---------------------------------------------------------------- the real pools


def _pool_ids(engine: EngineState) -> tuple[str, dict[str, str]]:
    return engine.pools[0].base_url, {p.name: p.model_id for p in engine.pools}


@pytest.mark.engine
def test_fixed_output_length_on_two_pools(engine: EngineState) -> None:
    base_url, ids = _pool_ids(engine)
    items = random_workload(12, input_len=32, output_len=8, seed=11)
    config = LoadConfig(base_url, (ids["ref"], ids["bf16"]), rate=20.0, max_concurrency=4, ignore_eos=True, seed=1)
    result = run_load(config, items)
    assert [r.status for r in result.requests] == [Status.ok] * 12, error_rows(result)
    for item, r in zip(items, result.requests, strict=True):
        assert (r.completion_tokens, r.prompt_tokens, r.finish_reason) == (8, 32, "length")
        assert item.prompt_tokens == 32
        # a loaded server may coalesce tokens into one chunk (vLLM merges the outputs a slow reader has not
        # taken yet): in the extreme all 8 arrive at once and TTFT = e2e, TPOT 0 (seen in CI)
        assert r.ttft_s is not None and r.tpot_s is not None and 0 < r.ttft_s <= r.e2e_s
        assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / 7)
        assert 1 <= len(r.itl_s) + 1 <= 8
    rows = summary_rows(result)
    assert [(row["pool"], row["requests"], row["errors"]) for row in rows] == [("ref", 6, 0), ("bf16", 6, 0)]
    assert all(row["out_tok_s"] == pytest.approx(6 * 8 / result.duration_s) for row in rows)


@pytest.mark.engine
def test_shared_prefix_hits_the_cache(engine: EngineState) -> None:
    base_url, ids = _pool_ids(engine)
    # a fresh prefix each run: the pool's cache outlives test runs
    items = prefix_workload(5, prefix_len=300, suffix_len=8, output_len=2, seed=uuid.uuid4().int % 2**32)
    result = run_load(LoadConfig(base_url, (ids["bf16"],), max_concurrency=1, ignore_eos=True), items)
    assert [r.status for r in result.requests] == [Status.ok] * 5, error_rows(result)
    # BOS + 300 shared characters = 301 tokens = two full 128-token blocks; the third block holds the suffix
    assert [r.cached_tokens for r in result.requests] == [0, 256, 256, 256, 256]
    assert summary_rows(result)[0]["cache_hit"] == pytest.approx(4 * 256 / (5 * 309))


@pytest.mark.engine
def test_arith_answers_come_back_whole(engine: EngineState) -> None:
    base_url, ids = _pool_ids(engine)
    items = arith_workload(8, seed=3)
    result = run_load(LoadConfig(base_url, (ids["ref"],), temperature=0.0, max_concurrency=4), items)
    assert [(r.text, r.finish_reason) for r in result.requests] == [(i.expected, "stop") for i in items]


@pytest.mark.engine
def test_unknown_model_is_an_error_row(engine: EngineState) -> None:
    base_url, ids = _pool_ids(engine)
    config = LoadConfig(base_url, (ids["ref"], "arith@nope"), num_requests=4, max_concurrency=2)
    result = run_load(config, arith_workload(4, seed=1))
    assert [r.status for r in result.requests] == [Status.ok, Status.error] * 2
    failed = result.requests[1]
    assert failed.http_status == 404 and failed.pool == "nope"
    message = 'Got request for model "arith@nope". Could not find base model with ID "arith@nope".'
    assert failed.error == f"HTTP 404: {message}"
    rows = summary_rows(result)
    assert [(row["pool"], row["requests"], row["errors"]) for row in rows] == [("ref", 2, 0), ("nope", 2, 2)]
