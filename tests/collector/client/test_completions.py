"""The retrying client of the canary and the evals against a scripted server on loopback: whole and streamed
answers come back in the same shape, transient failures are retried, the request's own faults are not."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from collector.client.completions import RequestFailed, StreamedAnswer, post_json
from tests.collector.faulty_upstream import USAGE, FaultyUpstream


def ask(upstream: FaultyUpstream, pool: str, body: dict[str, Any], stream: bool) -> tuple[dict[str, Any], int]:
    operation = "chat/completions" if "messages" in body else "completions"

    async def go() -> tuple[dict[str, Any], int]:
        async with httpx.AsyncClient(timeout=10) as http:
            url = f"{upstream.url}/{pool}/v1/{operation}"
            headers = {"x-request-id": uuid.uuid4().hex}  # the flaky pool fails the first try of each id
            return await post_json(http, url, {"model": f"arith@{pool}", **body}, headers, backoff_s=0.01,
                                   stream=stream)  # fmt: skip

    return asyncio.run(go())


@pytest.mark.parametrize("stream", [False, True])
def test_completions_and_chat_answers_have_one_shape_streamed_or_not(upstream: FaultyUpstream, stream: bool) -> None:
    text, attempts = ask(upstream, "sums", {"prompt": "12+30="}, stream)
    assert (text["choices"][0]["text"], text["choices"][0]["finish_reason"], attempts) == ("42", "stop", 1)
    assert text["usage"] == USAGE
    chat, _ = ask(upstream, "sums", {"messages": [{"role": "user", "content": "7+100="}]}, stream)
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "107"}


def test_a_streamed_request_asks_for_usage(upstream: FaultyUpstream) -> None:
    ask(upstream, "sums", {"prompt": "1+1="}, stream=True)
    assert {k: upstream.received[-1]["body"][k] for k in ("stream", "stream_options")} == {
        "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("pool", "message", "attempts", "transient"),
    [
        ("err500", "HTTP 500: ", 3, True),  # retried twice
        ("truncated", "the stream ended before data: [DONE]", 3, True),
        ("garbage", "malformed stream: an event is not JSON: '{this is not json'", 1, False),  # not retried
    ],
)  # fmt: skip
def test_broken_streams_are_retried_or_refused(
    upstream: FaultyUpstream, pool: str, message: str, attempts: int, transient: bool
) -> None:
    with pytest.raises(RequestFailed) as failed:
        ask(upstream, pool, {"prompt": "x"}, stream=True)
    assert str(failed.value).startswith(message)
    assert (failed.value.attempts, failed.value.transient) == (attempts, transient)


def test_the_first_try_of_a_flaky_pool_is_retried(upstream: FaultyUpstream) -> None:
    answer, attempts = ask(upstream, "flaky", {"prompt": "2+2="}, stream=True)
    assert (answer["choices"][0]["text"], attempts) == ("4", 2)


def test_stream_events_put_back_together() -> None:
    answer = StreamedAnswer()
    events = [
        b'{"choices": [{"index": 0, "text": "1", "finish_reason": null}]}',
        b'{"choices": [{"index": 1, "text": "other choice", "finish_reason": null}]}',  # n > 1: first choice only
        b'{"choices": [{"index": 0, "text": "", "finish_reason": null}]}',  # EOS decodes to ""
        b'{"choices": [{"index": 0, "text": "7", "finish_reason": "length"}]}',
        b'{"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}}',
    ]
    assert [answer.add(e) for e in events] == [False] * 5
    assert answer.add(b"[DONE]") is True
    assert answer.whole() == {"choices": [{"index": 0, "finish_reason": "length", "text": "17"}],
                              "usage": {"prompt_tokens": 4, "completion_tokens": 3}}  # fmt: skip


def test_a_stream_without_a_choice_is_an_answer_without_choices() -> None:
    answer = StreamedAnswer()
    answer.add(b"[DONE]")
    assert answer.whole() == {"choices": [], "usage": None}


def test_an_error_event_mid_stream_is_transient() -> None:
    answer = StreamedAnswer()
    answer.add(b'{"choices": [{"index": 0, "text": "1"}]}')
    with pytest.raises(Exception, match="stream error: engine overloaded") as raised:
        answer.add(b'{"error": {"message": "engine overloaded", "code": 503}}')
    assert getattr(raised.value, "transient", None) is True
