"""An OpenAI-like server that misbehaves on purpose, for the gateway's fault tests.

A real vLLM pool cannot be made to answer 5xx, send broken SSE or stall on demand; this server does, per
model id (`arith@<pool>`): ok (a well-formed 3-token stream or JSON answer, with vLLM's per-request `metrics`
(ENGINE_METRICS) on its usage event and its whole answer; the request field `coalesce: true` sends the whole
stream in one write, as Ray Serve LLM's stream batching delivers a short answer; `no_metrics: true` leaves the
`metrics` out, as a pool without --enable-per-request-metrics), err500, garbage (an event
that is not JSON), truncated (closes the stream without [DONE]), slow (one token every 20 ms for 500
tokens; notes when the client goes away; a non-stream request waits 10 s for its answer and notes when the
client goes away first). Pools outside POOLS that the gateway tests route to themselves
(tests/collector/gateway/served.py): shapes (answers of the shape the request's `shape` field names, SHAPES and
STREAM_SHAPES), pings (one token, then keep-alive comments every 50 ms and no data, until the client goes) and
choices (n = 2: the two choices' tokens interleaved, CHOICE_GAP_S apart). For the eval runner's faults, three
pools answer "a+b=" prompts (completions and chat) with the right sum: sums, flaky (the first attempt of every
request id gets a 503) and dying (answers its first DYING_AFTER requests, then only 500s). It runs an aiohttp
server in a thread on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from collector import daemon
from collector.service import CollectorConfig
from collector.state import CollectorState
from engine.state import EngineState, PoolEndpoint
from tests.conftest import DATA, free_port


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _chunk(text: str, finish: str | None = None) -> bytes:
    return _event(
        {
            "id": "c1",
            "object": "text_completion",
            "model": "x",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}],
        }
    )


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "prompt_tokens_details": {"cached_tokens": 0}}
# vLLM's per-request metrics (ms) on the ok pool's answers: 3 tokens, so mean_itl = 30 / (3 - 1) = 15 ms
ENGINE_METRICS = {"queue_time_ms": 2.5, "time_to_first_token_ms": 40.0, "generation_time_ms": 30.0,
                  "mean_itl_ms": 15.0, "tokens_per_second": 41.4}  # fmt: skip
ENORMOUS_BYTES = 3 << 20  # the `enormous` answers: over the 1 MiB the served gateway takes (served.py)


def _answer(**fields: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "text_completion", "model": "arith@shapes",
            "choices": [{"index": 0, "text": "46", "finish_reason": "stop"}], "usage": USAGE, **fields}  # fmt: skip


def _usage(**fields: Any) -> dict[str, Any]:
    return {**USAGE, **fields}


# whole answers (non-stream) of the wrong shape, by name: the body the pool sends with status 200
SHAPES: dict[str, bytes] = {
    "ok": json.dumps(_answer()).encode(),
    "usage_string": json.dumps(_answer(usage="lots")).encode(),
    "usage_list": json.dumps(_answer(usage=[7, 3])).encode(),
    "usage_count_string": json.dumps(_answer(usage=_usage(completion_tokens="3"))).encode(),
    "usage_count_negative": json.dumps(_answer(usage=_usage(prompt_tokens=-7))).encode(),
    "usage_count_huge": json.dumps(_answer(usage=_usage(completion_tokens=2**40))).encode(),
    "usage_count_float": json.dumps(_answer(usage=_usage(completion_tokens=3.0))).encode(),
    "usage_count_bool": json.dumps(_answer(usage=_usage(prompt_tokens=True))).encode(),
    "usage_details_string": json.dumps(_answer(usage=_usage(prompt_tokens_details="none"))).encode(),
    "choices_string": json.dumps(_answer(choices="46")).encode(),
    "choices_number": json.dumps(_answer(choices=5)).encode(),
    "choices_object": json.dumps(_answer(choices={"text": "46"})).encode(),
    "choice_items_numbers": json.dumps(_answer(choices=[1, 2])).encode(),
    "finish_reason_number": json.dumps(_answer(choices=[{"index": 0, "text": "46", "finish_reason": 5}])).encode(),
    "finish_reason_huge": json.dumps(
        _answer(choices=[{"index": 0, "text": "4", "finish_reason": "s" * 10_000}])
    ).encode(),
    "top_array": b"[1, 2]",
    "top_number": b"7",
    "top_string": b'"forty-six"',
    "top_null": b"null",
    "invalid_utf8": b'{"choices": [{"index": 0, "text": "\xff\xfe"}], "usage": {}}',
    "not_json": b"<html>bad gateway</html>",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "error_200": json.dumps({"error": {"message": "engine overloaded", "code": 500}}).encode(),
    "enormous": json.dumps(_answer(choices=[{"index": 0, "text": "x" * ENORMOUS_BYTES}])).encode(),
}


def _data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


_TOKEN = _chunk("4")
# streams whose last data event before [DONE] (or whose only oddity) is of the wrong shape, by name
STREAM_SHAPES: dict[str, bytes] = {
    "ok": _TOKEN + _chunk("", "stop") + _event({"id": "c1", "choices": [], "usage": USAGE}),
    "chunk_choices_string": _TOKEN + _data(b'{"id": "c1", "choices": "46"}'),
    "chunk_choices_number": _TOKEN + _data(b'{"id": "c1", "choices": 5}'),
    "chunk_choice_items_numbers": _TOKEN + _data(b'{"id": "c1", "choices": [1, 2]}'),
    "chunk_finish_reason_number": _TOKEN
    + _data(b'{"id": "c1", "choices": [{"index": 0, "text": "", "finish_reason": 5}]}'),
    "chunk_index_string": _data(b'{"id": "c1", "choices": [{"index": "zero", "text": "4"}]}'),
    "chunk_top_array": _TOKEN + _data(b"[1, 2]"),
    "chunk_invalid_utf8": _TOKEN + _data(b'{"id": "c1", "choices": [{"index": 0, "text": "\xff"}]}'),
    "chunk_deep": _TOKEN + _data(b"[" * 100_000 + b"]" * 100_000),
    "usage_chunk_string": _TOKEN + _chunk("", "stop") + _event({"id": "c1", "choices": [], "usage": "lots"}),
    "usage_chunk_count_string": _TOKEN
    + _chunk("", "stop")
    + _event({"id": "c1", "choices": [], "usage": _usage(completion_tokens="2")}),
    "usage_chunk_count_negative": _TOKEN
    + _chunk("", "stop")
    + _event({"id": "c1", "choices": [], "usage": _usage(completion_tokens=-2)}),
    "usage_chunk_count_float": _TOKEN
    + _chunk("", "stop")
    + _event({"id": "c1", "choices": [], "usage": _usage(prompt_tokens=7.5)}),
    "usage_chunk_count_bool": _TOKEN
    + _chunk("", "stop")
    + _event({"id": "c1", "choices": [], "usage": _usage(prompt_tokens=False)}),
    "usage_chunk_count_huge": _TOKEN
    + _chunk("", "stop")
    + _event({"id": "c1", "choices": [], "usage": _usage(prompt_tokens=10**30)}),
    "endless_event": _TOKEN + b"data: " + b"x" * ENORMOUS_BYTES,  # no line end, ever: the relay's buffer
}
CHOICE_GAP_S = 0.25  # the `choices` pool: between consecutive events (of alternating choices)


class FaultyUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cancelled: list[str] = []  # x-request-id of streams whose client went away
        self.received: list[dict[str, Any]] = []  # headers and bodies as they arrived
        self.calls: dict[str, int] = {}  # pool -> requests received
        self._seen: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FaultyUpstream:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/{pool}/v1/completions", self._completions)
        app.router.add_post("/{pool}/v1/chat/completions", self._completions)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.received.append({"headers": {k.lower(): v for k, v in request.headers.items()}, "body": body})
        mode = request.match_info["pool"]
        self.calls[mode] = self.calls.get(mode, 0) + 1
        if mode in SUMS:
            return await self._sum(request, mode, body)
        if mode == "err500":
            return web.json_response({"object": "error", "message": "engine dead"}, status=500)
        if mode == "shapes":
            return await self._shape(request, body)
        if mode == "pings" and body.get("stream"):
            return await self._pings(request)
        if mode == "choices" and body.get("stream"):
            return await self._two_choices(request)
        if mode == "slow" and not body.get("stream"):
            return await self._slow_answer(request)
        metrics = {} if body.get("no_metrics") else {"metrics": ENGINE_METRICS}
        if not body.get("stream"):
            choices = [{"index": 0, "text": "46", "finish_reason": "stop"}]
            answer = {"id": "c1", "object": "text_completion", "model": body["model"], "choices": choices,
                      "usage": USAGE, **metrics}  # fmt: skip
            return web.json_response(answer)
        if mode == "ok":
            return await self._ok_stream(request, body, metrics)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if mode == "slow":
            try:
                for _ in range(500):
                    await response.write(_chunk("1"))
                    await asyncio.sleep(0.02)
            except (ConnectionResetError, asyncio.CancelledError):
                self.cancelled.append(request.headers.get("x-request-id", "?"))
                raise
            return response
        await response.write(_chunk("4"))
        if mode == "garbage":
            await response.write(b"data: {this is not json\n\n")
            await asyncio.sleep(0.5)
            return response
        await response.write(_chunk("6"))
        if mode == "truncated":
            return response
        await response.write(_chunk("", "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_event({"id": "c1", "choices": [], "usage": USAGE}))
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(float(body.get("linger_s", 0)))  # keeps the stream open after [DONE], on request
        return response

    async def _ok_stream(
        self, request: web.Request, body: dict[str, Any], metrics: dict[str, Any]
    ) -> web.StreamResponse:
        """The ok pool's stream: "4", "6", "" (stop), the usage event with the engine's metrics, [DONE]; in one
        write with `coalesce`, else one write per event."""
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        events = [_chunk("4"), _chunk("6"), _chunk("", "stop")]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(_event({"id": "c1", "choices": [], "usage": USAGE, **metrics}))
        events.append(b"data: [DONE]\n\n")
        for piece in [b"".join(events)] if body.get("coalesce") else events:
            await response.write(piece)
            # apart (`gap_s`, default 5 ms): one event per read at the gateway
            await asyncio.sleep(0 if body.get("coalesce") else float(body.get("gap_s", 0.005)))
        await asyncio.sleep(float(body.get("linger_s", 0)))  # keeps the stream open after [DONE], on request
        return response

    async def _shape(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if not body.get("stream"):
            return web.Response(body=SHAPES[body["shape"]], content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(STREAM_SHAPES[body["shape"]])
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _pings(self, request: web.Request) -> web.StreamResponse:
        """One token, then keep-alive comments (and events without data) every 50 ms, never another data event."""
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(_chunk("4"))
        try:
            for i in range(2000):  # 100 s
                await response.write(b": ping\n\n" if i % 2 else b"event: ping\n\n")
                await asyncio.sleep(0.05)
        except ConnectionResetError:  # the client went away
            self.cancelled.append(request.headers.get("x-request-id", "?"))
        return response

    async def _two_choices(self, request: web.Request) -> web.StreamResponse:
        """n = 2, three tokens each, interleaved: choice 0 at 0, 2, 4 gaps; choice 1 at 1, 3, 5 gaps."""
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for step in range(6):
            index, last = step % 2, step >= 4
            choice = {"index": index, "text": str(step), "finish_reason": "length" if last else None}
            await response.write(_event({"id": "c2", "object": "text_completion", "choices": [choice]}))
            if step < 5:
                await asyncio.sleep(CHOICE_GAP_S)
        usage = {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13}
        await response.write(_event({"id": "c2", "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _slow_answer(self, request: web.Request) -> web.Response:
        """A whole answer after 10 s, unless the client goes away first (noted in `cancelled`)."""
        for _ in range(500):
            await asyncio.sleep(0.02)
            if request.transport is None or request.transport.is_closing():
                self.cancelled.append(request.headers.get("x-request-id", "?"))
                return web.Response(status=499)
        return web.json_response(_answer())

    async def _sum(self, request: web.Request, mode: str, body: dict[str, Any]) -> web.StreamResponse:
        request_id = request.headers.get("x-request-id", "")
        first_try = request_id not in self._seen
        self._seen.add(request_id)
        if (mode == "flaky" and first_try) or (mode == "dying" and self.calls[mode] > DYING_AFTER):
            return web.json_response({"object": "error", "message": f"{mode} pool"}, status=503)
        chat = "messages" in body
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        a, b = prompt.rstrip("=").split("+")
        text = str(int(a) + int(b))
        if not body.get("stream"):
            choice = {"index": 0, "finish_reason": "stop"}
            choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            return web.json_response({"id": "c1", "object": "text_completion", "model": body["model"],
                                      "choices": [choice], "usage": USAGE})  # fmt: skip
        # streamed one digit per event, as a server sends tokens: the client must put them back together
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for digit, finish in [*((d, None) for d in text), ("", "stop")]:
            choice = {"index": 0, "finish_reason": finish}
            choice |= {"delta": {"content": digit}} if chat else {"text": digit}
            await response.write(_event({"id": "c1", "model": body["model"], "choices": [choice]}))
        await response.write(_event({"id": "c1", "choices": [], "usage": USAGE}))
        await response.write(b"data: [DONE]\n\n")
        return response


SUMS = ("sums", "flaky", "dying")
DYING_AFTER = 30
POOLS = ("ok", "err500", "garbage", "truncated", "slow", "down", *SUMS)


def write_engine(home: Path, upstream_url: str) -> Path:
    """A spec of endpoint pools on the scripted upstream, and the engine state `engine up` would record."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    spec = home / "pools.yaml"
    url = {p: (dead if p == "down" else f"{upstream_url}/{p}") for p in POOLS}
    pools = [
        {"name": p, "hardware": "cpu", "accelerator": "cpu", "model": "test/arith", "model_name": "arith",
         "revision": f"rev-{p}", "endpoint": url[p]}
        for p in POOLS
    ]  # fmt: skip
    spec.write_text(json.dumps({"pools": pools}))
    state = EngineState(
        spec=str(spec), ray_address="", ray_head_pid=None, serve_url=upstream_url, metrics_url=None,
        pools=[PoolEndpoint(p, f"arith@{p}", f"{url[p]}/v1", False) for p in POOLS],
    )  # fmt: skip
    state.save(home / "engine.json")
    return home / "engine.json"


