"""The timed gateway: an OpenAI-compatible HTTP service in front of the pools.

Every request is routed to a pool (collector/gateway/routes.py), forwarded with its x-request-id and a W3C
traceparent naming the gateway's span, timed with a monotonic clock, and recorded as one `requests` row
(collector/store/rows.py) in the store, in the Prometheus metrics and as an OpenTelemetry span. Streamed
responses pass through collector/gateway/relay.py, which stamps each event; the timing definitions are those of
`vllm bench serve` (collector/gateway/timing.py). What the client receives is what the pool sent, plus the
headers x-request-id and x-inferwatch-pool (the pool that served it).

Request headers the gateway reads: X-Inferwatch-Pool (route to this pool), X-Inferwatch-Source (traffic,
load, canary or eval; default traffic), X-Inferwatch-Run (a run id stored with the row), x-request-id,
traceparent/tracestate.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as HttpRoute
from starlette.types import Receive, Scope, Send

from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.export.tracing import RequestSpan, RequestTracing
from collector.fleet.cost import BusyCostMeter
from collector.gateway.relay import MalformedStream, StreamObservation, StreamRelay
from collector.gateway.routes import Route, RouteError, Router
from collector.gateway.timing import stream_timing
from collector.store.protocols import RowSink
from collector.store.rows import ErrorType, Operation, RequestRecord, Source, Status

log = logging.getLogger(__name__)
SSE = "text/event-stream"


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = 1 << 20
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0  # longest silence from a pool while it generates


def openai_error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": status}}, status)


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


@dataclass(frozen=True)
class Outcome:
    status: Status
    error: str | None = None
    error_type: ErrorType | None = None


OK = Outcome(Status.ok)
CANCELLED_BEFORE_ANSWER = Outcome(Status.cancelled, "client went away before the pool answered", ErrorType.cancelled)


@dataclass
class Exchange:
    """One request in flight: what the row will need once it ends."""

    request_id: str
    operation: Operation
    source: str
    run_id: str | None
    started_at: datetime
    started_ns: int
    route: Route
    span: RequestSpan
    cost_token: float
    seen: StreamObservation = field(default_factory=StreamObservation)


class Gateway:
    def __init__(
        self,
        router: Router,
        sink: RowSink,
        metrics: GatewayMetrics,
        tracing: RequestTracing,
        config: GatewayConfig | None = None,
    ) -> None:
        self.router = router
        self.sink = sink
        self.metrics = metrics
        self.tracing = tracing
        self.config = config or GatewayConfig()
        self.meters = {pool: BusyCostMeter(r.price_per_hour * r.replicas) for pool, r in router.routes.items()}
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
        return PoolLabels(pool=route.pool, hardware=route.hardware, model=route.model_id, revision=route.revision)

    async def models(self, request: Request) -> Response:
        data = [{"id": r.model_id, "object": "model", "owned_by": r.pool} for r in self.router.routes.values()]
        return JSONResponse({"object": "list", "data": data})

    async def completions(self, request: Request) -> Response:
        return await self.proxy(request, Operation.text_completion, "/completions")

    async def chat_completions(self, request: Request) -> Response:
        return await self.proxy(request, Operation.chat, "/chat/completions")

    async def proxy(self, request: Request, operation: Operation, path: str) -> Response:
        started_ns = time.perf_counter_ns()
        started_at = datetime.now(UTC)
        headers = request.headers
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        source = headers.get("x-inferwatch-source", Source.traffic)
        if source not in Source.__members__:
            message = f"header X-Inferwatch-Source: {source!r} is not one of {', '.join(Source)}"
            return openai_error(400, message, "invalid_request_error")
        try:
            raw = await read_body(request, self.config.max_body_bytes)
        except BodyTooLarge as exc:
            return openai_error(413, str(exc), "invalid_request_error")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return openai_error(400, f"request body is not valid JSON ({exc})", "invalid_request_error")
        if not isinstance(body, dict):
            return openai_error(400, "request body must be a JSON object", "invalid_request_error")
        try:
            route = self.router.resolve(body.get("model"), headers.get("x-inferwatch-pool"),
                                        split=source in (Source.traffic, Source.load))  # fmt: skip
        except RouteError as exc:
            return openai_error(404, str(exc), "not_found_error")

        span = self.tracing.start(operation, route.model_id, headers, start_time_ns=time.time_ns())
        exchange = Exchange(
            request_id=request_id, operation=operation, source=source, run_id=headers.get("x-inferwatch-run"),
            started_at=started_at, started_ns=started_ns, route=route, span=span,
            cost_token=self.meters[route.pool].start(started_ns / 1e9),
        )  # fmt: skip
        self.metrics.inc_in_flight(self.labels(route))
        streaming = bool(body.get("stream"))
        strip_usage = False
        body["model"] = route.model_id
        if streaming:
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            strip_usage = not options.get("include_usage")
            body["stream_options"] = {**options, "include_usage": True}
        upstream_headers = {"content-type": "application/json", "x-request-id": request_id, **span.outgoing_headers()}
        reply_headers = {"x-request-id": request_id, "x-inferwatch-pool": route.pool}
        assert self._session is not None, "Gateway.start() was not awaited"
        try:
            upstream = await self._session.post(
                route.upstream + path, data=json.dumps(body).encode(), headers=upstream_headers
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            message = f"pool {route.pool}: no answer from {route.upstream} ({type(exc).__name__}: {exc})"
            self.finish(exchange, Outcome(Status.error, message, ErrorType.upstream_unreachable))
            return openai_error(502, message, "upstream_error")
        except BaseException:
            self.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise

        if upstream.status != 200:
            try:
                detail = (await upstream.read()).decode(errors="replace")
            finally:
                upstream.release()
            message = f"pool {route.pool}: HTTP {upstream.status} from {route.upstream}: {detail[:500]}"
            kind = ErrorType.upstream_5xx if upstream.status >= 500 else ErrorType.upstream_4xx
            self.finish(exchange, Outcome(Status.error, message, kind))
            if upstream.status >= 500:
                return openai_error(502, message, "upstream_error")
            content_type = upstream.headers.get("content-type", "application/json")
            return Response(detail, upstream.status, headers=reply_headers, media_type=content_type)

        if streaming:
            return RelayResponse(self, exchange, upstream, StreamRelay(strip_usage), reply_headers)

        try:
            data = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            upstream.close()
            message = f"pool {route.pool}: response broke off ({type(exc).__name__}: {exc})"
            self.finish(exchange, Outcome(Status.error, message, ErrorType.stream_cut))
            return openai_error(502, message, "upstream_error")
        except BaseException:
            upstream.close()
            self.finish(exchange, CANCELLED_BEFORE_ANSWER)
            raise
        upstream.release()
        now_ns = time.perf_counter_ns()
        try:
            answer = json.loads(data)
            exchange.seen.usage = answer.get("usage")
            exchange.seen.finish_reason = next(
                (c.get("finish_reason") for c in answer.get("choices") or [] if c.get("finish_reason")), None
            )
        except (ValueError, AttributeError) as exc:
            message = f"pool {route.pool}: answer is not an OpenAI response ({exc})"
            self.finish(exchange, Outcome(Status.error, message, ErrorType.malformed_stream), now_ns)
        else:
            self.finish(exchange, OK, now_ns)
        content_type = upstream.headers.get("content-type", "application/json")
        return Response(data, 200, headers=reply_headers, media_type=content_type)

    def finish(self, ex: Exchange, outcome: Outcome, ended_ns: int | None = None) -> None:
        """Record the request: one row, the metrics, the span. Never raises into the response path."""
        ended_ns = ended_ns or time.perf_counter_ns()
        route = ex.route
        usage = ex.seen.usage or {}
        completion = _int(usage.get("completion_tokens"))
        details = usage.get("prompt_tokens_details") or {}
        timing = stream_timing(ex.started_ns, ex.seen.content_ns, ended_ns, completion or 0)
        record = RequestRecord(
            id=ex.request_id, pool=route.pool, source=ex.source, started_at=ex.started_at, status=outcome.status,
            operation=ex.operation, trace_id=ex.span.trace_id, run_id=ex.run_id, revision=route.revision,
            hardware=route.hardware, model=route.model_id, ttft_s=timing.ttft_s, tpot_s=timing.tpot_s,
            itl_p50_s=timing.itl_p50_s, itl_max_s=timing.itl_max_s,
            e2e_s=timing.e2e_s,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            cached_tokens=_int(details.get("cached_tokens") if isinstance(details, Mapping) else None),
            completion_tokens=completion, finish_reason=ex.seen.finish_reason,
            error=outcome.error, error_type=outcome.error_type,
            cost_usd=self.meters[route.pool].finish(ex.cost_token, ended_ns / 1e9),
        )  # fmt: skip
        labels = self.labels(route)
        self.metrics.dec_in_flight(labels)
        try:
            self.sink.append("requests", [record.as_row()])
        except Exception:  # a closed store: the row is in the log, the client still gets its answer
            log.exception("request %s: row not stored: %s", record.id, record)
        self.metrics.observe(record, labels)
        ex.span.end(record)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "upstream_error", "param": None, "code": 502}}
    return b"data: " + json.dumps(error).encode() + b"\n\n"


class RelayResponse(StreamingResponse):
    """An ASGI response that relays a pool's event stream and records the request when it ends.

    It watches the client connection: when the client goes away, the upstream request is closed (the
    pool aborts it) and the row is recorded with status cancelled.
    """

    def __init__(
        self,
        gateway: Gateway,
        exchange: Exchange,
        upstream: aiohttp.ClientResponse,
        relay: StreamRelay,
        headers: Mapping[str, str],
    ) -> None:
        # StreamingResponse for its headers (no content-length); __call__ below does the streaming
        super().__init__(iter(()), status_code=200, headers={**headers, "cache-control": "no-cache"}, media_type=SSE)
        self.gateway, self.exchange, self.upstream, self.relay = gateway, exchange, upstream, relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome(Status.cancelled, "client disconnected mid-stream", ErrorType.cancelled)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
                outcome = await self._pump(send)
                group.cancel_scope.cancel()
        finally:
            if outcome.status is Status.cancelled and self.relay.seen.done and self.relay.seen.error is None:
                # the client hung up after it had `data: [DONE]` (clients may close at once): it got it all
                outcome = OK
            if outcome.status is Status.ok:
                self.upstream.release()
            else:
                self.upstream.close()  # the pool sees the connection go and aborts the request
            self.exchange.seen = self.relay.seen
            self.gateway.finish(self.exchange, outcome)

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async def _pump(self, send: Send) -> Outcome:
        pool = self.exchange.route.pool
        outcome = OK
        try:
            async for data in self.upstream.content.iter_any():
                out = self.relay.feed(data, time.perf_counter_ns())
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = self.relay.end()
        except MalformedStream as exc:
            outcome = Outcome(Status.error, f"pool {pool}: malformed event stream ({exc})", ErrorType.malformed_stream)
            tail = exc.forward + _error_event(outcome.error or "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            message = f"pool {pool}: stream broke off ({type(exc).__name__}: {exc})"
            outcome = Outcome(Status.error, message, ErrorType.stream_cut)
            tail = _error_event(message)
        else:
            if self.relay.seen.error is not None:
                message = f"pool {pool}: {self.relay.seen.error}"
                outcome = Outcome(Status.error, message, ErrorType.upstream_error_event)
            elif not self.relay.seen.done:
                message = f"pool {pool}: stream ended before data: [DONE]"
                outcome = Outcome(Status.error, message, ErrorType.stream_cut)
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        return outcome
