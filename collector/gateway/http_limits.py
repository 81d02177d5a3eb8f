"""The HTTP protocol with limits (collector/gateway/limits.py says why there are two layers): uvicorn's httptools
protocol, which by itself bounds nothing, with limits on the request line and headers (bytes and count: 414/431),
on the time to receive a request's head and body from its first byte (or, on a new connection, from the connect:
408, or a silent close when nothing came), and on the number of open connections (503).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from collector.gateway.limits import LINGER_S, Limits, RefusalLog, raw_response


class Phase(enum.Enum):
    idle = "idle"  # no request under way on the connection
    head = "head"  # a request's line and headers are arriving
    body = "body"  # its body is arriving


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the protocol answers with `status` and closes."""

    def __init__(self, status: int, limit: str, message: str) -> None:
        super().__init__(message)
        self.status, self.limit, self.message = status, limit, message


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the head, on the time to receive a request and on connections.
    `limits` and `refusals` are set per server by http_protocol()."""

    limits: ClassVar[Limits] = Limits()
    refusals: ClassVar[RefusalLog] = RefusalLog()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = Phase.idle
        self._head_bytes = 0  # of the request under way, counted as they arrive (the partial header too)
        self._header_bytes = 0  # of its complete headers (name, value, ": " and CRLF)
        self._completed_in_feed = False
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._refused: _Refused | None = None

    @property
    def peer(self) -> str:
        return f"client {self.client[0]}:{self.client[1]}" if self.client else "client (unknown address)"

    # connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            message = (f"the collector has {len(self.connections) - 1} connections open, its limit "
                       f"(max_connections); retry after {self.limits.retry_after_s} s")  # fmt: skip
            self._refuse(_Refused(503, "max_connections", message))
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # answered and closing: dropped
        self._unset_keepalive_if_required()
        self._completed_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            refused = self._refused or _Refused(400, "http_parser", f"the request is not valid HTTP/1.1 ({exc})")
            self._refuse(refused)
            return
        if self._phase is Phase.head and not self._completed_in_feed:  # all of `data` is this request's head
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._too_large_head(self._head_bytes))

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase, self._head_bytes, self._header_bytes = Phase.head, 0, 0
        if self._deadline is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_bytes:
            message = (f"the request target is over {self.limits.max_header_bytes} bytes, the collector's limit for "
                       "the request line and headers (max_header_bytes)")  # fmt: skip
            raise self._stop(_Refused(414, "max_header_bytes", message))

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.limits.max_headers:
            message = (f"the request has more than {self.limits.max_headers} headers, the collector's limit "
                       "(max_headers); send fewer")  # fmt: skip
            raise self._stop(_Refused(431, "max_headers", message))
        self._header_bytes += len(name) + len(value) + 4  # "name: value" CRLF
        # the head as sent: request line (method, target, "HTTP/1.1", two spaces, CRLF), headers, the blank line
        size = len(self.parser.get_method()) + len(self.url) + 12 + self._header_bytes + 2
        if size > self.limits.max_header_bytes:
            raise self._stop(self._too_large_head(size, name))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = Phase.body
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase, self._completed_in_feed = Phase.idle, True
        self._disarm()
        super().on_message_complete()

    # refusals
    def _too_large_head(self, size: int, name: bytes | None = None) -> _Refused:
        header = f" (at header {name.decode('latin-1')[:64]!r})" if name else ""
        message = (f"the request line and headers are over {self.limits.max_header_bytes} bytes{header}, the "
                   f"collector's limit (max_header_bytes); {size} bytes so far: send smaller headers")  # fmt: skip
        return _Refused(431, "max_header_bytes", message)

    def _stop(self, refused: _Refused) -> _Refused:
        self._refused = refused  # httptools wraps what a callback raises: data_received answers from this
        return refused

    def _refuse(self, refused: _Refused) -> None:
        """Answer (when the connection is free to take an answer) and close; the app, if it runs, sees the
        client gone."""
        self.refusals.note(refused.limit, f"{self.peer}: HTTP {refused.status}: {refused.message}")
        cycle = self.cycle
        if self._phase is Phase.body and cycle is not None:
            free = not cycle.response_started and not self.pipeline
            cycle.disconnected = True  # its receive() now says http.disconnect, its answer goes nowhere
            cycle.message_event.set()
        else:
            free = (cycle is None or cycle.response_complete) and not self.pipeline
        if free:
            retry = self.limits.retry_after_s if refused.status == 503 else None
            self.transport.write(raw_response(refused.status, refused.message, retry))
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Close after LINGER_S, reading and dropping what comes meanwhile: a client still sending (a long header)
        then reads the answer instead of a connection reset."""
        self._disarm()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)

    # the receive deadline
    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.limits.receive_timeout_s, self._deadline_passed)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._linger is not None:
            return
        seconds = self.limits.receive_timeout_s
        if self._phase is Phase.idle:  # connected and sent nothing
            self.refusals.note("receive_timeout_s", f"{self.peer}: sent nothing within {seconds:g} s; closed")
            self.transport.close()
            return
        part = "headers" if self._phase is Phase.head else "body"
        message = (f"the request's {part} did not arrive within {seconds:g} s of its first byte, the collector's "
                   "limit (receive_timeout_s): send the whole request at once")  # fmt: skip
        self._refuse(_Refused(408, "receive_timeout_s", message))


def http_protocol(limits: Limits, refusals: RefusalLog | None = None) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...), with these limits."""

    class Protocol(LimitedHttpToolsProtocol):
        pass

    Protocol.limits, Protocol.refusals = limits, refusals or RefusalLog()
    return Protocol


def uvicorn_options(limits: Limits, refusals: RefusalLog | None = None) -> dict[str, Any]:
    """uvicorn.Config options for these limits. uvicorn's own limit_concurrency stays off: it would answer 503
    (not an OpenAI body, no Retry-After) to every request once that many connections are open, slow ones
    included; max_connections (refused at the connect) and the stream limits take its place. Peer addresses are
    the sockets' (no X-Forwarded-For: a local process could otherwise pose as many clients); no websockets (the
    collector serves none)."""
    return {
        "http": http_protocol(limits, refusals), "ws": "none", "timeout_keep_alive": limits.keep_alive_s,
        "h11_max_incomplete_event_size": limits.max_header_bytes, "limit_concurrency": None, "proxy_headers": False,
    }  # fmt: skip
