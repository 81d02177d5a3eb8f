"""The gateway alone, served by a real uvicorn (httptools, uvloop) on a free loopback port in a thread, in front
of the scripted upstream (tests/collector/faulty_upstream.py), writing its rows into a real DuckDB store: so that
a test can set any GatewayConfig and read the gateway's own metrics registry and cost meters.

A test stands in for the authentication layer with the header X-Test-Tenant: its value goes into the ASGI scope
as the tenant (TENANT_SCOPE_KEY), as the real middleware puts the tenant of the client's API key there.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.export.metrics import GatewayMetrics
from collector.export.tracing import RequestTracing
from collector.gateway.proxy import TENANT_SCOPE_KEY, Gateway, GatewayConfig
from collector.gateway.routes import Route, Router
from collector.store.api import Store
from tests.collector.faulty_upstream import FaultyUpstream
from tests.conftest import free_port

PRICE_PER_HOUR = 3.6  # USD: 0.001 USD per busy second, so that a request's cost is its busy time / 1000
RATE_USD_PER_S = PRICE_PER_HOUR / 3600
SERVED_POOLS = ("ok", "shapes", "pings", "choices", "slow", "garbage")
TENANT_HEADER = b"x-test-tenant"


def with_tenant_header(app: ASGIApp) -> ASGIApp:
    """Stands in for the authentication middleware: the X-Test-Tenant header becomes the scope's tenant."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            tenant = dict(scope["headers"]).get(TENANT_HEADER)
            scope = {**scope, TENANT_SCOPE_KEY: tenant.decode() if tenant is not None else None}
        await app(scope, receive, send)

    return wrapped


@dataclass
class ServedGateway:
    url: str
    gateway: Gateway
    metrics: GatewayMetrics
    store: Store

    def rows(self, request_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.store.query("SELECT * FROM requests WHERE id = ?", [request_id]).to_pylist()
        return rows

    def row(self, request_id: str, wait_s: float = 10.0) -> dict[str, Any]:
        """The request's one row; waits for it (a cancelled request is recorded when the gateway sees it go)."""
        deadline = time.monotonic() + wait_s
        while not (rows := self.rows(request_id)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(rows) == 1, f"expected one row for {request_id}, got {rows}"
        return rows[0]

    def in_flight(self, pool: str) -> float:
        """inferwatch_requests_in_flight of the pool (0 when the pool has had no request)."""
        labels = {"pool": pool, "hardware": "cpu", "model": f"arith@{pool}", "revision": f"rev-{pool}"}
        value = self.metrics.registry.get_sample_value("inferwatch_requests_in_flight", labels)
        return value or 0.0

    def cost_total(self, pool: str) -> float:
        labels = {"pool": pool, "hardware": "cpu", "model": f"arith@{pool}", "revision": f"rev-{pool}"}
        return self.metrics.registry.get_sample_value("inferwatch_cost_usd_total", labels) or 0.0


def routes(upstream: FaultyUpstream, pools: tuple[str, ...] = SERVED_POOLS) -> list[Route]:
    return [
        Route(pool=p, model_id=f"arith@{p}", upstream=f"{upstream.url}/{p}/v1", revision=f"rev-{p}", hardware="cpu",
              accelerator="cpu", price_per_hour=PRICE_PER_HOUR, replicas=1)
        for p in pools
    ]  # fmt: skip


@contextlib.contextmanager
def serve_gateway(upstream: FaultyUpstream, home: Path, config: GatewayConfig | None = None) -> Iterator[ServedGateway]:
    store = Store(str(home / "store.duckdb"))
    metrics = GatewayMetrics()
    gateway = Gateway(Router(routes(upstream)), store, metrics, RequestTracing(TracerProvider()), config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.close()

    app = with_tenant_header(Starlette(routes=gateway.http_routes(), lifespan=lifespan))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the served gateway did not start"
    try:
        yield ServedGateway(f"http://127.0.0.1:{port}", gateway, metrics, store)
    finally:
        server.should_exit = True
        thread.join(30)
        store.close()
