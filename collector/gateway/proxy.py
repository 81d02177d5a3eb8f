"""The timed gateway: an OpenAI-compatible HTTP service in front of the pools.

Every request is routed to a pool (collector/gateway/routes.py), forwarded with its x-request-id and a W3C
traceparent naming the gateway's span, timed with a monotonic clock, and recorded as one `requests` row in the
store, in the Prometheus metrics and as an OpenTelemetry span (collector/gateway/exchange.py). Streamed responses
pass through collector/gateway/streaming.py and relay.py, which stamps each event; the timing definitions are
those of `vllm bench serve` (collector/gateway/timing.py). What the client receives is what the pool sent, plus
the headers x-request-id and x-inferwatch-pool (the pool that served it).

Request headers the gateway reads: X-Inferwatch-Pool (route to this pool), X-Inferwatch-Source (traffic,
load, canary or eval; default traffic), X-Inferwatch-Run (a run id stored with the row), x-request-id,
traceparent/tracestate. What it accepts from clients is checked before a request is routed
(collector/gateway/validation.py); what it accepts from pools, when the answer comes (collector/gateway/
answers.py): an answer of any other shape is a 502 (or an error event) and a row with the error.
A client that hangs up while the gateway waits for the pool cancels the pool's request (its connection is
closed) and is recorded as cancelled. The tenant an authentication layer put in the ASGI scope
(TENANT_SCOPE_KEY) is stored in the request's row.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import Receive

from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.export.tracing import RequestTracing
from collector.gateway.answers import OddAnswer, read_answer
from collector.gateway.exchange import CANCELLED_BEFORE_ANSWER, OK, Exchange, Outcome, Recorder, pool_labels
from collector.gateway.relay import MAX_EVENT_BYTES, StreamRelay
from collector.gateway.routes import Route, RouteError, Router
from collector.gateway.streaming import RelayResponse
from collector.gateway.validation import (
    MAX_JSON_DEPTH,
    InvalidRequest,
    RequestOptions,
    check_identifier,
    parse_body,
    read_options,
)
from collector.store.protocols import RowSink
from collector.vocabulary import (
    GATEWAY_TIME_HEADER,
    POOL_HEADER,
    REQUEST_ID_HEADER,
    RUN_HEADER,
    SOURCE_HEADER,
    ErrorType,
    Operation,
    Source,
    Status,
)

T = TypeVar("T")
TENANT_SCOPE_KEY = "inferwatch.tenant"  # set by the authentication middleware: the client's tenant, or None


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = 1 << 20
    connect_timeout_s: float = 5.0
    # longest silence from a pool while it generates: no data event for this long (keep-alive comments and
    # events without data do not count) cuts a stream; a whole answer must arrive within it once its headers have
    read_timeout_s: float = 600.0
    max_json_depth: int = MAX_JSON_DEPTH  # nesting levels of a request body
    max_answer_bytes: int = 64 << 20  # a whole answer from a pool
    max_event_bytes: int = MAX_EVENT_BYTES  # one event of a stream, or a line still without its end


class ClientGone(Exception):
    """The client hung up while the gateway waited for the pool."""


async def _hang_up(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def unless_client_leaves(receive: Receive, work: Awaitable[T]) -> T:
    """`work`, or ClientGone as soon as the client hangs up (its http.disconnect): the work is cancelled, which
    closes an aiohttp request's connection, so that the pool aborts it."""
    with anyio.CancelScope() as scope:
        watcher = asyncio.ensure_future(_hang_up(receive, scope))
        try:
            return await work
        finally:
            watcher.cancel()
    raise ClientGone


class AnswerTooLarge(ValueError):
    pass


