"""A streamed (SSE) OpenAI response passing through the gateway: split into events (collector/gateway/sse.py),
observed, forwarded.

Pure: bytes in, bytes out, with the caller's monotonic timestamps. The relay notes the time of every
event that carries generated tokens (every completions event, chat events with `delta.content`), the finish
reason and the usage. When the gateway asked the upstream for usage on the client's behalf (`stream_options.
include_usage`), the relay removes the usage-only event again, so that the client receives what the
upstream would have sent it without the option: vLLM then puts `system_fingerprint` on the finish event
instead, so the relay holds finish events back until the usage event (or the end) and moves it there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from collector.gateway.sse import DONE, Event, EventParser


class MalformedStream(ValueError):
    """The upstream sent something that is not an OpenAI SSE stream.

    `forward` holds the good events that came before it in the same read: the client still gets them.
    """

    def __init__(self, message: str, forward: bytes = b"") -> None:
        super().__init__(message)
        self.forward = forward


@dataclass
class StreamObservation:
    content_ns: list[int] = field(default_factory=list)  # arrival of every event with generated text
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None  # an error event sent by the upstream
    done: bool = False  # saw `data: [DONE]`


def _has_content(choice: dict[str, Any]) -> bool:
    """A generated token, as `vllm bench serve` counts them: every completions event (tokens such as EOS
    decode to "", and they are tokens all the same); chat events with content (not the opening role event)."""
    if isinstance(choice.get("text"), str):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and bool(delta.get("content") or delta.get("reasoning_content"))


class StreamRelay:
    def __init__(self, strip_usage: bool) -> None:
        self.strip_usage = strip_usage
        self.seen = StreamObservation()
        self._parser = EventParser()
        self._held: list[bytes] = []  # finish events waiting for the usage event
        self.done_event = b""  # `data: [DONE]`, held back until the request's row is journaled

    def feed(self, data: bytes, now_ns: int) -> bytes:
        """Take bytes from the upstream; returns the bytes to forward to the client now."""
        out = bytearray()
        for event in self._parser.feed(data):
            if event.raw.strip():
                try:
                    out += self._event(event, now_ns)
                except MalformedStream as exc:
                    raise MalformedStream(str(exc), bytes(out)) from None
        return bytes(out)

    def end(self) -> bytes:
        """The upstream closed; returns what is still held or buffered."""
        rest = b"".join(self._held)
        self._held.clear()
        last = self._parser.end()
        if last is not None and last.raw.strip():
            raise MalformedStream(f"stream ended inside an event: {last.raw[:200]!r}")
        return rest

    def _event(self, event: Event, now_ns: int) -> bytes:
        framed = event.raw + b"\n\n"
        payload = event.data
        if payload is None:  # comments and other fields pass through
            return framed
        if payload.strip() == DONE:
            self.seen.done = True
            self.done_event = framed
            return self._release()
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise MalformedStream(f"data is not JSON: {payload[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise MalformedStream(f"data is not a JSON object: {payload[:200]!r}")
        if "error" in chunk:
            error = chunk["error"]
            self.seen.error = str(error.get("message", error) if isinstance(error, dict) else error)
            return self._release() + framed
        choices = chunk.get("choices") or []
        if any(_has_content(c) for c in choices if isinstance(c, dict)):
            self.seen.content_ns.append(now_ns)
        for choice in choices:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.seen.finish_reason = str(choice["finish_reason"])
        if chunk.get("usage"):
            self.seen.usage = chunk["usage"]
            if self.strip_usage and not choices:
                return self._release(chunk.get("system_fingerprint"))
        if self.strip_usage and choices and all(isinstance(c, dict) and c.get("finish_reason") for c in choices):
            self._held.append(framed)
            return b""
        return self._release() + framed

    def _release(self, fingerprint: str | None = None) -> bytes:
        """Forward held finish events; the last one gets the fingerprint the usage event carried."""
        held, self._held = self._held, []
        if fingerprint is not None and held and b'"system_fingerprint"' not in held[-1]:
            body = held[-1].rstrip()
            if body.endswith(b"}"):
                extra = b',"system_fingerprint":' + json.dumps(fingerprint).encode()
                held[-1] = body[:-1] + extra + b"}\n\n"
        return b"".join(held)