def start_collector(home: Path, upstream: FaultyUpstream, **config: Any) -> CollectorState:
    engine_state = write_engine(home, upstream.url)
    cfg = CollectorConfig(
        store_url=str(home / "store.duckdb"), engine_state=str(engine_state), prices=str(DATA / "prices.yaml"),
        port=free_port(), **{"journal_dir": str(home / "journal"), **config},
    )  # fmt: skip
    return daemon.up(cfg, home / "collector.json", log=lambda _: None)


@contextmanager
def collector_over_faulty_upstream(home: Path) -> Iterator[CollectorState]:
    """A real collector in front of a scripted upstream, stopped (its journal committed) afterwards."""
    with FaultyUpstream() as upstream:
        state = start_collector(home, upstream)
        try:
            yield state
        finally:
            daemon.down(home / "collector.json")


def start_gateway(home: Path, upstream: FaultyUpstream, store_url: str, **config: Any) -> CollectorState:
    """start_collector on a store of the caller's choosing (a DuckLake, or one store for several gateways: give
    each its own home, hence its own state file, engine state and journal)."""
    home.mkdir(parents=True, exist_ok=True)
    cfg = CollectorConfig(
        store_url=store_url, engine_state=str(write_engine(home, upstream.url)), prices=str(DATA / "prices.yaml"),
        port=free_port(), **{"journal_dir": str(home / "journal"), **config},
    )  # fmt: skip
    return daemon.up(cfg, home / "collector.json", log=lambda _: None)
