"""One request through the gateway, from the moment it is routed to its record: the Exchange in flight, how it
ended (Outcome), and the Recorder that writes it down once, as one `requests` row (collector/store/rows.py) in
the store, in the Prometheus metrics and as an OpenTelemetry span, with its share of the pool's cost.

Whatever the pool sent, `finish` records the request once and never raises: the in-flight gauge and the pool's
cost meter are settled first, and a row that cannot be built from what was observed is still written, with
the outcome and the reason."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from collector.export.metrics import GatewayMetrics, PoolLabels
from collector.export.tracing import RequestSpan, RequestTracing
from collector.fleet.cost import BusyCostMeter
from collector.gateway.answers import EngineTimings, Usage
from collector.gateway.relay import StreamObservation
from collector.gateway.routes import Route
from collector.gateway.timing import choices_timing, stream_timing
from collector.store.protocols import RowSink
from collector.store.rows import RequestRecord
from collector.vocabulary import ITEM_HEADER, REQUEST_ID_HEADER, RUN_HEADER, ErrorType, Operation, Status

log = logging.getLogger(__name__)

MAX_ITEM_ID = 256  # requests.item_id: a longer header value is cut (an item id is a short name)


@dataclass(frozen=True)
class Outcome:
    status: Status
    error: str | None = None
    error_type: ErrorType | None = None


@dataclass(frozen=True)
class Recorded:
    """What became of a request's row: its journal sequence number, or why it could not be written."""

    seq: int | None
    error: str | None = None


OK = Outcome(Status.ok)
CANCELLED_BEFORE_ANSWER = Outcome(Status.cancelled, "client went away before the pool answered", ErrorType.cancelled)


@dataclass
class Exchange:
    """One request in flight: what the row will need once it ends."""

    request_id: str
    operation: Operation
    source: str
    run_id: str | None
    started_at: datetime
    started_ns: int
    route: Route
    span: RequestSpan
    cost_token: float
    tenant: str | None = None  # the client's tenant, from its API key (scope["inferwatch.tenant"])
    item_id: str | None = None  # header ITEM_HEADER: which work item (like-for-like comparisons)
    seen: StreamObservation = field(default_factory=StreamObservation)
    # the time spent in gateway code for this request (perf_counter_ns), stored as requests.gateway_s: from the
    # request received to the pool's client called (reading, checking, routing, serialising the body), plus for
    # each read of the pool's answer the time from the read returning to its bytes handed to the client (a whole
    # answer: checked and noted). Not in it: the pool's time, the network, recording the row (journal, metrics,
    # span) and waiting for its fsync. None: the request never reached the point of calling the pool.
    gateway_ns: int | None = None
    recorded: Recorded | None = None  # set by Recorder.finish: a request is recorded once


def pool_labels(route: Route) -> PoolLabels:
    return PoolLabels(pool=route.pool, hardware=route.hardware, model=route.model_id, revision=route.revision)


