"""Limits on every connection (collector/gateway/limits.py): the head's size and header count, the body size on
every route, the time to receive a request, open connections, and completion requests in flight per client and
in total. Real uvicorn on loopback: a small app in a thread behind the limits, and a real collector process in
front of the scripted upstream (tests/collector/faulty_upstream.py), its clients told apart by API key tenant."""

from __future__ import annotations

import asyncio
import json
import logging
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.connection_flood import FLOOD
from collector import daemon
from collector.auth import key_digest
from collector.gateway.http_limits import uvicorn_options
from collector.gateway.limits import (
    Limits,
    RefusalLog,
    StreamCounts,
    client_of,
    limited,
    open_files_needed,
)
from collector.state import CollectorState
from collector.store.door import open_reader
from tests.collector.faulty_upstream import FaultyUpstream, start_collector
from tests.conftest import ROOT, flush_collector, free_port

SMALL = Limits(max_header_bytes=8192, max_headers=40, max_body_bytes=4096, receive_timeout_s=1.0,
               max_streams=3, max_streams_per_client=2)  # fmt: skip


# --- raw HTTP on a socket -------------------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after the answer

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


def parse(raw: bytes, closed: bool) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split()[1]), headers, body, closed)


def read_all(sock: socket.socket, timeout_s: float) -> tuple[bytes, bool]:
    """What the server sends until it closes the connection (True) or `timeout_s` passes (False)."""
    got, deadline = b"", time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return got, True
        if not data:
            return got, True
        got += data
    return got, False


def ask(port: int, raw: bytes, timeout_s: float = 15.0) -> Reply:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        return parse(*read_all(sock, timeout_s))


