"""A streamed (SSE) OpenAI response passing through the gateway: split into events (collector/gateway/sse.py),
observed, forwarded.

Pure: bytes in, bytes out, with the caller's monotonic timestamps. The relay notes the time of every
event that carries generated tokens (every completions event, chat events with `delta.content`), the finish
reason and the usage; with n > 1 choices, the time of each choice's tokens too (collector/gateway/timing.py).
What it cannot read as an OpenAI stream (collector/gateway/answers.py: choices not a list of objects, usage
counts that are not counts, an event that never ends) is a MalformedStream.

The hot path parses JSON only where it must: the first data event (the stream's shape), the usage event (once
per request: usage and the engine's `metrics`), finish and error events, and anything it does not recognise.
A plain token event (one choice, a non-null `text` or non-empty `content`/`reasoning_content`, no usage, no
error, a null or absent finish reason) is recognised by its bytes (`plain_token`): UTF-8, braces at both ends,
no `\\u` escape (so a key cannot be spelled other than literally), its one `"index"` read as digits. Such an
event is not parsed: a pool that puts broken JSON inside one reaches the client as it sent it (the client gets
the pool's bytes in any case), and its token counts.

When the gateway asked the upstream for usage on the client's behalf (`stream_options.include_usage`), the
relay removes the usage-only event again, so that the client receives what the upstream would have sent it
without the option: vLLM then puts `system_fingerprint` on the finish event instead, so the relay holds
finish events back until the usage event (or the end) and moves it there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from collector.gateway.answers import (
    EngineTimings,
    OddAnswer,
    Usage,
    error_message,
    read_choices,
    read_engine_metrics,
    read_finish_reason,
    read_usage,
)
from collector.gateway.sse import DONE, Event, EventParser

MAX_CHOICES = 1024  # distinct choice indexes in one stream (n > 1); more is not an OpenAI stream
MAX_EVENT_BYTES = 16 << 20  # one event (or line) still without its end: the relay's buffer


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
    choice_ns: dict[int, list[int]] = field(default_factory=dict)  # the same, per choice index (n > 1)
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None  # an error event sent by the upstream
    done: bool = False  # saw `data: [DONE]`
    data_events: int = 0  # events with a data field (keep-alive comments are not): the upstream idle timer
    engine: EngineTimings | None = None  # the pool's own timings, from the usage event (answers.EngineTimings)
    arrivals: int = 0  # distinct arrival times among the token events (fewer than len(content_ns): coalesced)


def _has_content(choice: dict[str, Any]) -> bool:
    """A generated token, as `vllm bench serve` counts them: every completions event (tokens such as EOS
    decode to "", and they are tokens all the same); chat events with content (not the opening role event)."""
    if isinstance(choice.get("text"), str):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and bool(delta.get("content") or delta.get("reasoning_content"))


def _spelling(sep: str) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    """The bytes that start a plain token's choice, with `sep` after each colon and comma (vLLM writes none,
    Python's json.dumps one space): its index, then `text` (completions) or a `delta` with content (chat)."""
    deltas = (f',{sep}"delta":{sep}{{"content":{sep}"', f',{sep}"delta":{sep}{{"reasoning_content":{sep}"')
    return f'"choices":{sep}[{{"index":{sep}'.encode(), f',{sep}"text":{sep}"'.encode(), tuple(map(str.encode, deltas))


_SPELLINGS = (_spelling(""), _spelling(" "))
_ONCE_TEXT = (b'"choices"', b'"index"', b'"text"')
_ONCE_DELTA = (b'"choices"', b'"index"', b'"delta"')


def _only_null(payload: bytes, key: bytes) -> bool:
    """Every occurrence of `key` in the payload is that key with the value null (or there is none)."""
    n = payload.count(key)
    return not n or n == payload.count(key + b":null") + payload.count(key + b": null")


