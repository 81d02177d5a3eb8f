"""The one SSE parser: hand-written streams, cut at every byte position, give the same events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from collector.gateway.sse import Event, EventParser, read_data

# A comment, a one-line event, a three-line data event (the second value keeps its second space, a bare `data`
# line adds an empty line), other fields next to data, extra blank lines, and OpenAI's last event.
STREAM = (
    b": keep-alive\n\n"
    b'data: {"a":1}\n\n'
    b"data: first\ndata:  second\ndata\n\n"
    b"event: x\nid: 7\ndata:third\n\n\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    Event(b": keep-alive", None),
    Event(b'data: {"a":1}', b'{"a":1}'),
    Event(b"data: first\ndata:  second\ndata", b"first\n second\n"),
    Event(b"event: x\nid: 7\ndata:third", b"third"),
    Event(b"data: [DONE]", b"[DONE]"),
]


def parse(pieces: Sequence[bytes]) -> tuple[list[Event], Event | None]:
    parser = EventParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    return events, parser.end()


def every_cut(stream: bytes) -> list[list[bytes]]:
    """The stream whole, cut in two at every position, and byte by byte."""
    return [[stream], *([stream[:i], stream[i:]] for i in range(len(stream) + 1)), [bytes([b]) for b in stream]]


def with_line_end(events: list[Event], line_end: bytes) -> list[Event]:
    return [Event(e.raw.replace(b"\n", line_end), e.data) for e in events]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_cut_of_a_stream_gives_the_same_events(line_end: bytes) -> None:
    stream = STREAM.replace(b"\n", line_end)
    expected = with_line_end(EVENTS, line_end)
    for pieces in every_cut(stream):
        assert parse(pieces) == (expected, None), pieces


def test_mixed_line_ends_and_a_cr_lf_pair_cut_in_two() -> None:
    stream = b"data: a\r\ndata: b\rdata: c\n\r\n: c\r\r"
    expected = [Event(b"data: a\r\ndata: b\rdata: c", b"a\nb\nc"), Event(b": c", None)]
    for pieces in every_cut(stream):
        assert parse(pieces) == (expected, None), pieces


def test_only_cr_and_lf_end_lines() -> None:
    data = "a\x0bb\x0cc\x1cd\x1ee\x85f\u2028g".encode()  # line breaks to str.splitlines, not to SSE
    for pieces in every_cut(b"data: " + data + b"\n\n"):
        assert parse(pieces) == ([Event(b"data: " + data, data)], None), pieces


@pytest.mark.parametrize(
    ("stream", "events", "last"),
    [
        (b"data: x\ndata: y", [], Event(b"data: x\ndata: y", b"x\ny")),  # ended inside its last line
        (b"data: x\r\n", [], Event(b"data: x", b"x")),  # ended after a line, before the blank line
        (b": only a comment", [], Event(b": only a comment", None)),
        (b"data: x\n\n\n", [Event(b"data: x", b"x")], None),  # blank lines after the last event: no event
    ],
)  # fmt: skip
def test_the_event_a_stream_ends_inside_comes_from_end(stream: bytes, events: list[Event], last: Event | None) -> None:
    for pieces in every_cut(stream):
        assert parse(pieces) == (events, last), pieces


def test_end_empties_the_parser() -> None:
    parser = EventParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.end() == Event(b"data: x", b"x")
    assert parser.end() is None


async def _pieces(pieces: Sequence[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def test_read_data_hands_on_payloads_until_told_to_stop() -> None:
    seen: list[bytes] = []

    def handle(data: bytes) -> bool:
        seen.append(data)
        return data == b"stop"

    asyncio.run(read_data(_pieces([b": hi\n\ndata: a\n", b"\ndata: stop\n\ndata: never\n\n"]), handle))
    assert seen == [b"a", b"stop"]
    seen.clear()
    asyncio.run(read_data(_pieces([b"data: a\n\ndata: [DONE]"]), handle))
    assert seen == [b"a", b"[DONE]"]  # the last event, without its blank line, is handed on too
