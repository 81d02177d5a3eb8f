"""The collector process: gateway, journal and committer (collector/ingest.py), scraper and /metrics in one
asyncio HTTP server. Any number of them may run (`inferwatch collector up --replicas N`, or one per node), each
with its own port and journal, all writing one store.

Run by `inferwatch collector up` (collector/daemon.py) as `python -m collector.service CONFIG_JSON`.
On SIGTERM or SIGINT uvicorn stops accepting requests and lets those in flight finish (up to
`graceful_s`; streams still open then are cut and recorded as cancelled); then the scraper stops and the
committer moves what is journaled into the store before the process exits (what it cannot, replays at the
next start).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import ASGIApp

from collector.alerts.job import AlertJob, alert_lease
from collector.alerts.rules import load_alert_config
from collector.auth import Auth, collector_auth
from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.export.store_state import StoreState
from collector.export.tracing import RequestTracing, tracer_provider_from_env
from collector.fleet.report import pools_rows
from collector.fleet.slo import DEFAULT_SLO_PATH, load_slo
from collector.gateway.http_limits import uvicorn_options
from collector.gateway.limits import Limits, fit_open_files, limited
from collector.gateway.proxy import Gateway, GatewayConfig
from collector.gateway.routes import Router, Split, routes_from
from collector.gateway.splits import split_routes
from collector.health import Faults, health_response
from collector.ingest import Ingest, IngestConfig
from collector.scraper import Scraper, targets_from_engine
from collector.store.api import Store
from engine.specs import PoolSpec, load_pools
from engine.state import EngineState

log = logging.getLogger("inferwatch.collector")


@dataclass(frozen=True)
class CollectorConfig:
    store_url: str
    engine_state: str
    prices: str
    host: str = "127.0.0.1"
    port: int = 8090
    splits: tuple[str, ...] = ()
    scrape_interval_s: float = 5.0
    max_body_bytes: int = 1 << 20
    graceful_s: float = 30.0
    journal_dir: str = "var/journal/gw-8090"
    fsync: str = "none"  # none | group:<ms> | always
    high_water_rows: int = 500_000
    overflow: str = "fail-open"  # fail-open | fail-closed
    commit_interval_s: float = 1.0
    alert_rules: str | None = None  # an alert rules file (data/alerts.yaml): evaluate it here and deliver
    alert_interval_s: float = 15.0
    upstream_read_timeout_s: float = 600.0  # longest a pool may go without a data event (keep-alives do not count)
    max_answer_bytes: int = 64 << 20  # a whole (non-stream) answer from a pool
    # authentication (collector/auth.py): the tokens themselves come from the environment, never from here
    api_keys: str | None = None  # a client API keys file (sha256 of each key -> tenant); None: /v1 is open
    allowed_hosts: tuple[str, ...] = ()  # Host names besides loopback and the bind address (DNS rebinding)
    metrics_public: bool = False  # /metrics without the read token when tokens are set
    insecure_bind: bool = False  # listen beyond loopback without an admin token (warned at every start)
    # limits on every connection (collector/gateway/limits.py; max_body_bytes above applies to every route)
    max_header_bytes: int = 64 * 1024  # request line and headers together (431)
    max_headers: int = 100  # (431)
    receive_timeout_s: float = 10.0  # to receive a request's head and body, from its first byte (408)
    keep_alive_s: int = 5  # an idle keep-alive connection is closed after this long
    max_connections: int = 4096  # open client connections (503 at the connect)
    max_streams: int = 1024  # completion requests in flight, all clients together (429)
    max_streams_per_client: int = 256  # per API key tenant, else per peer address (429)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def writer_id(self) -> str:
        """This gateway's name in the store's journal markers: one per journal."""
        return Path(self.journal_dir).name

    def ingest(self) -> IngestConfig:
        return IngestConfig(self.journal_dir, self.fsync, self.high_water_rows, self.overflow, self.commit_interval_s)

    def auth(self, app: ASGIApp) -> Auth:
        """`app` behind collector/auth.py (tokens from the environment); AuthConfigError or ExposedBind if refused."""
        return collector_auth(app, bind=self.host, api_keys=self.api_keys, allowed_hosts=self.allowed_hosts,
                              metrics_public=self.metrics_public, insecure_bind=self.insecure_bind)  # fmt: skip

    def limits(self) -> Limits:
        names = ("max_header_bytes", "max_headers", "max_body_bytes", "receive_timeout_s", "keep_alive_s",
                 "max_connections", "max_streams", "max_streams_per_client")  # fmt: skip
        return Limits(**{name: getattr(self, name) for name in names})

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CollectorConfig:
        raw = json.loads(text)
        raw["splits"] = tuple(raw.get("splits", ()))
        raw["allowed_hosts"] = tuple(raw.get("allowed_hosts", ()))
        return cls(**raw)


def load_fleet(config: CollectorConfig) -> tuple[Router, list[PoolSpec]]:
    """The pools the engine runs with the configured splits (ValueError if they do not fit), and their specs."""
    state = EngineState.load(Path(config.engine_state))
    pools = load_pools(Path(state.spec), Path(config.prices))
    router = Router(routes_from(pools, state), [Split.parse(s) for s in config.splits])
    return router, [pools.get(name) for name in router.routes]


def alert_job(config: CollectorConfig, store: Store, holder: str) -> AlertJob | None:
    """The alert evaluator and deliverer, when the config names a rules file (AlertConfigError if it is bad); it
    works while this gateway (`holder`) holds the store's alert lease."""
    if config.alert_rules is None:
        return None
    rules = load_alert_config(Path(config.alert_rules))
    lease = alert_lease(store, holder, config.alert_interval_s)
    return AlertJob(
        store,
        rules,
        interval_s=config.alert_interval_s,
        external_url=config.url,
        lease=lease,
        grace_s=min(5.0, config.graceful_s),
    )


