"""A webhook receiver on loopback that records what it is sent: for the demo (where a real on-call tool would
be) and for the delivery tests, where a script makes it answer 500 a few times, 400, 429 with Retry-After,
slowly, or with a body that trickles in a byte at a time (a receiver a per-read timeout never ends). It runs
uvicorn in a thread; stop it and start another on the same port to play an outage.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from collector.alerts.signing import SignatureError, verify


class ReceiverError(RuntimeError):
    """The webhook receiver did not start (its port is taken, say)."""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering (longer than the sender's timeout: a timeout)
    body: bytes = b""
    trickle_s: float = 0.0  # > 0: send the body one byte at a time, this long apart, after the status line


Script = Callable[[int], Reply]  # the reply to the n-th request (0-based) this receiver gets


@dataclass(frozen=True)
class Received:
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int  # what it was answered

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, script: Script | None = None, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.script: Script = script or (lambda n: Reply())
        self.host = host
        self.port = port  # 0: any free port, known after start()
        self.received: list[Received] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        reply = self.script(len(self.received))
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.received.append(Received(headers, body, time.monotonic(), reply.status))
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.trickle_s > 0:
            return StreamingResponse(_trickle(reply.body, reply.trickle_s), reply.status, headers=dict(reply.headers))
        return Response(reply.body, reply.status, headers=dict(reply.headers))

    def start(self, timeout_s: float = 10.0) -> WebhookReceiver:
        app = Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST"])])
        config = uvicorn.Config(app, host=self.host, port=self.port, log_level="warning", access_log=False,
                                lifespan="off", loop="asyncio", timeout_graceful_shutdown=1)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"webhook-receiver-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ReceiverError(f"the webhook receiver did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = self._thread = None

    def delivered(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _trickle(body: bytes, every_s: float) -> AsyncIterator[bytes]:
    for i in range(len(body)):
        await asyncio.sleep(every_s)
        yield body[i : i + 1]


def received_rows(received: Sequence[Received], key: bytes | None = None) -> list[dict[str, object]]:
    """For print_table: each notification that arrived, and whether its signature verifies with `key`."""
    rows = []
    for r in received:
        body = r.json()
        alerts = body.get("alerts")
        signature = "-"
        if key is not None:
            try:
                verify(key, r.headers, r.body, now_s=time.time())
                signature = "ok"
            except SignatureError as exc:
                signature = f"BAD: {exc}"
        rows.append({
            "webhook-id": r.headers.get("webhook-id", ""), "answered": r.status,
            "status": body.get("status", "(text)"), "alerts": len(alerts) if isinstance(alerts, list) else "-",
            "group": body.get("groupKey", body.get("text", "")[:60]), "signature": signature,
        })  # fmt: skip
    return rows
