"""The engine's own per-request timings (vLLM `metrics`, --enable-per-request-metrics) as the gateway reads them
from a stream's usage event and from a whole answer, and how many distinct arrivals a stream's tokens had (a pool
that coalesces its stream, as Ray Serve LLM's 50 ms batching does, delivers several token events in one read)."""

from __future__ import annotations

import json
import math

import pytest

from collector.gateway.answers import EngineTimings, OddAnswer, read_answer, read_engine_metrics
from collector.gateway.relay import StreamRelay

# what vLLM 0.32 puts beside `usage` (ms; tokens_per_second is left unread: it follows from the others)
METRICS = {"queue_time_ms": 1.5, "time_to_first_token_ms": 12.0, "generation_time_ms": 20.0, "mean_itl_ms": 10.0,
           "tokens_per_second": 93.75}  # fmt: skip
# 1.5 ms -> 0.0015 s, 12 ms -> 0.012 s, 20 ms -> 0.02 s, 10 ms (= 20 ms / (3 - 1) tokens) -> 0.01 s
SECONDS = EngineTimings(queue_s=0.0015, prefill_s=0.012, decode_s=0.02, tpot_s=0.01)


def token(text: str) -> bytes:
    return (
        b'data: {"id":"c1","choices":[{"index":0,"text":' + json.dumps(text).encode() + b',"finish_reason":null}]}\n\n'
    )


USAGE_EVENT = (
    b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3},"metrics":'
    + json.dumps(METRICS).encode()
    + b"}\n\n"
)


def test_vllms_metrics_object_is_read_in_seconds() -> None:
    assert read_engine_metrics(METRICS) == SECONDS
    # a timing vLLM could not compute is null or absent: None, the others still read
    assert read_engine_metrics({"queue_time_ms": 0, "mean_itl_ms": None}) == EngineTimings(queue_s=0.0)
    assert read_engine_metrics(None) is None
    assert read_engine_metrics({"tokens_per_second": 5.0}) is None  # nothing the row stores


@pytest.mark.parametrize(
    ("metrics", "field"),
    [
        ([1.0], "metrics is a list"),
        ({"queue_time_ms": "1.5"}, "metrics.queue_time_ms is a string"),
        ({"queue_time_ms": True}, "metrics.queue_time_ms is a boolean"),
        ({"time_to_first_token_ms": -1}, "metrics.time_to_first_token_ms is a number (-1)"),
        ({"generation_time_ms": math.inf}, "metrics.generation_time_ms is a number (inf)"),
        ({"mean_itl_ms": math.nan}, "metrics.mean_itl_ms is a number (nan)"),
        ({"mean_itl_ms": 2e9}, "metrics.mean_itl_ms is a number (2000000000.0)"),
    ],
)
def test_a_metrics_object_that_is_not_vllms_names_the_field(metrics: object, field: str) -> None:
    with pytest.raises(OddAnswer) as info:
        read_engine_metrics(metrics)
    assert str(info.value).startswith(field), str(info.value)


def test_a_whole_answer_carries_its_timings() -> None:
    answer = {"choices": [{"index": 0, "text": "46", "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 7, "completion_tokens": 3}, "metrics": METRICS}  # fmt: skip
    assert read_answer(json.dumps(answer).encode()).engine == SECONDS
    assert read_answer(json.dumps({**answer, "metrics": None}).encode()).engine is None  # the option off


def test_the_usage_event_gives_the_timings_and_each_read_counts_once_as_an_arrival() -> None:
    relay = StreamRelay(strip_usage=False)
    relay.feed(token("4") + token("6"), now_ns=100)  # two token events in one read: one arrival
    relay.feed(token(""), now_ns=250)  # the EOS token, later: a second arrival
    relay.feed(USAGE_EVENT + b"data: [DONE]\n\n", now_ns=300)
    assert relay.seen.content_ns == [100, 100, 250] and relay.seen.arrivals == 2
    assert relay.seen.engine == SECONDS


def test_a_stream_without_metrics_has_no_engine_timings() -> None:
    relay = StreamRelay(strip_usage=True)
    out = relay.feed(token("4") + b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1}}'
                     b"\n\n", now_ns=5)  # fmt: skip
    assert relay.seen.engine is None and relay.seen.arrivals == 1
    assert b"usage" not in out  # the usage the gateway asked for is still removed for the client


def test_odd_metrics_on_the_usage_event_are_a_malformed_stream() -> None:
    relay = StreamRelay(strip_usage=False)
    with pytest.raises(ValueError, match=r"metrics\.queue_time_ms is a string"):
        relay.feed(b'data: {"choices":[],"usage":{"prompt_tokens":1},"metrics":{"queue_time_ms":"x"}}\n\n', 1)