async def read_answer_body(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    """A whole answer, refused (AnswerTooLarge) past `limit` bytes."""
    declared = upstream.content_length
    if declared is not None and declared > limit:
        raise AnswerTooLarge(f"an answer of {declared} bytes, over the gateway's limit of {limit} bytes")
    parts, size = [], 0
    async for part in upstream.content.iter_any():
        size += len(part)
        if size > limit:
            raise AnswerTooLarge(f"an answer of over {limit} bytes, the gateway's limit")
        parts.append(part)
    return b"".join(parts)


def openai_error(
    status: int, message: str, kind: str, retry_after_s: int | None = None, param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:  # fmt: skip
    headers = {**(headers or {}), **({"retry-after": str(retry_after_s)} if retry_after_s is not None else {})}
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status, headers=headers)


class Refusal(Exception):
    """The gateway answers the request itself, with this OpenAI error: raised by a step of Gateway.proxy."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", retry_after_s: int | None = None,
        param: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.response = openai_error(status, message, kind, retry_after_s, param)


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


def for_the_pool(body: dict[str, Any], model_id: str, options: RequestOptions) -> tuple[dict[str, Any], bool]:
    """The request as the pool gets it: the pool's model id, and a stream asks for usage (the row needs the token
    counts). True when the client had not asked for usage: the relay then removes it again."""
    body = {**body, "model": model_id}
    if not options.stream:
        return body, False
    body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body, not options.include_usage


def note_answer(exchange: Exchange, data: bytes) -> Outcome:
    """A whole answer's usage and finish reason, into the exchange; an error when it is not an OpenAI answer."""
    pool = exchange.route.pool
    try:
        facts = read_answer(data)
    except OddAnswer as exc:
        return Outcome(
            Status.error, f"pool {pool}: answer is not an OpenAI response ({exc})", ErrorType.malformed_stream
        )
    exchange.seen.usage, exchange.seen.finish_reason = facts.usage, facts.finish_reason
    exchange.seen.engine = facts.engine
    if facts.error is not None:
        return Outcome(
            Status.error, f"pool {pool}: answered 200 with an error: {facts.error}", ErrorType.upstream_error_event
        )
    return OK


