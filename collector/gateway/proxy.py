"""The timed gateway: an OpenAI-compatible HTTP service in front of the pools.

Every request is routed to a pool (collector/gateway/routes.py), forwarded with its x-request-id and a W3C
traceparent naming the gateway's span, timed with a monotonic clock, and recorded as one `requests` row in the
store, in the Prometheus metrics and as an OpenTelemetry span (collector/gateway/exchange.py). Streamed responses
pass through collector/gateway/streaming.py and relay.py, which stamps each event; the timing definitions are
those of `vllm bench serve` (collector/gateway/timing.py). What the client receives is what the pool sent, plus
the headers x-request-id and x-inferwatch-pool (the pool that served it).

Request headers the gateway reads: X-Inferwatch-Pool (route to this pool), X-Inferwatch-Source (traffic,
load, canary or eval; default traffic), X-Inferwatch-Run (a run id stored with the row), x-request-id,
traceparent/tracestate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.export.tracing import RequestTracing
from collector.gateway.exchange import CANCELLED_BEFORE_ANSWER, OK, Exchange, Outcome, Recorder, pool_labels
from collector.gateway.relay import StreamRelay
from collector.gateway.routes import Route, RouteError, Router
from collector.gateway.streaming import RelayResponse
from collector.store.protocols import RowSink
from collector.vocabulary import (
    POOL_HEADER,
    REQUEST_ID_HEADER,
    SOURCE_HEADER,
    ErrorType,
    Operation,
    Source,
    Status,
)


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = 1 << 20
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0  # longest silence from a pool while it generates


def openai_error(status: int, message: str, kind: str, retry_after_s: int | None = None) -> JSONResponse:
    headers = {"retry-after": str(retry_after_s)} if retry_after_s is not None else None
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return JSONResponse(body, status, headers=headers)


class Refusal(Exception):
    """The gateway answers the request itself, with this OpenAI error: raised by a step of Gateway.proxy."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.response = openai_error(status, message, kind, retry_after_s)


class BodyTooLarge(ValueError):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the gateway's limit of {limit} bytes")
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise BodyTooLarge(f"request body is over the gateway's limit of {limit} bytes")
        parts.append(part)
    return b"".join(parts)


def for_the_pool(body: dict[str, Any], model_id: str) -> tuple[dict[str, Any], bool]:
    """The request as the pool gets it: the pool's model id, and a stream asks for usage (the row needs the token
    counts). True when the client had not asked for usage: the relay then removes it again."""
    body = {**body, "model": model_id}
    if not body.get("stream"):
        return body, False
    options = body.get("stream_options")
    options = dict(options) if isinstance(options, dict) else {}
    body["stream_options"] = {**options, "include_usage": True}
    return body, not options.get("include_usage")


def note_answer(exchange: Exchange, data: bytes) -> Outcome:
    """A whole answer's usage and finish reason, into the exchange; an error when it is not an OpenAI answer."""
    try:
        answer = json.loads(data)
        exchange.seen.usage = answer.get("usage")
        exchange.seen.finish_reason = next(
            (c.get("finish_reason") for c in answer.get("choices") or [] if c.get("finish_reason")), None
        )
    except (ValueError, AttributeError) as exc:
        message = f"pool {exchange.route.pool}: answer is not an OpenAI response ({exc})"
        return Outcome(Status.error, message, ErrorType.malformed_stream)
    return OK