class Recorder:
    """Opens an Exchange when a request has its route and records it when it ends: the row, the metrics, the span."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        sink: RowSink,
        metrics: GatewayMetrics,
        tracing: RequestTracing,
        durable: Callable[[int], Awaitable[None]] | None = None,  # waits for the journal's fsync policy
        strict: bool = False,  # fail-closed: a row that could not be written is not acknowledged
    ):
        self.sink = sink
        self.durable = durable
        self.strict = strict
        self.metrics = metrics
        self.tracing = tracing
        self.meters = {pool: BusyCostMeter(r.price_per_hour * r.replicas) for pool, r in routes.items()}

    def begin(
        self,
        operation: Operation,
        source: str,
        route: Route,
        headers: Mapping[str, str],
        started_at: datetime,
        started_ns: int,  # perf_counter_ns when the request arrived
        tenant: str | None = None,
    ) -> Exchange:
        span = self.tracing.start(operation, route.model_id, headers, start_time_ns=time.time_ns())
        exchange = Exchange(
            request_id=headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex, operation=operation, source=source,
            run_id=headers.get(RUN_HEADER), started_at=started_at, started_ns=started_ns, route=route, span=span,
            cost_token=self.meters[route.pool].start(started_ns / 1e9), tenant=tenant,
            item_id=(headers.get(ITEM_HEADER) or "")[:MAX_ITEM_ID] or None,
        )  # fmt: skip
        self.metrics.inc_in_flight(pool_labels(route))
        return exchange

    def finish(self, ex: Exchange, outcome: Outcome, ended_ns: int | None = None) -> Recorded:
        """Record the request: one row, the metrics, the span. Never raises into the response path; a second
        call for the same exchange returns what the first recorded."""
        if ex.recorded is not None:
            return ex.recorded
        ended_ns = ended_ns or time.perf_counter_ns()
        labels = pool_labels(ex.route)
        self.metrics.dec_in_flight(labels)
        cost_usd = self.meters[ex.route.pool].finish(ex.cost_token, ended_ns / 1e9)
        try:
            record = self._record(ex, outcome, ended_ns, cost_usd)
        except Exception as exc:  # an observation the relay's checks let through: the row still tells
            log.exception("request %s: row built without its timing and usage", ex.request_id)
            record = self._record(ex, Outcome(outcome.status, f"{outcome.error or ''} (gateway: {exc})".strip(),
                                              outcome.error_type), ended_ns, cost_usd, observed=False)  # fmt: skip
        try:
            recorded = Recorded(self.sink.append("requests", [{**record.as_row(), "tenant": ex.tenant}]))
        except Exception as exc:  # the journal cannot be written (disk full): the row is in the log
            log.exception("request %s: row not stored: %s", record.id, record)
            recorded = Recorded(None, f"{type(exc).__name__}: {exc}")
        ex.recorded = recorded
        try:
            self.metrics.observe(record, labels)
            ex.span.end(record)
        except Exception:
            log.exception("request %s: metrics or span not recorded", record.id)
        return recorded

    def _record(
        self, ex: Exchange, outcome: Outcome, ended_ns: int, cost_usd: float, observed: bool = True
    ) -> RequestRecord:
        route, seen = ex.route, ex.seen
        usage = (seen.usage if observed else None) or Usage()
        engine = (seen.engine if observed else None) or EngineTimings()
        completion = usage.completion_tokens
        if observed and len(seen.choice_ns) > 1:
            timing = choices_timing(ex.started_ns, seen.choice_ns.values(), ended_ns, completion or 0)
        else:
            timing = stream_timing(ex.started_ns, seen.content_ns if observed else [], ended_ns, completion or 0)
        return RequestRecord(
            id=ex.request_id, pool=route.pool, source=ex.source, started_at=ex.started_at, status=outcome.status,
            operation=ex.operation, trace_id=ex.span.trace_id, run_id=ex.run_id, revision=route.revision,
            hardware=route.hardware, model=route.model_id, ttft_s=timing.ttft_s, tpot_s=timing.tpot_s,
            itl_p50_s=timing.itl_p50_s, itl_max_s=timing.itl_max_s, e2e_s=timing.e2e_s,
            prompt_tokens=usage.prompt_tokens, cached_tokens=usage.cached_tokens, completion_tokens=completion,
            finish_reason=seen.finish_reason if observed else None,
            error=outcome.error, error_type=outcome.error_type, cost_usd=cost_usd, item_id=ex.item_id,
            engine_queue_s=engine.queue_s, engine_prefill_s=engine.prefill_s, engine_decode_s=engine.decode_s,
            engine_tpot_s=engine.tpot_s, token_events=len(seen.content_ns) if observed else None,
            chunk_arrivals=seen.arrivals if observed else None,
            gateway_s=ex.gateway_ns * 1e-9 if ex.gateway_ns is not None else None,
        )  # fmt: skip

    async def acknowledge(self, recorded: Recorded) -> str | None:
        """Before the answer's last byte: wait until the row is as durable as the fsync policy says. Returns why
        the answer must not be acknowledged (fail-closed and the row not written), else None."""
        if recorded.seq is None:
            return f"the gateway could not record this request ({recorded.error}); retry" if self.strict else None
        if self.durable is not None:
            try:
                await self.durable(recorded.seq)
            except Exception as exc:  # fsync failed: the row may not survive a power loss
                log.exception("request row %d: fsync failed", recorded.seq)
                return (
                    f"the gateway could not make this request's record durable ({exc}); retry" if self.strict else None
                )
        return None
