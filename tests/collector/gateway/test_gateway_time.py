"""The gateway's own time per request (issue 18 item 6): requests.gateway_s and the reply header
x-inferwatch-gateway-ms (collector/gateway/exchange.py Exchange.gateway_ns). A whole answer's header is the row's
figure; a stream's header, sent before the stream, is the part until the pool was called, so at most the row's.

Real HTTP on loopback: the gateway under uvicorn (tests/collector/gateway/served.py) in front of the scripted
upstream (tests/collector/faulty_upstream.py), rows in a real DuckDB store.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from collector.vocabulary import GATEWAY_TIME_HEADER
from tests.collector.faulty_upstream import FaultyUpstream
from tests.collector.gateway.served import ServedGateway, serve_gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream) -> Iterator[ServedGateway]:
    with serve_gateway(upstream, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def post(served: ServedGateway, request_id: str, **fields: object) -> httpx.Response:
    body = {"model": "arith@ok", "prompt": "1", **fields}
    return httpx.post(f"{served.url}/v1/completions", json=body, headers={"x-request-id": request_id}, timeout=30)


def test_a_whole_answer_says_the_gateway_time_it_stored(served: ServedGateway) -> None:
    reply = post(served, "whole")
    row = served.row("whole")
    # the header is the row's figure in ms, rounded to 3 decimals (1 µs)
    assert float(reply.headers[GATEWAY_TIME_HEADER]) == pytest.approx(row["gateway_s"] * 1e3, abs=5e-4)
    # the gateway's part is inside the request's time (which also holds the pool's)
    assert 0 < row["gateway_s"] < row["e2e_s"]


def test_a_stream_says_the_time_until_the_pool_was_called(served: ServedGateway) -> None:
    reply = post(served, "stream", stream=True)
    row = served.row("stream")
    header_ms = float(reply.headers[GATEWAY_TIME_HEADER])
    assert 0 < header_ms <= row["gateway_s"] * 1e3 + 5e-4  # the row adds the time spent on each read
    assert row["gateway_s"] < row["e2e_s"]
