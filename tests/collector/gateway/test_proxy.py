"""The gateway as a real collector process, in front of a scripted upstream that fails on demand."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector import daemon
from collector.state import CollectorState
from collector.store.door import open_reader
from tests.collector.faulty_upstream import POOLS, FaultyUpstream, start_collector
from tests.conftest import flush_collector

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream) -> Iterator[CollectorState]:
    home = tmp_path_factory.mktemp("collector")
    state = start_collector(home, upstream, max_body_bytes=4096)
    yield state
    daemon.down(home / "collector.json")


def stored(collector: CollectorState, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """What the store holds once the collector has committed its journal (every request it has answered)."""
    flush_collector(collector.url)
    with open_reader(collector.store) as store:
        rows: list[dict[str, Any]] = store.query(sql, params).to_pylist()
    return rows


def row(collector: CollectorState, request_id: str) -> dict[str, Any]:
    rows = stored(collector, "SELECT * FROM requests WHERE id = ?", [request_id])
    assert len(rows) == 1, f"expected one row for {request_id}, got {rows}"
    return rows[0]


def post(collector: CollectorState, body: object, request_id: str, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{collector.url}/v1/completions", content=content, timeout=30,
        headers={"content-type": "application/json", "x-request-id": request_id, **headers},
    )  # fmt: skip


def test_a_stream_passes_unchanged_and_is_recorded(collector: CollectorState, upstream: FaultyUpstream) -> None:
    body = {"model": "arith@ok", "prompt": "12+34=", "max_tokens": 3, "stream": True}
    reply = post(
        collector,
        body,
        "req-ok-1",
        traceparent=TRACEPARENT,
        **{"X-Inferwatch-Source": "load", "X-Inferwatch-Run": "run-7"},
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "req-ok-1"
    assert reply.headers["x-inferwatch-pool"] == "ok"
    events = [e for e in reply.text.split("\n\n") if e]
    # three text events and [DONE]; the usage event the gateway asked for is not passed on
    assert [json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]] == ["4", "6", ""]
    assert events[-1] == "data: [DONE]"
    sent = next(r for r in upstream.received if r["headers"].get("x-request-id") == "req-ok-1")
    assert sent["body"]["stream_options"] == {"include_usage": True}
    assert sent["headers"]["traceparent"].startswith(f"00-{TRACE_ID}-")  # same trace, the gateway's span
    assert sent["headers"]["traceparent"] != TRACEPARENT
    got = row(collector, "req-ok-1")
    assert {k: got[k] for k in ("pool", "revision", "hardware", "model", "source", "run_id", "operation",
                                "status", "error", "prompt_tokens", "cached_tokens", "completion_tokens",
                                "finish_reason", "trace_id")} == {
        "pool": "ok", "revision": "rev-ok", "hardware": "cpu", "model": "arith@ok", "source": "load",
        "run_id": "run-7", "operation": "text_completion", "status": "ok", "error": None, "prompt_tokens": 7,
        "cached_tokens": 0, "completion_tokens": 3, "finish_reason": "stop", "trace_id": TRACE_ID,
    }  # fmt: skip
    assert 0 < got["ttft_s"] <= got["e2e_s"]
    # 3 token events (the finish event's "" is the third token): two gaps, whose median is their mean;
    # TPOT = (e2e - ttft) / (3 - 1). The pool writes them 5 ms apart; should a busy machine still deliver two in
    # one read, the stream counts as coalesced and has no ITL (test_coalescing.py)
    assert got["token_events"] == 3
    if got["chunk_arrivals"] == 3:
        assert got["itl_p50_s"] == pytest.approx((got["e2e_s"] - got["ttft_s"]) / 2)
        assert got["itl_max_s"] >= got["itl_p50_s"]
    else:
        assert (got["itl_p50_s"], got["itl_max_s"]) == (None, None)
    assert got["tpot_s"] == pytest.approx((got["e2e_s"] - got["ttft_s"]) / 2)
    assert got["cost_usd"] > 0


def test_a_json_answer_passes_unchanged(collector: CollectorState) -> None:
    reply = post(collector, {"model": "arith@ok", "prompt": "12+34=", "max_tokens": 3}, "req-json-1")
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["text"] == "46"
    got = row(collector, "req-json-1")
    assert (got["status"], got["completion_tokens"], got["ttft_s"]) == ("ok", 3, None)  # no stream, no TTFT
    assert got["e2e_s"] > 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b'{"model": "arith@ok", "prompt": ', 400, "request body is not valid JSON"),
        (b"[1, 2]", 400, "request body must be a JSON object"),
        (b'{"model": "arith@gpu", "prompt": "1"}', 404, "no pool 'gpu'; pools are ok, err500, garbage"),
        (b'{"model": "arith@ok", "prompt": "' + b"1" * 5000 + b'"}', 413, "over the gateway's limit of 4096 bytes"),
    ],
)
def test_bad_requests_get_openai_errors(collector: CollectorState, body: bytes, status: int, message: str) -> None:
    reply = post(collector, body, f"bad-{status}")
    assert reply.status_code == status
    error = reply.json()["error"]
    assert message in error["message"]
    assert error["code"] == status


def test_a_bad_source_header_is_refused(collector: CollectorState) -> None:
    reply = post(collector, {"model": "arith@ok", "prompt": "1"}, "bad-src", **{"X-Inferwatch-Source": "robot"})
    assert reply.status_code == 400
    assert "X-Inferwatch-Source: 'robot' is not one of traffic, load, canary, eval" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("pool", "message", "error_type"),
    [
        ("down", "pool down: no answer from http://127.0.0.1:", "upstream_unreachable"),
        ("err500", "pool err500: HTTP 500 from", "upstream_5xx"),
    ],
)
def test_upstream_down_or_5xx_is_a_502_with_a_row(
    collector: CollectorState, pool: str, message: str, error_type: str
) -> None:
    reply = post(collector, {"model": f"arith@{pool}", "prompt": "1", "stream": True}, f"req-{pool}")
    assert reply.status_code == 502
    assert message in reply.json()["error"]["message"]
    got = row(collector, f"req-{pool}")
    assert (got["status"], got["error_type"]) == ("error", error_type)
    assert message in got["error"]
    if pool == "err500":
        assert "engine dead" in got["error"]


def test_malformed_sse_is_recorded_the_client_gets_an_error_event_and_the_gateway_goes_on(
    collector: CollectorState,
) -> None:
    reply = post(collector, {"model": "arith@garbage", "prompt": "1", "stream": True}, "req-garbage")
    assert reply.status_code == 200  # the stream had started
    events = [json.loads(e[6:]) for e in reply.text.split("\n\n") if e]
    assert events[0]["choices"][0]["text"] == "4"
    assert "malformed event stream" in events[-1]["error"]["message"]
    got = row(collector, "req-garbage")
    assert (got["status"], got["error_type"]) == ("error", "malformed_stream")
    assert "data is not JSON" in got["error"]
    again = post(collector, {"model": "arith@ok", "prompt": "1", "stream": True}, "req-after-garbage")
    assert again.status_code == 200 and row(collector, "req-after-garbage")["status"] == "ok"


def test_a_stream_without_done_is_an_error(collector: CollectorState) -> None:
    post(collector, {"model": "arith@truncated", "prompt": "1", "stream": True}, "req-truncated")
    got = row(collector, "req-truncated")
    assert (got["status"], got["error_type"]) == ("error", "stream_cut")
    assert got["error"] == "pool truncated: stream ended before data: [DONE]"


def test_a_client_that_hangs_up_right_after_done_got_it_all(collector: CollectorState) -> None:
    # the pool keeps the connection open 1 s after [DONE]; the client (as the load generator) leaves at [DONE]
    body = {"model": "arith@ok", "prompt": "1", "stream": True, "linger_s": 1.0}
    with httpx.stream("POST", f"{collector.url}/v1/completions", json=body, headers={"x-request-id": "req-done"}) as r:
        for line in r.iter_lines():
            if line == "data: [DONE]":
                break
    # the gateway journals the row before it relays [DONE]: the first commit after [DONE] holds it
    rows = stored(collector, "SELECT status, error_type FROM requests WHERE id = 'req-done'")
    assert rows == [{"status": "ok", "error_type": None}]


def test_a_client_that_goes_away_cancels_the_upstream_request(
    collector: CollectorState, upstream: FaultyUpstream
) -> None:
    body = {"model": "arith@slow", "prompt": "1", "stream": True}
    with httpx.stream("POST", f"{collector.url}/v1/completions", json=body, headers={"x-request-id": "req-gone"}) as r:
        for count, _ in enumerate(r.iter_raw(), start=1):
            if count == 3:
                break  # leaving the block closes the connection
    got = None
    for _ in range(50):  # the gateway records the request when it sees the client go
        rows = stored(collector, "SELECT status, error, error_type FROM requests WHERE id = 'req-gone'")
        if rows:
            got = rows[0]
            break
        asyncio.run(asyncio.sleep(0.1))
    assert got == {"status": "cancelled", "error": "client disconnected mid-stream", "error_type": "cancelled"}
    for _ in range(50):
        if "req-gone" in upstream.cancelled:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert "req-gone" in upstream.cancelled


def test_64_concurrent_streams_lose_no_row(collector: CollectorState) -> None:
    async def one(client: httpx.AsyncClient, i: int) -> int:
        body = {"model": "arith@ok", "prompt": "1", "stream": True}
        reply = await client.post(f"{collector.url}/v1/completions", json=body, headers={"x-request-id": f"c64-{i}"})
        return reply.status_code

    async def all_of_them() -> list[int]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            return await asyncio.gather(*(one(client, i) for i in range(64)))

    assert asyncio.run(all_of_them()) == [200] * 64
    got = stored(collector, "SELECT id, status FROM requests WHERE id LIKE 'c64-%'")
    assert sorted(r["id"] for r in got) == sorted(f"c64-{i}" for i in range(64))
    assert {r["status"] for r in got} == {"ok"}


def test_models_lists_every_pool(collector: CollectorState) -> None:
    ids = [m["id"] for m in httpx.get(f"{collector.url}/v1/models").json()["data"]]
    assert ids == [f"arith@{p}" for p in POOLS]


def test_metrics_exposition_passes_promtool(collector: CollectorState) -> None:
    post(collector, {"model": "arith@ok", "prompt": "1", "stream": True}, "req-for-metrics")
    text = httpx.get(f"{collector.url}/metrics").text
    assert "gen_ai_server_time_to_first_token_seconds_bucket{" in text
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_sigterm_commits_every_acknowledged_row(tmp_path: Path, upstream: FaultyUpstream) -> None:
    state = start_collector(tmp_path, upstream, commit_interval_s=3600.0)  # only the shutdown commit can save them
    for i in range(20):
        assert post_to(state, i).status_code == 200
    assert daemon.down(tmp_path / "collector.json")
    with open_reader(state.store) as store:
        ids = store.query("SELECT id FROM requests ORDER BY id").column("id").to_pylist()
    assert ids == sorted(f"term-{i}" for i in range(20))


def post_to(state: CollectorState, i: int) -> httpx.Response:
    return post(state, {"model": "arith@ok", "prompt": "1", "stream": i % 2 == 0}, f"term-{i}")
