"""The relay's hot path (collector/gateway/relay.py plain_token): a token event is recognised by its bytes, never
parsed; every event it recognises is one json.loads would read as the same token (one choice, that index, a
token, no finish reason, no usage, no error), and anything else goes to json.loads with its checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gateway.answers import Usage
from collector.gateway.relay import MalformedStream, StreamRelay, _has_content, plain_token

FIRST = b'data: {"choices":[{"index":0,"text":"4"}]}\n\n'  # the first data event is always parsed


def test_vllms_token_events_are_recognised_in_both_spellings() -> None:
    # compact, as pydantic's model_dump_json writes (vLLM), and json.dumps' default ", " / ": "
    completion = {"id": "cmpl-1", "object": "text_completion", "model": "m",
                  "choices": [{"index": 3, "text": "6", "logprobs": None, "finish_reason": None}]}  # fmt: skip
    chat = {"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}], "usage": None}
    for event, index in ((completion, 3), (chat, 0)):
        assert plain_token(json.dumps(event, separators=(",", ":")).encode()) == index
        assert plain_token(json.dumps(event).encode()) == index


@pytest.mark.parametrize(
    "payload",
    [
        b'{"choices":[{"index":0,"text":"","finish_reason":"stop"}]}',  # a finish event: parsed
        b'{"choices":[],"usage":{"prompt_tokens":1}}',  # the usage event
        b'{"choices":[{"index":0,"text":"4"}],"\\u0075sage":{"prompt_tokens":1}}',  # a key spelled with \u
        b'{"error":{"message":"x"},"choices":[{"index":0,"text":"4"}]}',
        b'{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}',  # the role event: no token
        b'{"choices":[{"index":0,"text":"4"},{"index":1,"text":"5"}]}',  # two choices in one event
        b'{"choices":[{"index":"0","text":"4"}]}',
        b'{"choices":[{"index":0,"text":"\xff"}]}',  # not UTF-8
        b'[{"choices":[{"index":0,"text":"4"}]}]',
        b'{"choices":[{"index":0,"text":null}]}',
    ],
)
def test_events_that_are_not_plain_tokens_go_to_json(payload: bytes) -> None:
    assert plain_token(payload) is None


def test_a_usage_key_spelled_with_an_escape_is_still_read() -> None:
    relay = StreamRelay(strip_usage=False)
    relay.feed(FIRST + b'data: {"choices":[],"\\u0075sage":{"prompt_tokens":7,"completion_tokens":2}}\n\n', 1)
    assert relay.seen.usage == Usage(prompt_tokens=7, completion_tokens=2)


def test_a_later_token_event_that_is_not_utf8_is_still_malformed() -> None:
    with pytest.raises(MalformedStream, match="data is not JSON"):
        StreamRelay(strip_usage=False).feed(FIRST + b'data: {"choices":[{"index":0,"text":"\xff"}]}\n\n', 1)


def test_token_events_after_the_first_are_stamped_per_choice_without_parsing() -> None:
    relay = StreamRelay(strip_usage=False)
    relay.feed(FIRST, 10)
    relay.feed(b'data: {"choices":[{"index":1,"text":"5"}]}\n\ndata: {"choices":[{"index":0,"text":"6"}]}\n\n', 20)
    # 10: the first event; 20: two events in one read (one arrival, two token events)
    assert relay.seen.content_ns == [10, 20, 20] and relay.seen.arrivals == 2
    assert relay.seen.choice_ns == {0: [10, 20], 1: [20]}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.text(alphabet='ab"\\\u00e9x', max_size=3),
    lambda inner: st.lists(inner, max_size=2)
    | st.dictionaries(st.sampled_from(["index", "text", "delta", "content", "reasoning_content", "usage", "error",
                                       "finish_reason", "role"]), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _choice(draw: st.DrawFn) -> dict[str, Any]:
    """A choice that often starts as vLLM's do (index, then text or delta), with odd keys and values after."""
    choice: dict[str, Any] = {}
    if draw(st.booleans()):
        choice["index"] = draw(st.integers(0, 3))
    kind = draw(st.sampled_from(["text", "delta", "none"]))
    if kind == "text":
        choice["text"] = draw(st.text(alphabet='4"\\\n\u00e9', max_size=3))
    elif kind == "delta":
        key = draw(st.sampled_from(["content", "reasoning_content"]))
        choice["delta"] = {key: draw(st.text(alphabet='4"\u00e9', max_size=2)), **draw(st.dictionaries(
            st.sampled_from(["content", "role", "reasoning_content"]), json_values, max_size=2))}  # fmt: skip
    extra = draw(st.dictionaries(st.sampled_from(["index", "text", "delta", "finish_reason", "logprobs"]),
                                 json_values, max_size=3))  # fmt: skip
    return {**choice, **{k: v for k, v in extra.items() if k not in choice}}


@st.composite
def events(draw: st.DrawFn) -> bytes:
    event: dict[str, Any] = draw(st.dictionaries(st.sampled_from(["id", "usage", "error", "metrics"]), json_values,
                                                 max_size=2))  # fmt: skip
    event["choices"] = [_choice(draw) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        event = {"id": "c", "choices": event.pop("choices"), **event}
    separators = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    raw = json.dumps(event, separators=separators, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):  # a duplicate key, which json.loads resolves to the last
        raw = raw[:-1] + draw(st.sampled_from([',"choices":[]', ',"usage":{}', ',"error":1'])) + "}"
    return raw.encode()


@settings(max_examples=1000, deadline=None)
@given(events())
def test_every_event_recognised_by_its_bytes_is_that_token_for_json(payload: bytes) -> None:
    index = plain_token(payload)
    if index is None:
        return
    chunk = json.loads(payload)
    assert "error" not in chunk and chunk.get("usage") is None
    (choice,) = chunk["choices"]
    assert choice.get("index", 0) == index and _has_content(choice) and choice.get("finish_reason") is None


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 99), st.text(st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="{"), max_size=8),
       st.booleans(), st.sampled_from([(",", ":"), (", ", ": ")]))  # fmt: skip
def test_every_vllm_token_event_is_recognised(index: int, text: str, chat: bool, separators: tuple[str, str]) -> None:
    """vLLM's token events all take the hot path, whatever their text (quotes, backslashes, any Unicode) except
    control characters (json writes them as \\u escapes) and "{" (the object count): those are parsed."""
    choice: dict[str, Any] = {"index": index}
    choice |= {"delta": {"content": text or "x"}} if chat else {"text": text, "logprobs": None}
    event = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{**choice, "finish_reason": None}]}  # fmt: skip
    assert plain_token(json.dumps(event, separators=separators, ensure_ascii=False).encode()) == index