def gateway_ms(gateway_ns: int | None) -> str:
    """The GATEWAY_TIME_HEADER value: milliseconds with three decimals (Exchange.gateway_ns)."""
    return f"{(gateway_ns or 0) / 1e6:.3f}"


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
        from collector.gateway.server_api import ServerApi  # it builds on this module

        return [
            HttpRoute("/v1/completions", self.completions, methods=["POST"]),
            HttpRoute("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            *ServerApi(self).routes(),  # /health, /version, /v1/models, /tokenize, /detokenize
        ]

    def labels(self, route: Route) -> PoolLabels:
        return pool_labels(route)

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
            source, body, options = await self._read(request, operation)
            route = self._route(body, source, request.headers)
            tenant = request.scope.get(TENANT_SCOPE_KEY)
            exchange = self.recorder.begin(
                operation, source, route, request.headers, started_at, started_ns,
                tenant=tenant if isinstance(tenant, str) else None,
            )  # fmt: skip
            body, strip_usage = for_the_pool(body, route.model_id, options)
            upstream = await unless_client_leaves(request.receive, self._forward(exchange, path, body))
        except Refusal as refusal:
            return refusal.response
        except ClientGone:  # _forward recorded it as cancelled
            return openai_error(499, "the client closed the request", "cancelled")
        reply_headers = {REQUEST_ID_HEADER: exchange.request_id, POOL_HEADER: route.pool}
        if upstream.status != 200:
            return await self._pass_refusal(exchange, upstream, reply_headers)
        if options.stream:  # the header goes before the stream: the time until the pool was called
            reply_headers[GATEWAY_TIME_HEADER] = gateway_ms(exchange.gateway_ns)
            relay = StreamRelay(strip_usage, self.config.max_event_bytes)
            return RelayResponse(self.recorder, exchange, upstream, relay, reply_headers, self.config.read_timeout_s)
        try:
            return await unless_client_leaves(request.receive, self._pass_answer(exchange, upstream, reply_headers))
        except ClientGone:  # _pass_answer recorded it as cancelled and closed the pool's connection
            return openai_error(499, "the client closed the request", "cancelled")

    async def _read(self, request: Request, operation: Operation) -> tuple[str, dict[str, Any], RequestOptions]:
        """The request's source, its JSON body as the pool will read it, and how to handle it; Refusal (400, 413)
        when they are not acceptable (collector/gateway/validation.py)."""
        headers = request.headers
        source = headers.get(SOURCE_HEADER, Source.traffic)
        if source not in Source.__members__:
            raise Refusal(400, f"header X-Inferwatch-Source: {source!r} is not one of {', '.join(Source)}")
        try:
            for header in (REQUEST_ID_HEADER, RUN_HEADER):
                check_identifier(header, headers.getlist(header))
            raw = await read_body(request, self.config.max_body_bytes)
            body = parse_body(raw, self.config.max_json_depth)
            body, options = read_options(body, n_may_be_null=operation is Operation.chat)
        except BodyTooLarge as exc:
            raise Refusal(413, str(exc)) from None
        except InvalidRequest as exc:
            raise Refusal(400, str(exc), param=exc.param) from None
        return source, body, options

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
        data = json.dumps(body).encode()
        exchange.gateway_ns = time.perf_counter_ns() - exchange.started_ns
        try:
            return await self._session.post(route.upstream + path, data=data, headers=headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"pool {route.pool}: no answer from {route.upstream} ({type(exc).__name__}: {exc})"
            self.recorder.finish(exchange, Outcome(Status.error, message, ErrorType.upstream_unreachable))
            raise Refusal(502, message, "upstream_error") from None
        except BaseException:  # cancelled: the client hung up (unless_client_leaves), or the server stops
            self.recorder.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise

    async def _pass_refusal(
        self, exchange: Exchange, upstream: aiohttp.ClientResponse, reply_headers: dict[str, str]
    ) -> Response:
        """The pool answered other than 200: a 4xx goes to the client as it came, a 5xx becomes a 502."""
        route = exchange.route
        try:
            detail = (await read_answer_body(upstream, self.config.max_answer_bytes)).decode(errors="replace")
            upstream.release()
        except (AnswerTooLarge, aiohttp.ClientError, TimeoutError) as exc:
            detail = f"(the body could not be read: {type(exc).__name__}: {exc})"
            upstream.close()
        except BaseException:
            upstream.close()
            self.recorder.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise
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
        """A whole answer: read (bounded in size and time), checked, recorded and passed on as it came; an answer
        that is not an OpenAI answer is recorded as an error and the client gets a 502 saying why."""
        pool, timeout_s = exchange.route.pool, self.config.read_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                data = await read_answer_body(upstream, self.config.max_answer_bytes)
        except AnswerTooLarge as exc:
            upstream.close()
            outcome = Outcome(Status.error, f"pool {pool}: {exc}", ErrorType.malformed_stream)
            self.recorder.finish(exchange, outcome)
            return openai_error(502, outcome.error or "", "upstream_error", headers=reply_headers)
        except TimeoutError:
            upstream.close()
            message = f"pool {pool}: the whole answer did not arrive within read_timeout_s = {timeout_s:g} s"
            self.recorder.finish(exchange, Outcome(Status.error, message, ErrorType.upstream_timeout))
            return openai_error(502, message, "upstream_error", headers=reply_headers)
        except aiohttp.ClientError as exc:
            upstream.close()
            message = f"pool {pool}: response broke off ({type(exc).__name__}: {exc})"
            self.recorder.finish(exchange, Outcome(Status.error, message, ErrorType.stream_cut))
            return openai_error(502, message, "upstream_error", headers=reply_headers)
        except BaseException:  # cancelled: the client hung up (unless_client_leaves), or the server stops
            upstream.close()
            self.recorder.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise
        upstream.release()
        now_ns = time.perf_counter_ns()
        outcome = note_answer(exchange, data)
        exchange.gateway_ns = (exchange.gateway_ns or 0) + time.perf_counter_ns() - now_ns
        reply_headers[GATEWAY_TIME_HEADER] = gateway_ms(exchange.gateway_ns)
        row = self.recorder.finish(exchange, outcome, now_ns)
        if outcome.status is not Status.ok:
            return openai_error(502, outcome.error or "", "upstream_error", headers=reply_headers)
        if refused := await self.recorder.acknowledge(row):  # journaled before the answer leaves
            return openai_error(503, refused, "service_unavailable", retry_after_s=1)
        content_type = upstream.headers.get("content-type", "application/json")
        return Response(data, 200, headers=reply_headers, media_type=content_type)
