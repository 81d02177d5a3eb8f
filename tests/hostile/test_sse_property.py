"""The SSE parser (collector/gateway/sse.py) and the relay over it, by Hypothesis: any byte stream, cut into
any pieces, gives the same events as fed whole; the parser never raises; CR, LF and CRLF line ends (also a CRLF
cut between its CR and its LF) give the same events; the relay raises nothing but MalformedStream."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gateway.relay import MalformedStream, StreamRelay
from collector.gateway.sse import Event, EventParser


def parse(pieces: Sequence[bytes]) -> tuple[list[Event], Event | None]:
    parser = EventParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events, parser.end()


@st.composite
def cut(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at any positions."""
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# streams made of the bytes that matter to the parser, plus any others
sse_bytes = st.lists(
    st.sampled_from([b"\n", b"\r", b"\r\n", b":", b" ", b"data", b"data:", b"data: ", b"event: x", b"id: 1", b"{}",
                     b"[DONE]", b"\xff", b"\x00"]) | st.binary(max_size=8),
    max_size=40,
).map(b"".join)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.data(), sse_bytes)
def test_any_split_gives_the_events_of_the_whole(data: st.DataObject, stream: bytes) -> None:
    whole = parse([stream])
    assert parse(data.draw(cut(stream))) == whole
    assert parse([bytes([b]) for b in stream]) == whole


@settings(max_examples=300, deadline=None)
@given(st.data(), st.lists(st.lists(st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b),
                                    min_size=1, max_size=3), max_size=5),
       st.sampled_from([b"\n", b"\r", b"\r\n"]))  # fmt: skip
def test_cr_lf_and_crlf_line_ends_give_the_same_events(
    data: st.DataObject, events: list[list[bytes]], line_end: bytes
) -> None:
    def stream(end: bytes) -> bytes:
        return b"".join(end.join(lines) + end + end for lines in events)

    def payloads(found: list[Event]) -> list[bytes | None]:
        return [e.data for e in found]

    expected, _ = parse([stream(b"\n")])
    got, last = parse(data.draw(cut(stream(line_end))))
    assert payloads(got) == payloads(expected)
    assert [e.raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n") for e in got] == [e.raw for e in expected]
    assert last is None


@settings(max_examples=300, deadline=None)
@given(st.data(), sse_bytes, st.booleans())
def test_the_relay_raises_nothing_but_malformed_stream(data: st.DataObject, stream: bytes, strip: bool) -> None:
    relay = StreamRelay(strip_usage=strip, max_event_bytes=64)
    try:
        for i, piece in enumerate(data.draw(cut(stream))):
            relay.feed(piece, i)
        relay.end()
    except MalformedStream:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.data(),
    st.lists(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                              st.sampled_from(["choices", "usage", "index", "text", "delta", "finish_reason",
                                               "prompt_tokens", "completion_tokens", "error", "content"]),
                              inner, max_size=4), max_leaves=12), max_size=6),
    st.booleans(),
)  # fmt: skip
def test_any_json_events_give_a_stream_or_malformed_stream(
    data: st.DataObject, chunks: list[object], strip: bool
) -> None:
    stream = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    relay = StreamRelay(strip_usage=strip)
    try:
        for i, piece in enumerate(data.draw(cut(stream))):
            relay.feed(piece, i)
        relay.end()
    except MalformedStream:
        return
    seen = relay.seen
    assert seen.done
    assert seen.usage is None or all(
        v is None or (type(v) is int and v >= 0)
        for v in (seen.usage.prompt_tokens, seen.usage.completion_tokens, seen.usage.cached_tokens)
    )
    assert seen.finish_reason is None or type(seen.finish_reason) is str
    assert sorted(seen.content_ns) == seen.content_ns
