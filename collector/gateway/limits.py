"""Limits on every connection and request the collector serves: what a client may send, how fast, and how much.

Two layers, because uvicorn hands a request to the app only once its head has arrived:
- the HTTP protocol (collector/gateway/http_limits.py: uvicorn's httptools protocol with limits): the request line
  and headers (bytes and count: 414/431), the time to receive a request's head and body from its first byte (or,
  on a new connection, from the connect: 408, or a silent close when nothing came), and the number of open
  connections (503). httptools by itself bounds none of these: a 50 MB header is parsed and passed on, an idle
  connection is held forever.
- ASGI middleware (`limited`): the body size on every route (413, chunked bodies too) and the completion
  requests in flight per client and in total (429 with Retry-After; POST /v1/completions and
  /v1/chat/completions only). A client is the tenant of its API key when the authentication middleware, outside
  this one, put it in scope["inferwatch.tenant"], else its peer address.

A refused request is answered by the collector itself with an OpenAI error body: nothing is forwarded to a pool
and no row is recorded (as for the gateway's other refusals before routing). Refusals are logged at most once a
minute per limit, with how many there were since the last line, so that a flood cannot flood the log.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from collector.gateway.proxy import openai_error

log = logging.getLogger("inferwatch.collector.limits")

COMPLETION_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})
TENANT_KEY = "inferwatch.tenant"  # set by the authentication middleware: the tenant of the client's API key
LINGER_S = 2.0  # after a refusal: how long the rest of what the client sends is read and dropped before closing


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 1024  # the head as sent: request line, headers, their CRLFs
    max_headers: int = 100
    max_body_bytes: int = 1 << 20
    receive_timeout_s: float = 10.0  # a request's head and body, from its first byte (from the connect for the first)
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this long (uvicorn's timeout_keep_alive)
    max_connections: int = 4096
    max_streams: int = 1024  # completion requests in flight, all clients together
    max_streams_per_client: int = 256
    retry_after_s: int = 1  # in a 429 or 503 answer

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_body_bytes", "keep_alive_s", "max_connections",
                     "max_streams", "max_streams_per_client", "retry_after_s"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"collector limits: {name} must be >= 1, got {getattr(self, name)}")
        if not self.receive_timeout_s > 0:
            raise ValueError(f"collector limits: receive_timeout_s must be > 0, got {self.receive_timeout_s}")


def error_body(status: int, message: str, kind: str = "invalid_request_error") -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()


def raw_response(status: int, message: str, retry_after_s: int | None = None) -> bytes:
    """A whole HTTP/1.1 answer with an OpenAI error body that closes the connection, for the protocol to write
    before any app has run."""
    kind = "service_unavailable" if status == 503 else "invalid_request_error"
    body = error_body(status, message, kind)
    head = [STATUS_LINE[status], b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)]
    if retry_after_s is not None:
        head.append(b"retry-after: %d\r\n" % retry_after_s)
    return b"".join([*head, b"connection: close\r\n\r\n", body])


class RefusalLog:
    """One log line per limit at most every `every_s`, with the count since the last line; counts for tests."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[float, int]] = {}  # limit -> (when logged, count then)

    def note(self, limit: str, detail: str) -> None:
        count = self.counts[limit] = self.counts.get(limit, 0) + 1
        now = time.monotonic()
        logged_at, logged_count = self._last.get(limit, (-float("inf"), 0))
        if now - logged_at >= self.every_s:
            more = count - logged_count - 1
            tail = f" ({more} more refused by this limit since the last line)" if more else ""
            log.warning("refused by %s: %s%s", limit, detail, tail)
            self._last[limit] = (now, count)


