from __future__ import annotations

import re

import pytest

from collector.gateway.answers import Usage
from collector.gateway.relay import MalformedStream, StreamRelay

# What a vLLM pool streams for a 2-token completion, with include_usage (as the gateway asks) ...
WITH_USAGE = (
    b'data: {"id":"c1","choices":[{"index":0,"text":"4","finish_reason":null}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"text":"6","finish_reason":null}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"text":"","finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,'
    b'"prompt_tokens_details":{"cached_tokens":0}},"system_fingerprint":"vllm-0.32.0"}\n\n'
    b"data: [DONE]\n\n"
)
# ... and what it streams to a client that did not ask for usage: the fingerprint sits on the finish event.
WITHOUT_USAGE = (
    b'data: {"id":"c1","choices":[{"index":0,"text":"4","finish_reason":null}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"text":"6","finish_reason":null}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"text":"","finish_reason":"stop"}],"system_fingerprint":"vllm-0.32.0"}\n\n'
    b"data: [DONE]\n\n"
)


def relay_all(relay: StreamRelay, data: bytes, piece: int) -> bytes:
    """Feed `data` in pieces of `piece` bytes at t = 0, 1, 2 ... ns; then what the gateway sends last, once the
    row is journaled: `data: [DONE]`, which the relay holds back (and never forwards itself)."""
    out = b"".join(relay.feed(data[i : i + piece], i // piece) for i in range(0, len(data), piece))
    assert b"[DONE]" not in out
    return out + relay.end() + relay.done_event


@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_usage_asked_for_the_client_is_removed_again_byte_for_byte(piece: int) -> None:
    relay = StreamRelay(strip_usage=True)
    assert relay_all(relay, WITH_USAGE, piece) == WITHOUT_USAGE
    assert relay.seen.usage == Usage(prompt_tokens=7, completion_tokens=3, cached_tokens=0)
    assert relay.seen.finish_reason == "stop"
    assert relay.seen.done
    assert len(relay.seen.content_ns) == 3  # the finish event is the third token (EOS decodes to "")


def test_a_client_that_asked_for_usage_gets_the_stream_unchanged() -> None:
    relay = StreamRelay(strip_usage=False)
    assert relay_all(relay, WITH_USAGE, 10_000) == WITH_USAGE


def test_content_events_are_stamped_when_they_arrive() -> None:
    relay = StreamRelay(strip_usage=True)
    events = WITH_USAGE.split(b"\n\n")
    stamps = [100, 250, 400, 410, 420]
    for event, now in zip(events, stamps, strict=False):
        relay.feed(event + b"\n\n", now)
    assert relay.seen.content_ns == [100, 250, 400]  # the usage event and [DONE] carry no token


def test_chat_deltas_count_as_content_and_the_role_event_does_not() -> None:
    relay = StreamRelay(strip_usage=False)
    relay.feed(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n', 5)
    relay.feed(b'data: {"choices":[{"index":0,"delta":{"content":"3"}}]}\n\n', 9)
    assert relay.seen.content_ns == [9]


def test_an_error_event_from_the_pool_is_forwarded_and_noted() -> None:
    relay = StreamRelay(strip_usage=True)
    event = b'data: {"error":{"message":"out of KV cache","code":500}}\n\n'
    assert relay.feed(event, 1) == event
    assert relay.seen.error == "out of KV cache"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"data: {not json\n\n", "data is not JSON"),
        (b"data: [1, 2]\n\n", "data is not a JSON object"),
    ],
)
def test_malformed_events_raise(data: bytes, message: str) -> None:
    with pytest.raises(MalformedStream, match=message):
        StreamRelay(strip_usage=True).feed(data, 1)


def test_good_events_before_a_malformed_one_are_still_forwarded() -> None:
    good = b'data: {"choices":[{"index":0,"text":"4"}]}\n\n'
    with pytest.raises(MalformedStream) as info:
        StreamRelay(strip_usage=True).feed(good + b"data: {oops\n\n", 1)
    assert info.value.forward == good


def test_a_stream_cut_inside_an_event_is_malformed() -> None:
    relay = StreamRelay(strip_usage=True)
    relay.feed(b'data: {"choices":[{"text":"4"', 1)
    with pytest.raises(MalformedStream, match="stream ended inside an event"):
        relay.end()


@pytest.mark.parametrize("line_end", [b"\r\n", b"\r"], ids=["CRLF", "CR"])
def test_a_stream_with_other_line_ends_reaches_the_client_with_lf(line_end: bytes) -> None:
    relay = StreamRelay(strip_usage=True)
    assert relay_all(relay, WITH_USAGE.replace(b"\n", line_end), 1) == WITHOUT_USAGE
    assert (relay.seen.done, relay.seen.finish_reason, len(relay.seen.content_ns)) == (True, "stop", 3)


def test_keep_alive_comments_pass_through_and_carry_no_token() -> None:
    relay = StreamRelay(strip_usage=True)
    assert relay.feed(b": ping\r\n\r\n", 1) == b": ping\n\n"
    assert relay.seen.content_ns == []


def test_interleaved_choices_are_stamped_per_choice() -> None:
    relay = StreamRelay(strip_usage=False)
    for now, index in [(10, 0), (20, 1), (30, 0), (40, 1), (50, 1)]:
        relay.feed(b'data: {"choices":[{"index":%d,"text":"x"}]}\n\n' % index, now)
    assert relay.seen.choice_ns == {0: [10, 30], 1: [20, 40, 50]}
    assert relay.seen.content_ns == [10, 20, 30, 40, 50]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'data: {"choices": 5}\n\n', "choices is a number (5), not a list"),
        (b'data: {"choices": ["a"]}\n\n', "choices holds a string ('a'), not an object"),
        (b'data: {"choices": [{"index": -1, "text": "4"}]}\n\n', "choices[].index is -1, not a choice index"),
        (b'data: {"choices": [], "usage": {"completion_tokens": "3"}}\n\n', "usage.completion_tokens is a string"),
        (b'data: {"choices": [], "usage": 3}\n\n', "usage is a number (3), not an object"),
        (b"data: " + b"[" * 50_000 + b"\n\n", "data is not JSON"),  # a RecursionError inside json.loads
    ],
)
def test_events_of_the_wrong_shape_raise_malformed_stream(data: bytes, message: str) -> None:
    with pytest.raises(MalformedStream, match=re.escape(message)):
        StreamRelay(strip_usage=True).feed(data, 1)


def test_an_event_that_never_ends_is_malformed_once_over_the_limit() -> None:
    relay = StreamRelay(strip_usage=True, max_event_bytes=100)
    assert relay.feed(b"data: " + b"x" * 90, 1) == b""
    with pytest.raises(MalformedStream, match="an event of over 100 bytes"):
        relay.feed(b"x" * 20, 2)