def trickle(port: int, first: bytes, then: bytes, every_s: float, timeout_s: float = 15.0) -> tuple[Reply, float]:
    """Send `first`, then `then` one byte every `every_s` until the server answers; the answer and how long it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(first)
        for i in range(int(timeout_s / every_s)):
            readable, _, _ = select.select([sock], [], [], every_s)
            if readable:
                break
            sock.sendall(then[i % len(then) : i % len(then) + 1])
        return parse(*read_all(sock, timeout_s)), time.monotonic() - started


def head(method: str, target: str, host: str, *headers: str) -> bytes:
    return "\r\n".join([f"{method} {target} HTTP/1.1", f"host: {host}", *headers, "", ""]).encode()


# --- a small app behind the limits, in a thread -----------------------------------------------------------------
@dataclass
class Served:
    port: int
    server: uvicorn.Server
    refusals: RefusalLog
    counts: StreamCounts
    calls: list[str]  # completion requests that reached the app
    release: Callable[[], None]  # lets every held completion stream end

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connections(self) -> int:
        return len(self.server.server_state.connections)


def small_app(calls: list[str], gate: asyncio.Event) -> Starlette:
    async def root(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def echo(request: Request) -> Response:
        return JSONResponse({"bytes": len(await request.body())})

    async def completions(request: Request) -> Response:
        calls.append(request.headers.get("x-request-id", "?"))
        await request.body()

        async def events() -> Any:
            yield b"data: 1\n\n"
            await gate.wait()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/", root), Route("/echo", echo, methods=["POST"]),
                             Route("/v1/completions", completions, methods=["POST"])])  # fmt: skip


@contextmanager
def serving(limits: Limits) -> Iterator[Served]:
    refusals, calls, port = RefusalLog(), [], free_port()
    counts = StreamCounts(limits.max_streams, limits.max_streams_per_client)
    loop_box: list[asyncio.AbstractEventLoop] = []
    gate_box: list[asyncio.Event] = []

    class GateApp:  # the gate is made on the server's loop, at its first request
        def __init__(self) -> None:
            self.app: Any = None

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if self.app is None:
                loop_box.append(asyncio.get_running_loop())
                gate_box.append(asyncio.Event())
                self.app = limited(small_app(calls, gate_box[0]), limits, refusals, counts)
            await self.app(scope, receive, send)

    # log_config None: uvicorn's records reach the root logger (and caplog) instead of its own handlers
    config = uvicorn.Config(GateApp(), host="127.0.0.1", port=port, loop="uvloop", lifespan="off", log_config=None,
                            log_level="warning", **uvicorn_options(limits, refusals))  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start within 10 s"

    def release() -> None:
        if gate_box:
            loop_box[0].call_soon_threadsafe(gate_box[0].set)

    try:
        yield Served(port, server, refusals, counts, calls, release)
    finally:
        release()
        server.should_exit = True
        thread.join(10)


def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


# --- the head ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "status", "limit", "message"),
    [
        (
            head("GET", "/", "x", "x-big: " + "a" * 1_000_000),
            431,
            "max_header_bytes",
            "the request line and headers are over 8192 bytes",
        ),
        (
            head("GET", "/", "x", *(f"x-h{i}: 1" for i in range(200))),
            431,
            "max_headers",
            "the request has more than 40 headers, the collector's limit (max_headers); send fewer",
        ),
        (
            head("GET", "/" + "a" * 20_000, "x"),
            414,
            "max_header_bytes",
            "the request target is over 8192 bytes, the collector's limit for the request line and headers",
        ),
    ],
    ids=["1MB-header", "200-headers", "20kB-target"],
)
def test_a_head_over_the_limits_is_refused_and_the_server_still_serves(
    raw: bytes, status: int, limit: str, message: str
) -> None:
    with serving(SMALL) as served:
        reply = ask(served.port, raw)
        assert (reply.status, reply.headers["connection"], reply.closed) == (status, "close", True)
        error = reply.error()
        assert (error["type"], error["code"]) == ("invalid_request_error", status)
        assert error["message"].startswith(message), error["message"]
        assert served.refusals.counts == {limit: 1}
        assert httpx.get(served.url).text == "ok"


def test_a_head_of_exactly_the_limit_passes_and_one_byte_more_is_refused() -> None:
    # "GET / HTTP/1.1\r\n" 16 + "host: x\r\n" 9 + "connection: close\r\n" 19 + "x-big: " 7 + value + "\r\n" 2
    # + "\r\n" 2 = 55 + value
    with serving(SMALL) as served:
        at, over = ("x-big: " + "a" * (8192 - 55 + extra) for extra in (0, 1))
        assert ask(served.port, head("GET", "/", "x", "connection: close", at)).status == 200
        assert ask(served.port, head("GET", "/", "x", "connection: close", over)).status == 431


# --- slow clients -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("first", "then", "part"),
    [
        (b"GET / HTTP/1.1\r\n", b"x-slow: abcdefghijklmnopqrstuvwxyz\r\n", "headers"),  # slowloris
        (b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n", b"a", "body"),  # a trickling body
    ],
    ids=["slow-headers", "slow-body"],
)
def test_a_slow_client_is_cut_with_408_and_holds_nothing_after(
    first: bytes, then: bytes, part: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(SMALL) as served:
        reply, took_s = trickle(served.port, first, then, every_s=0.1)
        assert (reply.status, reply.closed) == (408, True)
        assert reply.error()["message"] == (
            f"the request's {part} did not arrive within 1 s of its first byte, the collector's limit "
            "(receive_timeout_s): send the whole request at once"
        )
        assert took_s < 8  # cut at about 1 s; on old code never (the client gives up at 15 s)
        assert eventually(lambda: served.connections() == 0)  # the socket is gone on the server too
        assert eventually(lambda: not served.server.server_state.tasks)  # and no app task waits on the body
        assert httpx.get(served.url).text == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback for a client cut mid-body"


def test_a_connection_that_sends_nothing_is_closed() -> None:
    with serving(SMALL) as served, socket.create_connection(("127.0.0.1", served.port)) as sock:
        assert read_all(sock, timeout_s=8) == (b"", True)
        assert served.refusals.counts == {"receive_timeout_s": 1}


def test_connections_over_the_limit_get_503_at_the_connect() -> None:
    with serving(Limits(max_connections=3)) as served, ExitStack() as held:
        for _ in range(3):
            held.enter_context(socket.create_connection(("127.0.0.1", served.port)))
        assert eventually(lambda: served.connections() == 3)
        reply = ask(served.port, head("GET", "/", "x"))
        assert (reply.status, reply.headers["retry-after"], reply.closed) == (503, "1", True)
        assert reply.error() == {
            "message": "the collector has 3 connections open, its limit (max_connections); retry after 1 s",
            "type": "service_unavailable", "param": None, "code": 503,
        }  # fmt: skip
        held.close()
        assert eventually(lambda: served.connections() == 0)
        assert httpx.get(served.url).text == "ok"


# --- bodies -------------------------------------------------------------------------------------------------------
def chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // 1000):
        yield b"a" * 1000


def test_a_body_over_the_limit_is_413_with_or_without_content_length() -> None:
    with serving(SMALL) as served:
        for content in (b"a" * 5000, chunks(5000)):
            reply = httpx.post(f"{served.url}/echo", content=content)
            assert reply.status_code == 413
            kind = "5000 bytes" if isinstance(content, bytes) else "over 4096 bytes (chunked)"
            assert reply.json()["error"] == {
                "message": f"request body of {kind} to POST /echo is over the gateway's limit of 4096 bytes "
                "(max_body_bytes): send a smaller body", "type": "invalid_request_error", "param": None, "code": 413,
            }  # fmt: skip
        # at the limit, both ways, the route gets the whole body
        assert httpx.post(f"{served.url}/echo", content=b"a" * 4096).json() == {"bytes": 4096}
        assert httpx.post(f"{served.url}/echo", content=chunks(4000)).json() == {"bytes": 4000}


# --- completion requests in flight --------------------------------------------------------------------------------
def test_stream_counts_per_client_and_in_total() -> None:
    counts = StreamCounts(max_total=3, max_per_client=2)
    assert [counts.acquire(c) for c in ("a", "a", "b")] == [None, None, None]
    assert counts.acquire("a") == "3 completion requests are in flight, the collector's limit (max_streams)"
    counts.release("b")
    assert counts.acquire("a") == (
        "a has 2 completion requests in flight, the limit per client (max_streams_per_client)"
    )
    assert counts.acquire("c") is None
    for client in ("a", "a", "c"):
        counts.release(client)
    assert (counts.total, counts.per_client) == (0, {})


def test_a_client_is_its_tenant_else_its_address() -> None:
    assert client_of({"inferwatch.tenant": "team-a", "client": ("10.0.0.7", 5000)}) == "tenant 'team-a'"
    assert client_of({"inferwatch.tenant": None, "client": ("10.0.0.7", 5000)}) == "client 10.0.0.7"
    assert client_of({}) == "client (unknown address)"


def held_open(stack: ExitStack, reply: httpx.Response) -> httpx.Response:
    """The reply with its first bytes read; a stream is kept open until `stack` closes (its iterator, once
    dropped, would close it)."""
    if reply.status_code != 200:
        reply.read()
        return reply
    pieces = reply.iter_raw()
    next(pieces)
    stack.callback(pieces.close)
    return reply


def open_stream(stack: ExitStack, url: str, source: str, request_id: str, **json_body: Any) -> httpx.Response:
    """A streamed completion from `source` (a loopback address), its first bytes read and the stream held open."""
    client = stack.enter_context(httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30))
    reply = stack.enter_context(client.stream("POST", url, json=json_body, headers={"x-request-id": request_id}))
    return held_open(stack, reply)


def test_completion_requests_are_limited_per_peer_and_in_total_and_released_on_hangup() -> None:
    with serving(SMALL) as served:
        url = f"{served.url}/v1/completions"
        with ExitStack() as stack:
            held = [open_stream(stack, url, "127.0.0.1", f"a{i}") for i in range(2)]
            third = open_stream(stack, url, "127.0.0.1", "a2")
            held.append(open_stream(stack, url, "127.0.0.2", "b0"))
            over = open_stream(stack, url, "127.0.0.3", "c0")
            assert [r.status_code for r in held] == [200, 200, 200]
            assert (third.status_code, third.headers["retry-after"]) == (429, "1")
            assert third.json()["error"] == {
                "message": "too many requests in flight: client 127.0.0.1 has 2 completion requests in flight, the "
                "limit per client (max_streams_per_client); retry after 1 s",
                "type": "rate_limit_error", "param": None, "code": 429,
            }  # fmt: skip
            assert over.status_code == 429
            assert over.json()["error"]["message"] == (
                "too many requests in flight: 3 completion requests are in flight, the collector's limit "
                "(max_streams); retry after 1 s"
            )
            assert served.calls == ["a0", "a1", "b0"]  # the refused ones never reached the app
            assert httpx.get(served.url).text == "ok"  # other routes are not counted
        # every client hung up: their counts are released
        assert eventually(lambda: (served.counts.total, served.counts.per_client) == (0, {}))
        with ExitStack() as stack:
            assert [open_stream(stack, url, "127.0.0.1", f"d{i}").status_code for i in range(3)] == [200, 200, 429]


# --- open files ---------------------------------------------------------------------------------------------------
def test_open_files_needed_and_fitted_to_the_hard_limit() -> None:
    assert open_files_needed(Limits()) == 4096 + 1024 + 256
    # a process whose hard limit is 2000: the soft limit rises to it, and max_connections shrinks to what fits:
    # 2000 - (1024 streams + 256 margin) = 720
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 2000)); "
        "from collector.gateway.limits import Limits, fit_open_files; "
        "print(fit_open_files(Limits()).max_connections, resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["720", "2000"]


# --- through a real collector -------------------------------------------------------------------------------------
KEYS = {"alpha": "sk-alpha-0123456789", "beta": "sk-beta-0123456789", "gamma": "sk-gamma-0123456789"}


@dataclass
class Limited:
    state: CollectorState
    upstream: FaultyUpstream

    @property
    def url(self) -> str:
        return self.state.url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def serves(self) -> bool:
        return httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200

    def forwarded(self, request_id: str) -> bool:
        return any(r["headers"].get("x-request-id") == request_id for r in self.upstream.received)

    def rows(self, request_id: str) -> list[dict[str, Any]]:
        flush_collector(self.url)
        with open_reader(self.state.store) as store:
            rows: list[dict[str, Any]] = store.query("SELECT * FROM requests WHERE id = ?", [request_id]).to_pylist()
        return rows


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    home = tmp_path_factory.mktemp("limited")
    keys = home / "keys.json"
    keys.write_text(json.dumps({key_digest(key): tenant for tenant, key in KEYS.items()}))
    with FaultyUpstream() as upstream:
        state = start_collector(
            home, upstream, api_keys=str(keys), max_header_bytes=8192, max_headers=40, max_body_bytes=4096,
            receive_timeout_s=2.0, max_streams=3, max_streams_per_client=2,
        )  # fmt: skip
        try:
            yield Limited(state, upstream)
        finally:
            daemon.down(home / "collector.json")


def key_of(tenant: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


def test_the_collector_refuses_a_1mb_header_and_keeps_serving(collector: Limited) -> None:
    host = f"127.0.0.1:{collector.port}"
    reply = ask(collector.port, head("GET", "/healthz", host, "x-big: " + "a" * 1_000_000))
    assert (reply.status, reply.closed) == (431, True)
    assert reply.error()["message"].startswith("the request line and headers are over 8192 bytes")
    assert collector.serves()


@pytest.mark.parametrize(
    ("method", "path", "chunked"),
    [("PUT", "/admin/splits", False), ("PUT", "/admin/splits", True), ("POST", "/admin/flush", False),
     ("POST", "/admin/flush", True), ("POST", "/no/such/route", False), ("POST", "/v1/chat/completions", True),
     ("DELETE", "/admin/splits/ref", False)],
)  # fmt: skip
def test_every_route_refuses_a_body_over_the_limit(collector: Limited, method: str, path: str, chunked: bool) -> None:
    request_id = f"big-{method}-{path}-{chunked}"
    body = json.dumps({"model": "arith@ok", "prompt": "1" * 5000}).encode()
    reply = httpx.request(
        method, f"{collector.url}{path}", content=iter([body]) if chunked else body, timeout=30,
        headers={"content-type": "application/json", "x-request-id": request_id, **key_of("alpha")},
    )  # fmt: skip
    size = "over 4096 bytes (chunked)" if chunked else f"{len(body)} bytes"
    assert reply.status_code == 413
    assert reply.json()["error"] == {
        "message": f"request body of {size} to {method} {path} is over the gateway's limit of 4096 bytes "
        "(max_body_bytes): send a smaller body", "type": "invalid_request_error", "param": None, "code": 413,
    }  # fmt: skip
    assert not collector.forwarded(request_id)
    assert collector.rows(request_id) == []
    assert collector.serves()


def test_a_slow_body_is_cut_with_408_nothing_forwarded_no_row_no_traceback(collector: Limited) -> None:
    host = f"127.0.0.1:{collector.port}"
    first = head("POST", "/v1/completions", host, "content-type: application/json", "content-length: 200",
                 "x-request-id: slow-body-1", f"authorization: Bearer {KEYS['beta']}") + b'{"model": '  # fmt: skip
    reply, took_s = trickle(collector.port, first, b" ", every_s=0.25)
    assert (reply.status, reply.closed) == (408, True)
    assert reply.error()["message"].startswith("the request's body did not arrive within 2 s of its first byte")
    assert took_s < 10
    assert not collector.forwarded("slow-body-1")
    assert collector.rows("slow-body-1") == []
    assert collector.serves()
    assert "Traceback" not in Path(collector.state.log).read_text()


def stream_from(stack: ExitStack, collector: Limited, tenant: str, request_id: str, model: str) -> httpx.Response:
    client = stack.enter_context(httpx.Client(timeout=30))
    body = {"model": model, "prompt": "1", "max_tokens": 500, "stream": True}
    headers = {"x-request-id": request_id, **key_of(tenant)}
    reply = stack.enter_context(client.stream("POST", f"{collector.url}/v1/completions", json=body, headers=headers))
    return held_open(stack, reply)


def test_streams_are_limited_per_tenant_and_in_total_and_released_however_they_end(collector: Limited) -> None:
    with ExitStack() as stack:
        held = [stream_from(stack, collector, "alpha", f"lim-a{i}", "arith@slow") for i in range(2)]
        third = stream_from(stack, collector, "alpha", "lim-a2", "arith@slow")
        held.append(stream_from(stack, collector, "beta", "lim-b0", "arith@slow"))
        over = stream_from(stack, collector, "gamma", "lim-c0", "arith@slow")
        assert [r.status_code for r in held] == [200, 200, 200]
        assert (third.status_code, third.headers["retry-after"]) == (429, "1")
        assert third.json()["error"] == {
            "message": "too many requests in flight: tenant 'alpha' has 2 completion requests in flight, the limit "
            "per client (max_streams_per_client); retry after 1 s",
            "type": "rate_limit_error", "param": None, "code": 429,
        }  # fmt: skip
        assert over.status_code == 429
        assert "3 completion requests are in flight, the collector's limit (max_streams)" in over.text
        assert not collector.forwarded("lim-a2") and not collector.forwarded("lim-c0")
        assert collector.serves()  # other routes are not counted
    # every client hung up mid-stream; then answers of every kind end their requests: upstream 5xx, a pool
    # that cannot be reached, a whole answer, a broken stream
    for n, model in enumerate(["arith@err500", "arith@down", "arith@ok", "arith@garbage"] * 2):
        with ExitStack() as stack:
            assert stream_from(stack, collector, "alpha", f"lim-end{n}", model).status_code in (200, 502)
    # the counts are exactly back: alpha may hold 2 again, not 3 (the last hang-up may take a moment to be seen)
    codes: list[int] = []
    for attempt in range(20):
        with ExitStack() as stack:
            codes = [stream_from(stack, collector, "alpha", f"lim-again{attempt}-{i}", "arith@slow").status_code
                     for i in range(3)]  # fmt: skip
        if codes[:2] == [200, 200]:
            break
        time.sleep(0.25)
    assert codes == [200, 200, 429]
    assert collector.rows("lim-a2") == [] and collector.rows("lim-c0") == []  # the refused leave no row


def test_500_slow_clients_holding_connections_do_not_stop_real_requests(tmp_path: Path) -> None:
    """The connection flood of bench/connection_flood.py (its TTFT ratio is in BENCHMARKS.md): 500 clients each
    holding a connection with a request head that trickles in, cut at 10 s and back at once; meanwhile real
    streamed requests are all answered whole and recorded, and the collector serves after."""
    with FaultyUpstream() as upstream:
        state = start_collector(tmp_path, upstream)  # the default limits
        port = int(state.url.rsplit(":", 1)[1])
        flood = subprocess.Popen(
            ["nice", "-n", "19", sys.executable, "-c", FLOOD, str(port), "500"], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert flood.stdout is not None
            ready, _, _ = select.select([flood.stdout], [], [], 120)
            assert ready and flood.stdout.readline().strip() == "ready", "the 500 slow clients did not connect"
            connected = time.monotonic()
            body = {"model": "arith@ok", "prompt": "1+1=", "max_tokens": 3, "stream": True}
            for i in range(20):
                reply = httpx.post(f"{state.url}/v1/completions", json=body, headers={"x-request-id": f"flood-{i}"},
                                   timeout=30)  # fmt: skip
                assert reply.status_code == 200 and reply.text.rstrip().endswith("data: [DONE]"), reply.text
            flush_collector(state.url)
            with open_reader(state.store) as store:
                rows = store.query("SELECT status, count(*) AS n FROM requests WHERE id LIKE 'flood-%' GROUP BY 1")
            assert rows.to_pylist() == [{"status": "ok", "n": 20}]
            assert httpx.get(f"{state.url}/healthz", timeout=10).status_code == 200
            time.sleep(max(0.0, connected + 12.0 - time.monotonic()))  # each slow client is cut once (10 s)
        finally:
            flood.send_signal(signal.SIGINT)
            out, _ = flood.communicate(timeout=60)
            daemon.down(tmp_path / "collector.json")
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["connects"] >= 1000 and stats["answered_408"] >= 500 and stats["connect_errors"] == 0, stats
