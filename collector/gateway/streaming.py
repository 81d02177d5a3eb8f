"""The ASGI response that relays a pool's event stream to the client (through collector/gateway/relay.py) and
records the request when the stream ends, however it ends: done, broken off by the pool, or left by the client.
When the pool ends the stream, the row is journaled before `data: [DONE]` (the last bytes) is relayed.

A pool that sends no data event for `idle_timeout_s` is cut, whatever else it sends: keep-alive comments and
events without data do not reset the timer (aiohttp's sock_read, set to the same value, cuts a pool that
sends nothing at all)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import aiohttp
import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from collector.gateway.exchange import OK, Exchange, Outcome, Recorder
from collector.gateway.relay import MalformedStream, StreamRelay
from collector.vocabulary import ErrorType, Status

SSE = "text/event-stream"


def _error_event(message: str, code: int = 502) -> bytes:
    kind = "upstream_error" if code == 502 else "service_unavailable"
    error = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return b"data: " + json.dumps(error).encode() + b"\n\n"


class RelayResponse(StreamingResponse):
    """An ASGI response that relays a pool's event stream and records the request when it ends.

    It watches the client connection: when the client goes away, the upstream request is closed (the
    pool aborts it) and the row is recorded with status cancelled.
    """

    def __init__(
        self,
        recorder: Recorder,
        exchange: Exchange,
        upstream: aiohttp.ClientResponse,
        relay: StreamRelay,
        headers: Mapping[str, str],
        idle_timeout_s: float = 600.0,
    ) -> None:
        # StreamingResponse for its headers (no content-length); __call__ below does the streaming
        super().__init__(iter(()), status_code=200, headers={**headers, "cache-control": "no-cache"}, media_type=SSE)
        self.recorder, self.exchange, self.upstream, self.relay = recorder, exchange, upstream, relay
        self.idle_timeout_s = idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome(Status.cancelled, "client disconnected mid-stream", ErrorType.cancelled)
        recorded = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_disconnect, receive, group.cancel_scope)
                outcome, tail = await self._pump(send)
                # the row is journaled before the last bytes ([DONE]) leave: "acknowledged" means "journaled"
                self.exchange.seen = self.relay.seen
                row = self.recorder.finish(self.exchange, outcome)
                recorded = True
                refused = await self.recorder.acknowledge(row)
                last = _error_event(refused, 503) if refused else self.relay.done_event
                await send({"type": "http.response.body", "body": tail + last, "more_body": False})
                group.cancel_scope.cancel()
        finally:
            if outcome.status is Status.ok:
                self.upstream.release()
            else:
                self.upstream.close()  # the pool sees the connection go and aborts the request
            if not recorded:
                self.exchange.seen = self.relay.seen
                self.recorder.finish(self.exchange, outcome)

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    async def _pump(self, send: Send) -> tuple[Outcome, bytes]:
        """Relay the stream until the pool ends it; returns how it ended and the bytes still to send."""
        pool = self.exchange.route.pool
        outcome = OK
        relay, seen = self.relay, self.relay.seen
        idle_ns = int(self.idle_timeout_s * 1e9)
        data_events, last_data_ns = 0, time.perf_counter_ns()
        spent_ns = 0  # the gateway's own time on the reads (Exchange.gateway_ns)
        try:
            async for data in self.upstream.content.iter_any():
                now_ns = time.perf_counter_ns()
                out = relay.feed(data, now_ns)
                spent_ns += time.perf_counter_ns() - now_ns
                if seen.data_events != data_events:
                    data_events, last_data_ns = seen.data_events, now_ns
                elif now_ns - last_data_ns > idle_ns:
                    raise TimeoutError(f"no data event for {self.idle_timeout_s:g} s, only keep-alives")
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = relay.end()
        except MalformedStream as exc:
            outcome = Outcome(Status.error, f"pool {pool}: malformed event stream ({exc})", ErrorType.malformed_stream)
            tail = exc.forward + _error_event(outcome.error or "")
        except TimeoutError as exc:
            why = str(exc) or f"nothing for {self.idle_timeout_s:g} s"
            message = f"pool {pool}: stream stalled ({why}; read_timeout_s = {self.idle_timeout_s:g})"
            outcome = Outcome(Status.error, message, ErrorType.upstream_timeout)
            tail = _error_event(message)
        except aiohttp.ClientError as exc:
            message = f"pool {pool}: stream broke off ({type(exc).__name__}: {exc})"
            outcome = Outcome(Status.error, message, ErrorType.stream_cut)
            tail = _error_event(message)
        else:
            if seen.error is not None:
                message = f"pool {pool}: {seen.error}"
                outcome = Outcome(Status.error, message, ErrorType.upstream_error_event)
            elif not seen.done:
                message = f"pool {pool}: stream ended before data: [DONE]"
                outcome = Outcome(Status.error, message, ErrorType.stream_cut)
        finally:
            self.exchange.gateway_ns = (self.exchange.gateway_ns or 0) + spent_ns
        return outcome, tail
