"""Prometheus metrics of the gateway: OpenTelemetry GenAI histograms plus inferwatch_* counters and gauges.

Histogram names and bucket boundaries are those of the OpenTelemetry GenAI metrics semantic conventions
(semantic-conventions-genai, docs/gen-ai/gen-ai-metrics.md), written the Prometheus way (dots become
underscores, the unit `s` becomes a `_seconds` suffix).

Labels are a bounded set: pool, hardware, model, revision, the operation, and closed enums (status, source,
token type). Request ids and error messages never become labels; they belong in the store and in spans.
A label value that is not known (None or "") is exported as "unknown", so that every series carries every
label and a missing value is visible on a dashboard instead of silently merging with the absent label.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from collector.fleet.slo import Slo
from collector.store.rows import RequestRecord
from collector.vocabulary import Operation, Source, Status

UNKNOWN = "unknown"

# ExplicitBucketBoundaries from the semconv, metric by metric
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ..., 67108864

POOL_LABELS = ("pool", "hardware", "model", "revision")
OPERATION_LABELS = (*POOL_LABELS, "gen_ai_operation_name")


@dataclass(frozen=True)
class Spec:
    """A metric family as Prometheus shows it: name, help text, label names."""

    name: str
    documentation: str
    labels: tuple[str, ...]

    def histogram(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> Histogram:
        return Histogram(self.name, self.documentation, self.labels, buckets=buckets, registry=registry)

    def counter(self, registry: CollectorRegistry) -> Counter:
        return Counter(self.name, self.documentation, self.labels, registry=registry)

    def gauge(self, registry: CollectorRegistry) -> Gauge:
        return Gauge(self.name, self.documentation, self.labels, registry=registry)


# What the gateway observes itself, request by request. The store's verdicts (drift, evals, gates) are read at
# scrape time by collector/export/store_state.py.
TTFT = Spec(
    "gen_ai_server_time_to_first_token_seconds", "Time to generate first token for successful responses.",
    OPERATION_LABELS,
)  # fmt: skip
TPOT = Spec(
    "gen_ai_server_time_per_output_token_seconds",
    "Time per output token generated after the first token for successful responses.", OPERATION_LABELS,
)  # fmt: skip
# error_type is the semconv's conditionally required error.type, from the closed Status enum ("" for success),
# so that p95 of successful requests is not pulled down by requests that failed fast.
DURATION = Spec(
    "gen_ai_server_request_duration_seconds", "Generative AI server request duration (time to last token).",
    (*OPERATION_LABELS, "error_type"),
)  # fmt: skip
TOKENS = Spec(
    "gen_ai_client_token_usage", "Number of input and output tokens used.", (*OPERATION_LABELS, "gen_ai_token_type")
)
REQUESTS = Spec("inferwatch_requests_total", "Finished requests.", (*POOL_LABELS, "status", "source"))
GOOD = Spec(
    "inferwatch_requests_good_total",
    "Finished requests within the goodput SLO (data/slo.yaml: ok, TTFT, TPOT and e2e within their bounds; TPOT "
    "the engine's where the stream arrived coalesced). Goodput = this / inferwatch_requests_total without the "
    "cancelled.",
    (*POOL_LABELS, "source"),
)  # fmt: skip
# the engine's own split of a request's time (vLLM per-request metrics on the final chunk), where the pool sends it
ENGINE_QUEUE = Spec("inferwatch_engine_queue_seconds", "Time a request waited in the engine's scheduler.", POOL_LABELS)
ENGINE_PREFILL = Spec(
    "inferwatch_engine_prefill_seconds", "Engine time from first scheduled to first token (prefill).", POOL_LABELS
)
ENGINE_TPOT = Spec(
    "inferwatch_engine_time_per_output_token_seconds",
    "The engine's mean time per output token after the first (vLLM mean_itl_ms), for successful responses.",
    POOL_LABELS,
)  # fmt: skip
COST = Spec("inferwatch_cost_usd_total", "Cost attributed to requests, USD.", POOL_LABELS)
PROMPT_TOKENS = Spec("inferwatch_prompt_tokens_total", "Prompt tokens of finished requests.", POOL_LABELS)
CACHED_TOKENS = Spec(
    "inferwatch_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache.", POOL_LABELS
)
HIT_RATIO = Spec(
    "inferwatch_cache_hit_ratio",
    'Prefix-cache hit ratio: source="requests" from the usage of requests seen so far (those that report '
    'cached tokens), source="server" from the server\'s prefix-cache counters.',
    (*POOL_LABELS, "source"),
)  # fmt: skip
IN_FLIGHT = Spec("inferwatch_requests_in_flight", "Requests being served.", POOL_LABELS)


@dataclass(frozen=True)
class PoolLabels:
    pool: str
    hardware: str | None
    model: str | None
    revision: str | None

    @classmethod
    def of(cls, record: RequestRecord) -> PoolLabels:
        return cls(record.pool, record.hardware, record.model, record.revision)

    def values(self) -> tuple[str, str, str, str]:
        """Label values in POOL_LABELS order, unknown ones as "unknown"."""
        return (self.pool or UNKNOWN, self.hardware or UNKNOWN, self.model or UNKNOWN, self.revision or UNKNOWN)


def _judged_tpot(record: RequestRecord) -> float | None:
    """The TPOT a request is judged on: the engine's where its stream arrived coalesced (fewer reads than token
    events) and the engine sent it, else the client's (collector/fleet/figures.py judges per pool alike)."""
    coalesced = record.token_events is not None and record.chunk_arrivals is not None and (
        record.chunk_arrivals < record.token_events)  # fmt: skip
    return record.engine_tpot_s if coalesced and record.engine_tpot_s is not None else record.tpot_s