class Gateway:
    def __init__(
        self,
        router: Router,
        sink: RowSink,
        metrics: GatewayMetrics,
        tracing: RequestTracing,
        config: GatewayConfig | None = None,
        durable: Callable[[int], Awaitable[None]] | None = None,
        admission: Callable[[], str | None] | None = None,  # why new requests are refused now (fail-closed)
        strict: bool = False,  # fail-closed: an answer whose row could not be journaled becomes a 503
    ) -> None:
        self.router = router
        self.config = config or GatewayConfig()
        self.recorder = Recorder(router.routes, sink, metrics, tracing, durable, strict)
        self.admission = admission
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.connect_timeout_s, sock_read=self.config.read_timeout_s
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300), auto_decompress=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def http_routes(self) -> list[HttpRoute]:
        return [
            HttpRoute("/v1/completions", self.completions, methods=["POST"]),
            HttpRoute("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            HttpRoute("/v1/models", self.models, methods=["GET"]),
        ]

    def labels(self, route: Route) -> PoolLabels:
        return pool_labels(route)

    async def models(self, request: Request) -> Response:
        data = [{"id": r.model_id, "object": "model", "owned_by": r.pool} for r in self.router.routes.values()]
        return JSONResponse({"object": "list", "data": data})

    async def completions(self, request: Request) -> Response:
        return await self.proxy(request, Operation.text_completion, "/completions")

    async def chat_completions(self, request: Request) -> Response:
        return await self.proxy(request, Operation.chat, "/chat/completions")

    async def proxy(self, request: Request, operation: Operation, path: str) -> Response:
        """Read, route, forward; then relay the stream or pass the whole answer on. From the moment it has a
        route, a request is recorded exactly once, however it ends (collector/gateway/exchange.py)."""
        started_ns = time.perf_counter_ns()
        started_at = datetime.now(UTC)
        try:
            if self.admission is not None and (why := self.admission()):
                raise Refusal(503, f"the gateway is not taking requests: {why}", "service_unavailable", 5)
            source, body = await self._read(request)
            route = self._route(body, source, request.headers)
            exchange = self.recorder.begin(operation, source, route, request.headers, started_at, started_ns)
            body, strip_usage = for_the_pool(body, route.model_id)
            upstream = await self._forward(exchange, path, body)
        except Refusal as refusal:
            return refusal.response
        reply_headers = {REQUEST_ID_HEADER: exchange.request_id, POOL_HEADER: route.pool}
        if upstream.status != 200:
            return await self._pass_refusal(exchange, upstream, reply_headers)
        if body.get("stream"):
            return RelayResponse(self.recorder, exchange, upstream, StreamRelay(strip_usage), reply_headers)
        return await self._pass_answer(exchange, upstream, reply_headers)

    async def _read(self, request: Request) -> tuple[str, dict[str, Any]]:
        """The request's source and its JSON body; Refusal (400, 413) when they are not."""
        source = request.headers.get(SOURCE_HEADER, Source.traffic)
        if source not in Source.__members__:
            raise Refusal(400, f"header X-Inferwatch-Source: {source!r} is not one of {', '.join(Source)}")
        try:
            raw = await read_body(request, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            raise Refusal(413, str(exc)) from None
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise Refusal(400, f"request body is not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise Refusal(400, "request body must be a JSON object")
        return source, body

    def _route(self, body: dict[str, Any], source: str, headers: Headers) -> Route:
        try:
            return self.router.resolve(body.get("model"), headers.get(POOL_HEADER),
                                       split=source in (Source.traffic, Source.load))  # fmt: skip
        except RouteError as exc:
            raise Refusal(404, str(exc), "not_found_error") from None

    async def _forward(self, exchange: Exchange, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST the request to its pool; a pool that cannot be reached is recorded and refused with a 502."""
        route = exchange.route
        headers = {
            "content-type": "application/json",
            REQUEST_ID_HEADER: exchange.request_id,
            **exchange.span.outgoing_headers(),
        }
        assert self._session is not None, "Gateway.start() was not awaited"
        try:
            return await self._session.post(route.upstream + path, data=json.dumps(body).encode(), headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"pool {route.pool}: no answer from {route.upstream} ({type(exc).__name__}: {exc})"
            self.recorder.finish(exchange, Outcome(Status.error, message, ErrorType.upstream_unreachable))
            raise Refusal(502, message, "upstream_error") from None
        except BaseException:
            self.recorder.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise

    async def _pass_refusal(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, reply_headers: dict[str, str]
    ) -> Response:
        """The pool answered other than 200: a 4xx goes to the client as it came, a 5xx becomes a 502."""
        route = exchange.route
        try:
            detail = (await upstream.read()).decode(errors="replace")
        finally:
            upstream.release()
        message = f"pool {route.pool}: HTTP {upstream.status} from {route.upstream}: {detail[:500]}"
        kind = ErrorType.upstream_5xx if upstream.status >= 500 else ErrorType.upstream_4xx
        self.recorder.finish(exchange, Outcome(Status.error, message, kind))
        if upstream.status >= 500:
            return openai_error(502, message, "upstream_error")
        content_type = upstream.headers.get("content-type", "application/json")
        return Response(detail, upstream.status, headers=reply_headers, media_type=content_type)

    async def _pass_answer(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, reply_headers: dict[str, str]
    ) -> Response:
        """A whole answer: read, noted (usage, finish reason), recorded and passed on as it came."""
        try:
            data = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            upstream.close()
            message = f"pool {exchange.route.pool}: response broke off ({type(exc).__name__}: {exc})"
            self.recorder.finish(exchange, Outcome(Status.error, message, ErrorType.stream_cut))
            return openai_error(502, message, "upstream_error")
        except BaseException:
            upstream.close()
            self.recorder.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise
        upstream.release()
        now_ns = time.perf_counter_ns()
        row = self.recorder.finish(exchange, note_answer(exchange, data), now_ns)
        if refused := await self.recorder.acknowledge(row):  # journaled before the answer leaves
            return openai_error(503, refused, "service_unavailable", retry_after_s=1)
        content_type = upstream.headers.get("content-type", "application/json")
        return Response(data, 200, headers=reply_headers, media_type=content_type)
