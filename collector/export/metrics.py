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

from collector.store.rows import Operation, RequestRecord, Source, Status

UNKNOWN = "unknown"

# ExplicitBucketBoundaries from the semconv, metric by metric
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1, 4, 16, ..., 67108864

POOL_LABELS = ("pool", "hardware", "model", "revision")
OPERATION_LABELS = (*POOL_LABELS, "gen_ai_operation_name")


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


class GatewayMetrics:
    """Every metric the gateway exports, in one registry (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "Time to generate first token for successful responses.",
            OPERATION_LABELS, buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self._tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token generated after the first token for successful responses.",
            OPERATION_LABELS, buckets=TPOT_BUCKETS, registry=r,
        )  # fmt: skip
        # error_type is the semconv's conditionally required error.type, from the closed Status enum ("" for
        # success), so that p95 of successful requests is not pulled down by requests that failed fast.
        self._duration = Histogram(
            "gen_ai_server_request_duration_seconds", "Generative AI server request duration (time to last token).",
            (*OPERATION_LABELS, "error_type"), buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self._tokens = Histogram(
            "gen_ai_client_token_usage", "Number of input and output tokens used.",
            (*OPERATION_LABELS, "gen_ai_token_type"), buckets=TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self._requests = Counter(
            "inferwatch_requests_total", "Finished requests.", (*POOL_LABELS, "status", "source"), registry=r
        )
        self._cost = Counter("inferwatch_cost_usd_total", "Cost attributed to requests, USD.", POOL_LABELS, registry=r)
        self._prompt_tokens = Counter(
            "inferwatch_prompt_tokens_total", "Prompt tokens of finished requests.", POOL_LABELS, registry=r
        )
        self._cached_tokens = Counter(
            "inferwatch_cached_prompt_tokens_total", "Prompt tokens served from the prefix cache.", POOL_LABELS,
            registry=r,
        )  # fmt: skip
        self._hit_ratio = Gauge(
            "inferwatch_cache_hit_ratio",
            'Prefix-cache hit ratio: source="requests" from the usage of requests seen so far (those that report '
            'cached tokens), source="server" from the server\'s prefix-cache counters.',
            (*POOL_LABELS, "source"), registry=r,
        )  # fmt: skip
        self._in_flight = Gauge("inferwatch_requests_in_flight", "Requests being served.", POOL_LABELS, registry=r)
        # the canary's latest verdicts (docs/CANARY.md); metric is one of a closed set of drift metrics
        self._drift_value = Gauge(
            "inferwatch_drift_value", "Value of a drift metric in the latest canary run against the reference.",
            (*POOL_LABELS, "metric"), registry=r,
        )  # fmt: skip
        self._drift_flagged = Gauge(
            "inferwatch_drift_flagged", "1 when the latest canary run found drift on the metric, else 0.",
            (*POOL_LABELS, "metric"), registry=r,
        )  # fmt: skip
        # the latest eval run per suite (docs/EVALS.md)
        self._eval_accuracy = Gauge(
            "inferwatch_eval_accuracy", "Accuracy of the pool on an eval suite in its latest run (0-1).",
            (*POOL_LABELS, "suite"), registry=r,
        )  # fmt: skip
        self._eval_delta = Gauge(
            "inferwatch_eval_accuracy_delta",
            "Accuracy minus the reference's on the items both scored, in the latest run of the suite.",
            (*POOL_LABELS, "suite"), registry=r,
        )  # fmt: skip
        self._eval_regressed = Gauge(
            "inferwatch_eval_regressed",
            "1 when the latest run of the suite found the pool significantly worse than the reference, else 0.",
            (*POOL_LABELS, "suite"), registry=r,
        )  # fmt: skip
        # the judge's latest verdict per candidate pool and baseline (docs/GATE.md)
        self._gate_score = Gauge(
            "inferwatch_gate_score", "Score (0-100) of the latest gate of this pool as candidate against the baseline.",
            (*POOL_LABELS, "baseline"), registry=r,
        )  # fmt: skip
        self._gate_exit = Gauge(
            "inferwatch_gate_exit_code",
            "Exit code of the latest gate of this pool against the baseline: 0 pass, 1 fail, 2 marginal or no data.",
            (*POOL_LABELS, "baseline"), registry=r,
        )  # fmt: skip
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
        if record.e2e_s is not None:
            self._child(self._duration, *op, "" if status is Status.ok else status.value).observe(record.e2e_s)
        if status is Status.ok and record.ttft_s is not None:
            self._child(self._ttft, *op).observe(record.ttft_s)
        if status is Status.ok and record.tpot_s is not None:
            self._child(self._tpot, *op).observe(record.tpot_s)
        if record.prompt_tokens is not None:
            self._child(self._tokens, *op, "input").observe(record.prompt_tokens)
            self._child(self._prompt_tokens, *pool).inc(record.prompt_tokens)
        if record.completion_tokens is not None:
            self._child(self._tokens, *op, "output").observe(record.completion_tokens)
        if record.cached_tokens is not None:
            self._child(self._cached_tokens, *pool).inc(record.cached_tokens)
        if record.cost_usd is not None:
            self._child(self._cost, *pool).inc(record.cost_usd)
        if record.prompt_tokens and record.cached_tokens is not None:
            self._add_cache_usage(pool, record.cached_tokens, record.prompt_tokens)

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

    def set_drift(self, labels: PoolLabels, metric: str, value: float | None, flagged: bool) -> None:
        """The latest canary verdict of one metric for one pool; a metric without data exports no value."""
        if value is not None:
            self._child(self._drift_value, *labels.values(), metric).set(value)
        self._child(self._drift_flagged, *labels.values(), metric).set(1.0 if flagged else 0.0)

    def set_eval(
        self, labels: PoolLabels, suite: str, accuracy: float | None, delta: float | None, regressed: bool
    ) -> None:
        """The latest eval summary of one suite for one pool; what a run could not measure is not exported."""
        if accuracy is not None:
            self._child(self._eval_accuracy, *labels.values(), suite).set(accuracy)
        if delta is not None:
            self._child(self._eval_delta, *labels.values(), suite).set(delta)
        self._child(self._eval_regressed, *labels.values(), suite).set(1.0 if regressed else 0.0)

    def set_gate(self, labels: PoolLabels, baseline: str, score: float | None, exit_code: int) -> None:
        if score is not None:
            self._child(self._gate_score, *labels.values(), baseline).set(score)
        self._child(self._gate_exit, *labels.values(), baseline).set(float(exit_code))

    def inc_in_flight(self, labels: PoolLabels) -> None:
        self._child(self._in_flight, *labels.values()).inc()

    def dec_in_flight(self, labels: PoolLabels) -> None:
        self._child(self._in_flight, *labels.values()).dec()

    def exposition(self) -> tuple[bytes, str]:
        """The /metrics body and its Content-Type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
