"""Coalesced streams and the engine's timings in the row (issue 18 items 1 and 2): a stream whose token events
arrive in one read (Ray Serve LLM's stream batching) has no client ITL (not a measurement) but keeps its client
TPOT, and says so in token_events > chunk_arrivals; the engine's own timings (vLLM `metrics`) are stored as sent,
from the usage event of a stream and from a whole answer, and are empty for a pool that sends none.

Real HTTP on loopback: the gateway under uvicorn (tests/collector/gateway/served.py) in front of the scripted
upstream's ok pool (tests/collector/faulty_upstream.py, ENGINE_METRICS), rows in a real DuckDB store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from collector.gateway.timing import choices_timing, stream_timing
from tests.collector.faulty_upstream import FaultyUpstream
from tests.collector.gateway.served import ServedGateway, serve_gateway

ENGINE = (0.0025, 0.04, 0.03, 0.015)  # ENGINE_METRICS in s: 2.5 ms queue, 40 prefill, 30 decode, 15 per token
ENGINE_COLUMNS = ("engine_queue_s", "engine_prefill_s", "engine_decode_s", "engine_tpot_s")


def test_a_coalesced_stream_has_no_itl_and_keeps_its_tpot() -> None:
    # tokens at 100, 100, 100 ns after a start at 0: TTFT = e2e = 100 ns, TPOT = (100 - 100) / (3 - 1) = 0
    timing = stream_timing(0, [100, 100, 100], 500, completion_tokens=3)
    assert (timing.itl_p50_s, timing.itl_max_s, timing.tpot_s) == (None, None, 0.0)
    assert timing.ttft_s == pytest.approx(100e-9)
    # two of three in one read: still coalesced (one gap of 0)
    assert stream_timing(0, [100, 300, 300], 500, 3).itl_p50_s is None
    # each on its own: gaps 200 and 100 ns, median 150 ns, max 200 ns
    timing = stream_timing(0, [100, 300, 400], 500, 3)
    assert (timing.itl_p50_s, timing.itl_max_s) == (pytest.approx(150e-9), pytest.approx(200e-9))


def test_a_coalesced_choice_has_no_itl() -> None:
    # choice 0 at 10, 10 (one read), choice 1 at 20, 40: the zero gap of choice 0 makes the ITL no measurement
    assert choices_timing(0, [[10, 10], [20, 40]], 50, 4).itl_max_s is None
    # choice 0 at 10, 30; choice 1 at 20, 50: gaps 20 and 30 ns
    assert choices_timing(0, [[10, 30], [20, 50]], 60, 4).itl_max_s == pytest.approx(30e-9)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream) -> Iterator[ServedGateway]:
    with serve_gateway(upstream, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def ask(served: ServedGateway, request_id: str, **fields: Any) -> dict[str, Any]:
    body = {"model": "arith@ok", "prompt": "1", **fields}
    reply = httpx.post(f"{served.url}/v1/completions", json=body, headers={"x-request-id": request_id}, timeout=30)
    assert reply.status_code == 200, reply.text
    row = served.row(request_id)
    assert row["status"] == "ok", row
    return row


def engine(row: dict[str, Any]) -> tuple[float | None, ...]:
    return tuple(row[c] for c in ENGINE_COLUMNS)


def test_a_stream_stores_the_engine_timings_and_its_arrivals(served: ServedGateway) -> None:
    row = ask(served, "apart", stream=True, gap_s=0.05)  # the pool writes each event 50 ms apart: three reads
    assert engine(row) == pytest.approx(ENGINE)
    assert (row["token_events"], row["chunk_arrivals"], row["completion_tokens"]) == (3, 3, 3)
    assert row["itl_p50_s"] > 0 and row["itl_max_s"] >= row["itl_p50_s"]


def test_a_coalesced_stream_is_stored_as_such(served: ServedGateway) -> None:
    row = ask(served, "coalesced", stream=True, coalesce=True)  # one write: the three tokens in one read
    assert (row["token_events"], row["chunk_arrivals"]) == (3, 1)
    assert (row["itl_p50_s"], row["itl_max_s"]) == (None, None)
    assert row["tpot_s"] == 0.0  # (e2e - TTFT) / 2 with e2e = TTFT: kept, the figures judge engine_tpot_s
    assert engine(row) == pytest.approx(ENGINE)


def test_a_whole_answer_stores_the_engine_timings(served: ServedGateway) -> None:
    row = ask(served, "whole")
    assert engine(row) == pytest.approx(ENGINE)
    assert (row["token_events"], row["chunk_arrivals"]) == (0, 0)


@pytest.mark.parametrize("stream", [True, False])
def test_a_pool_without_metrics_leaves_the_engine_columns_empty(served: ServedGateway, stream: bool) -> None:
    row = ask(served, f"bare-{stream}", stream=stream, no_metrics=True)
    assert engine(row) == (None, None, None, None)
    assert row["completion_tokens"] == 3