def labels_of(gateway: Gateway) -> Callable[[str], PoolLabels | None]:
    """A pool's labels as the gateway exports them; None for a pool it does not route."""

    def of(pool: str) -> PoolLabels | None:
        route = gateway.router.routes.get(pool)
        return gateway.labels(route) if route is not None else None

    return of


def metrics_endpoint(metrics: GatewayMetrics, gateway: Gateway, scraper: Scraper) -> HttpRoute:
    """GET /metrics: the gateway's metrics, the servers' hit ratios and the store's state (StoreState) as of now."""
    routes = gateway.router.routes

    async def endpoint(request: Request) -> Response:
        for pool, ratio in scraper.hit_ratios().items():
            if pool in routes:
                metrics.set_server_cache_hit_ratio(gateway.labels(routes[pool]), ratio)
        # in a worker thread: collecting queries the store
        body, content_type = await anyio.to_thread.run_sync(metrics.exposition)
        return Response(body, media_type=content_type)

    return HttpRoute("/metrics", endpoint, methods=["GET"])


def admin_flush(ingest: Ingest) -> HttpRoute:
    """POST /admin/flush: commit what this gateway has journaled now (readers then see every answered request)."""

    async def endpoint(request: Request) -> Response:
        before = ingest.committer.state.committed_rows
        try:
            await anyio.to_thread.run_sync(ingest.committer.flush, 60.0)
        except Exception as exc:
            return JSONResponse({"error": f"commit failed: {exc}", **ingest.health()}, 503)
        return JSONResponse({"committed": ingest.committer.state.committed_rows - before, **ingest.health()})

    return HttpRoute("/admin/flush", endpoint, methods=["POST"])


def build_app(config: CollectorConfig) -> Auth:
    """Everything the collector serves, wired. Opens the store: call it in the process that serves."""
    router, specs = load_fleet(config)
    targets = targets_from_engine(EngineState.load(Path(config.engine_state)))
    metrics = GatewayMetrics(slo=load_slo(DEFAULT_SLO_PATH))
    tracing = RequestTracing(tracer_provider_from_env())
    store = Store(config.store_url)
    faults = Faults()  # every loop reports here; /healthz lists them (collector/health.py)
    ingest = Ingest(store, config.ingest(), config.writer_id, faults=faults)
    gateway = Gateway(
        router, ingest, metrics, tracing,
        GatewayConfig(max_body_bytes=config.max_body_bytes, read_timeout_s=config.upstream_read_timeout_s,
                      max_answer_bytes=config.max_answer_bytes),
        durable=ingest.durable, admission=ingest.refusal, strict=ingest.fail_closed,
    )  # fmt: skip
    StoreState(store, labels_of(gateway), registry=metrics.registry, faults=faults)
    scraper = Scraper(targets, ingest, interval_s=config.scrape_interval_s, faults=faults)
    alerting = alert_job(config, store, ingest.writer_id)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ingest.start()  # replays what an earlier run left in the journal
        ingest.append("pools", pools_rows(specs, datetime.now(UTC)))  # what the rows of this run cost
        await gateway.start()
        stop = asyncio.Event()
        scraping = asyncio.create_task(scraper.run(stop))
        alerts = asyncio.create_task(alerting.run(stop)) if alerting else None
        if alerts is not None:
            faults.watch("alerts", alerts)  # the alert job dying is a fault of /healthz
        log.info("collector ready: %d pools, store %s, journal %s", len(router.routes), store.url, config.journal_dir)
        try:
            yield
        finally:
            stop.set()
            await scraping
            if alerts:
                with contextlib.suppress(Exception):  # a dead alert job is a fault /healthz reported already
                    await alerts  # its last attempts are recorded before the store closes
            await scraper.aclose()
            await gateway.close()
            await ingest.close(timeout_s=config.graceful_s)
            store.close()
            tracing.shutdown()
            log.info("collector stopped; journal committed")

    async def healthz(request: Request) -> Response:
        return health_response(faults, {
            "store": str(store.url), "schema_version": store.version, **ingest.health(),
            "pools": sorted(router.routes), "splits": [str(s) for s in router.splits.values()],
            "alerts": None if alerting is None else {"rules": config.alert_rules, "evaluating": alerting.holds},
        })  # fmt: skip

    routes = [
        *gateway.http_routes(),
        *split_routes(router),
        admin_flush(ingest),
        metrics_endpoint(metrics, gateway, scraper),
        HttpRoute("/healthz", healthz, methods=["GET"]),
    ]
    return config.auth(limited(Starlette(routes=routes, lifespan=lifespan), config.limits()))


def serve(config: CollectorConfig) -> None:
    import uvicorn

    app = build_app(config)
    limits = fit_open_files(config.limits())  # raises the soft limit on open files to what the limits need
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, loop="uvloop", lifespan="on", log_level="warning",
            access_log=False, timeout_graceful_shutdown=round(config.graceful_s), **uvicorn_options(limits),
        )
    )  # fmt: skip
    asyncio.run(server.serve())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m collector.service CONFIG_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per scrape otherwise
    serve(CollectorConfig.from_json(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