def plain_token(payload: bytes) -> int | None:
    """The choice index of a plain token event, from its bytes alone; None: the event needs json.loads.

    Plain: `{..."choices":[{"index":N,"text":"...` with no other object in the event, or `..."delta":{"content":"x`
    (content not empty) with the delta the only other one; each key once; finish_reason and usage null or
    absent; no error; no \\u escape (a key could hide behind one); UTF-8. JSON that reads so is one token of
    choice N (tests/collector/gateway/test_relay_bytes.py checks it on generated events)."""
    if payload[:1] != b"{" or payload[-1:] != b"}" or b"\\u" in payload or b'"error"' in payload:
        return None
    found = next(((payload.find(s[0]), s) for s in _SPELLINGS if payload.find(s[0]) >= 0), None)
    if found is None:
        return None
    at, (head, text, deltas) = found
    at = end = at + len(head)
    while payload[end : end + 1].isdigit():
        end += 1
    if end == at or end - at > 6 or (payload[at : at + 1] == b"0" and end - at > 1):
        return None
    once: tuple[bytes, ...]
    if payload.startswith(text, end):
        objects, once = 2, _ONCE_TEXT
    else:
        delta = next((d for d in deltas if payload.startswith(d, end)), None)
        if delta is None or payload[end + len(delta) : end + len(delta) + 1] == b'"':
            return None
        objects, once = 3, (*_ONCE_DELTA, delta[delta.index(b"{") + 1 : delta.index(b":", delta.index(b"{"))])
    if payload.count(b"{") != objects or any(payload.count(key) != 1 for key in once):
        return None
    if not (_only_null(payload, b'"finish_reason"') and _only_null(payload, b'"usage"')):
        return None
    if not payload.isascii():
        try:
            payload.decode()
        except UnicodeDecodeError:
            return None
    return int(payload[at:end])


class StreamRelay:
    def __init__(self, strip_usage: bool, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.strip_usage = strip_usage
        self.max_event_bytes = max_event_bytes
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
        if self._parser.pending_bytes > self.max_event_bytes:
            message = f"an event of over {self.max_event_bytes} bytes (no blank line ends it)"
            raise MalformedStream(message, bytes(out))
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
        self.seen.data_events += 1
        if payload.strip() == DONE:
            self.seen.done = True
            self.done_event = framed
            return self._release()
        if self.seen.data_events > 1 and (index := plain_token(payload)) is not None:
            try:
                self._stamp(index, now_ns)
            except OddAnswer as exc:
                raise MalformedStream(f"{exc}: {payload[:200]!r}") from None
            return self._release() + framed if self._held else framed
        try:
            chunk = json.loads(payload)
        except (ValueError, RecursionError):
            raise MalformedStream(f"data is not JSON: {payload[:200]!r}") from None
        if type(chunk) is not dict:
            raise MalformedStream(f"data is not a JSON object: {payload[:200]!r}")
        if "error" in chunk:
            self.seen.error = error_message(chunk["error"])
            return self._release() + framed
        try:
            choices = read_choices(chunk.get("choices"))
            self._note(choices, now_ns)
            usage = chunk.get("usage")
            if usage is not None:
                self.seen.usage = read_usage(usage)
                self.seen.engine = read_engine_metrics(chunk.get("metrics")) or self.seen.engine
        except OddAnswer as exc:
            raise MalformedStream(f"{exc}: {payload[:200]!r}") from None
        if usage and self.strip_usage and not choices:
            return self._release(chunk.get("system_fingerprint"))
        if self.strip_usage and choices and all(c.get("finish_reason") for c in choices):
            self._held.append(framed)
            return b""
        return self._release() + framed

    def _note(self, choices: list[dict[str, Any]], now_ns: int) -> None:
        """The event's tokens (its time, overall and per choice) and finish reasons."""
        stamped = False
        for choice in choices:
            if _has_content(choice):
                index = choice.get("index", 0)
                if type(index) is not int or index < 0:
                    raise OddAnswer(f"choices[].index is {index!r}, not a choice index")
                self._stamp(index, now_ns, event=not stamped)
                stamped = True
            if reason := read_finish_reason(choice):
                self.seen.finish_reason = reason

    def _stamp(self, index: int, now_ns: int, event: bool = True) -> None:
        """A token of choice `index` at now_ns; `event`: the first of its event (the event's time is noted once)."""
        seen = self.seen
        if event:
            content = seen.content_ns
            if not content or content[-1] != now_ns:
                seen.arrivals += 1
            content.append(now_ns)
        stamps = seen.choice_ns.get(index)
        if stamps is None:
            if len(seen.choice_ns) >= MAX_CHOICES:
                raise OddAnswer(f"more than {MAX_CHOICES} choices in one stream")
            stamps = seen.choice_ns[index] = []
        stamps.append(now_ns)

    def _release(self, fingerprint: str | None = None) -> bytes:
        """Forward held finish events; the last one gets the fingerprint the usage event carried."""
        held, self._held = self._held, []
        if fingerprint is not None and held and b'"system_fingerprint"' not in held[-1]:
            body = held[-1].rstrip()
            if body.endswith(b"}"):
                extra = b',"system_fingerprint":' + json.dumps(fingerprint).encode()
                held[-1] = body[:-1] + extra + b"}\n\n"
        return b"".join(held)