# the body size, every route
class BodyLimit:
    """413 for a body over `max_body_bytes` on any route, whether the route reads its body or not: at once when
    content-length says so (httptools then delivers no more than it says); a chunked body is read here first, up
    to the limit, and handed to the app whole. The rest of a refused body is read and dropped by uvicorn, within
    the protocol's receive deadline."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, refusals: RefusalLog) -> None:
        self.app, self.max_body_bytes, self.refusals = app, max_body_bytes, refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send, f"{int(declared)} bytes")
            return
        if b"transfer-encoding" in headers and not declared:
            body = await self._read_chunked(receive)
            if body is None:
                return  # the client left before its body had come: no one to answer
            if len(body) > self.max_body_bytes:
                await self._refuse(scope, receive, send, f"over {self.max_body_bytes} bytes (chunked)")
                return
            receive = replayed(body, receive)
        gone = False

        async def receive_noting_gone() -> Message:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        try:
            await self.app(scope, receive_noting_gone, send)
        except ClientDisconnect:
            if not gone:
                raise  # nothing here told the app the client left: not ours to hide
            # the client left (or the protocol cut it) mid-body: nothing to answer, and no traceback in the log

    async def _read_chunked(self, receive: Receive) -> bytes | None:
        """The body, up to one message past the limit; None when the client left first."""
        body, more = bytearray(), True
        while more and len(body) <= self.max_body_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
        return bytes(body)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        message = (f"request body of {size} to {scope['method']} {scope['path']} is over the gateway's limit of "
                   f"{self.max_body_bytes} bytes (max_body_bytes): send a smaller body")  # fmt: skip
        client = scope.get("client")
        self.refusals.note("max_body_bytes", f"client {client[0] if client else '?'}: HTTP 413: {message}")
        await openai_error(413, message, "invalid_request_error")(scope, receive, send)


def replayed(body: bytes, receive: Receive) -> Receive:
    """`receive` that first gives the app `body` whole (already read), then whatever comes (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_replayed() -> Message:
        return pending.pop() if pending else await receive()

    return receive_replayed


# completion requests in flight, per client and in total
@dataclass
class StreamCounts:
    """Completion requests in flight, per client and in total, against their limits."""

    max_total: int
    max_per_client: int
    total: int = 0
    per_client: dict[str, int] = field(default_factory=dict)

    def acquire(self, client: str) -> str | None:
        """Count one more for `client`; None when admitted, else why not (nothing counted)."""
        if self.total >= self.max_total:
            return f"{self.total} completion requests are in flight, the collector's limit (max_streams)"
        held = self.per_client.get(client, 0)
        if held >= self.max_per_client:
            return f"{client} has {held} completion requests in flight, the limit per client (max_streams_per_client)"
        self.total += 1
        self.per_client[client] = held + 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        held = self.per_client[client] - 1
        if held:
            self.per_client[client] = held
        else:
            del self.per_client[client]


def client_of(scope: Scope) -> str:
    """Whom the stream limits count a request against: its API key's tenant, else its peer address."""
    tenant = scope.get(TENANT_KEY)
    if tenant:
        return f"tenant {tenant!r}"
    peer = scope.get("client")
    return f"client {peer[0]}" if peer else "client (unknown address)"


class StreamLimit:
    """429 with Retry-After for a completion request over the limits (StreamCounts); the count is released when
    the request's app call returns, however it ends (answered, stream done or cut, client gone, error)."""

    def __init__(self, app: ASGIApp, counts: StreamCounts, retry_after_s: int, refusals: RefusalLog,
                 paths: Iterable[str] = COMPLETION_PATHS) -> None:  # fmt: skip
        self.app, self.counts, self.retry_after_s, self.refusals = app, counts, retry_after_s, refusals
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        why = self.counts.acquire(client)
        if why is not None:
            limit = "max_streams" if "(max_streams)" in why else "max_streams_per_client"
            message = f"too many requests in flight: {why}; retry after {self.retry_after_s} s"
            self.refusals.note(limit, f"HTTP 429: {message}")
            await openai_error(429, message, "rate_limit_error", self.retry_after_s)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.counts.release(client)


def limited(
    app: ASGIApp, limits: Limits, refusals: RefusalLog | None = None, counts: StreamCounts | None = None
) -> ASGIApp:
    """`app` behind the body size and stream limits. Put the authentication middleware outside this one, so that
    the stream limits see the tenant it sets."""
    refusals = refusals or RefusalLog()
    counts = counts or StreamCounts(limits.max_streams, limits.max_streams_per_client)
    return BodyLimit(StreamLimit(app, counts, limits.retry_after_s, refusals), limits.max_body_bytes, refusals)


# open files
def open_files_needed(limits: Limits) -> int:
    """File descriptors the collector may hold at its limits: a socket per client connection and per stream to a
    pool, and a margin for the store, the journal, the scraper and the listening sockets."""
    return limits.max_connections + limits.max_streams + 256


def fit_open_files(limits: Limits) -> Limits:
    """Raise this process's soft limit on open files to what `limits` need (up to the hard limit); where the hard
    limit is lower, max_connections shrinks to fit, with a warning that says what to do."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = open_files_needed(limits)
    ceiling = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
    if ceiling >= need:
        return limits
    fits = max(1, ceiling - (need - limits.max_connections))
    log.warning(
        "open files: the hard limit is %d, the collector's limits need %d (max_connections %d + max_streams %d + "
        "256); max_connections is %d for this run: raise `ulimit -Hn` or lower max_connections",
        hard, need, limits.max_connections, limits.max_streams, fits,
    )  # fmt: skip
    return replace(limits, max_connections=fits)