def _amount(value: float | None) -> float | None:
    """A count or cost a counter may add: finite and >= 0 (a counter raises on a negative increment, and a NaN
    or an infinity would stay in it until restart). The gateway checks the pool's counts before they get here;
    this keeps the exposition right whatever a caller passes."""
    if value is None or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        return None
    return value


class GatewayMetrics:
    """Every metric the gateway observes, in one registry (a fresh one unless given). Collectors of other
    state (collector/export/store_state.py) register on the same `registry`, so that one exposition holds all."""

    def __init__(self, registry: CollectorRegistry | None = None, slo: Slo | None = None) -> None:
        """`slo`: what inferwatch_requests_good_total counts (none: the counter stays at 0)."""
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.slo = slo
        self._good = GOOD.counter(r)
        self._engine_queue = ENGINE_QUEUE.histogram(r, TTFT_BUCKETS)
        self._engine_prefill = ENGINE_PREFILL.histogram(r, TTFT_BUCKETS)
        self._engine_tpot = ENGINE_TPOT.histogram(r, TPOT_BUCKETS)
        self._ttft = TTFT.histogram(r, TTFT_BUCKETS)
        self._tpot = TPOT.histogram(r, TPOT_BUCKETS)
        self._duration = DURATION.histogram(r, DURATION_BUCKETS)
        self._tokens = TOKENS.histogram(r, TOKEN_BUCKETS)
        self._requests = REQUESTS.counter(r)
        self._cost = COST.counter(r)
        self._prompt_tokens = PROMPT_TOKENS.counter(r)
        self._cached_tokens = CACHED_TOKENS.counter(r)
        self._hit_ratio = HIT_RATIO.gauge(r)
        self._in_flight = IN_FLIGHT.gauge(r)
        self._lock = threading.Lock()
        self._cache_totals: dict[tuple[str, ...], tuple[int, int]] = {}  # labels -> (cached, prompt) tokens
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """metric.labels(*values), looked up once: labels() checks and copies its arguments on every call,
        which is a tenth of the gateway's time per request. Label sets are bounded, and so is this cache."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe(self, record: RequestRecord, labels: PoolLabels) -> None:
        """Record one finished request. Latency histograms take successful requests only (as the semconv
        defines them); the duration histogram takes every request, labelled by error_type."""
        status, source = Status(record.status), Source(record.source)  # closed sets: bounded cardinality
        pool = labels.values()
        op = (*pool, Operation(record.operation).value if record.operation else UNKNOWN)
        self._child(self._requests, *pool, status.value, source.value).inc()
        good = self._child(self._good, *pool, source.value)  # every pool and source has its series from 0
        ok = status is Status.ok
        if self.slo is not None and self.slo.met(ok, record.ttft_s, _judged_tpot(record), record.e2e_s):
            good.inc()
        if ok:
            for histogram, value in ((self._engine_queue, record.engine_queue_s),
                                     (self._engine_prefill, record.engine_prefill_s),
                                     (self._engine_tpot, record.engine_tpot_s)):  # fmt: skip
                if value is not None and math.isfinite(value) and value >= 0:
                    self._child(histogram, *pool).observe(value)
        if record.e2e_s is not None:
            self._child(self._duration, *op, "" if status is Status.ok else status.value).observe(record.e2e_s)
        if status is Status.ok and record.ttft_s is not None:
            self._child(self._ttft, *op).observe(record.ttft_s)
        if status is Status.ok and record.tpot_s is not None:
            self._child(self._tpot, *op).observe(record.tpot_s)
        prompt, cached, completion = (
            _amount(record.prompt_tokens),
            _amount(record.cached_tokens),
            _amount(record.completion_tokens),
        )
        if prompt is not None:
            self._child(self._tokens, *op, "input").observe(prompt)
            self._child(self._prompt_tokens, *pool).inc(prompt)
        if completion is not None:
            self._child(self._tokens, *op, "output").observe(completion)
        if cached is not None:
            self._child(self._cached_tokens, *pool).inc(cached)
        if (cost := _amount(record.cost_usd)) is not None:
            self._child(self._cost, *pool).inc(cost)
        if prompt and cached is not None and cached <= prompt:
            self._add_cache_usage(pool, int(cached), int(prompt))

    def _add_cache_usage(self, pool: tuple[str, ...], cached: int, prompt: int) -> None:
        with self._lock:
            total_cached, total_prompt = self._cache_totals.get(pool, (0, 0))
            total_cached, total_prompt = total_cached + cached, total_prompt + prompt
            self._cache_totals[pool] = (total_cached, total_prompt)
            self._child(self._hit_ratio, *pool, "requests").set(total_cached / total_prompt)

    def set_server_cache_hit_ratio(self, labels: PoolLabels, ratio: float) -> None:
        """The hit ratio the server reports (from vllm prefix-cache hits / queries), set by the scraper."""
        if math.isnan(ratio) or not 0.0 <= ratio <= 1.0:
            raise ValueError(f"cache hit ratio must be within [0, 1], got {ratio}")
        self._child(self._hit_ratio, *labels.values(), "server").set(ratio)

    def inc_in_flight(self, labels: PoolLabels) -> None:
        self._child(self._in_flight, *labels.values()).inc()

    def dec_in_flight(self, labels: PoolLabels) -> None:
        self._child(self._in_flight, *labels.values()).dec()

    def exposition(self) -> tuple[bytes, str]:
        """The /metrics body and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
