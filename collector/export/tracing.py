"""OpenTelemetry spans per request: one span "{operation} {model}" with gen_ai.* attributes, continuing the
caller's W3C trace and handing it on to the model server.

Configuration is the standard OTEL_* environment (tracer_provider_from_env). With nothing set, spans are made
(real trace ids for the store and for log correlation) but exported nowhere: exporting to a default
localhost:4318 that does not exist would log errors forever. Exporting starts as soon as
OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set.

Nothing here touches OpenTelemetry's global state (tracer provider, propagators): the gateway owns its
provider and passes it in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, StatusCode, format_span_id, format_trace_id, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from collector.store.rows import RequestRecord
from collector.vocabulary import Status

DEFAULT_SERVICE_NAME = "inferwatch-gateway"
EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOLS = ("http/protobuf", "grpc")  # the Python exporters have no http/json
PROVIDER_NAME = "vllm"
MAX_ERROR_TYPE_CHARS = 128  # error.type should be a short class ("upstream_503", "timeout"): cap what we get
MAX_DESCRIPTION_CHARS = 1024

# Only W3C TraceContext, whatever OTEL_PROPAGATORS says: that is what the callers and vLLM speak.
_PROPAGATOR = TraceContextTextMapPropagator()


def tracer_provider_from_env(environ: Mapping[str, str] | None = None) -> TracerProvider:
    """A TracerProvider configured from OTEL_* variables (default: os.environ).

    `environ` decides the service name and which exporters run (OTEL_SERVICE_NAME, OTEL_TRACES_EXPORTER,
    OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL, whether an OTLP endpoint is set). The SDK itself reads
    OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER[_ARG] and the exporters' endpoint, header, timeout and
    certificate variables from the process environment.
    """
    env = os.environ if environ is None else environ
    provider = TracerProvider(resource=_resource(env))
    for exporter in span_exporters_from_env(env):
        # console is for debugging: print each span as it ends; everything else is batched off the hot path
        is_console = isinstance(exporter, ConsoleSpanExporter)
        provider.add_span_processor(SimpleSpanProcessor(exporter) if is_console else BatchSpanProcessor(exporter))
    return provider


def span_exporters_from_env(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (comma list of otlp, console, none); see the module doc."""
    env = os.environ if environ is None else environ
    return [_exporter(name, env) for name in _exporter_names(env)]


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not raw:
        endpoint_set = any(env.get(v) for v in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"))
        return ["otlp"] if endpoint_set else []
    names = list(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={raw!r}: unknown exporter {', '.join(unknown)}; "
            f"allowed: a comma-separated list of {', '.join(EXPORTERS)}"
        )
    if "none" in names and len(names) > 1:
        raise ValueError(f"OTEL_TRACES_EXPORTER={raw!r}: 'none' cannot be combined with other exporters")
    return [n for n in names if n != "none"]


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stdout)  # the default binds the sys.stdout of import time
    variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    if not env.get(variable, "").strip():
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
    protocol = env.get(variable, "").strip() or "http/protobuf"
    # imported here: the exporters (grpc above all) are heavy and only needed when exporting
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    raise ValueError(f"{variable}={protocol!r} is not supported; allowed: {', '.join(OTLP_PROTOCOLS)}")


def _resource(env: Mapping[str, str]) -> Resource:
    resource = Resource.create()  # the SDK's detectors: OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    if service_name := env.get("OTEL_SERVICE_NAME", "").strip():
        return resource.merge(Resource({SERVICE_NAME: service_name}))
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):  # the SDK's fallback
        return resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class RequestTracing:
    """Starts request spans on the given provider (never the global one); shutdown() flushes it at exit."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("inferwatch.collector.gateway")

    def start(
        self,
        operation: str,
        model: str,
        incoming_headers: Mapping[str, str],
        start_time_ns: int | None = None,
        *,
        server_address: str | None = None,
        server_port: int | None = None,
    ) -> RequestSpan:
        """A span that continues the caller's trace (W3C traceparent/tracestate in incoming_headers, any case).

        start_time_ns is wall-clock epoch nanoseconds (time.time_ns()), not perf_counter_ns; default now.
        """
        carrier = {name.lower(): value for name, value in incoming_headers.items()}
        parent = _PROPAGATOR.extract(carrier)
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": model,
            "gen_ai.provider.name": PROVIDER_NAME,
            "gen_ai.system": PROVIDER_NAME,  # the name before gen_ai.provider.name, for older backends
        }
        if server_address is not None:
            attributes["server.address"] = server_address
        if server_port is not None:
            attributes["server.port"] = server_port
        # CLIENT: the span measures our call to the model server, the way the GenAI conventions define an
        # inference span seen from its caller; vLLM's own (SERVER) span, when it traces, becomes its child
        # through outgoing_headers().
        span = self._tracer.start_span(
            f"{operation} {model}", context=parent, kind=SpanKind.CLIENT, attributes=attributes,
            start_time=start_time_ns,
        )  # fmt: skip
        return RequestSpan(span)

    def shutdown(self) -> None:
        """Export what is still batched and stop the exporters."""
        self._provider.shutdown()


class RequestSpan:
    """The span of one request through the gateway; end() it exactly once with the finished record."""

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False

    @property
    def trace_id(self) -> str:
        return format_trace_id(self._span.get_span_context().trace_id)

    @property
    def span_id(self) -> str:
        return format_span_id(self._span.get_span_context().span_id)

    def outgoing_headers(self) -> dict[str, str]:
        """traceparent (and tracestate) for the upstream request, naming this span as the parent."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=set_span_in_context(self._span))
        return carrier

    def end(self, record: RequestRecord, end_time_ns: int | None = None) -> None:
        """Set the response attributes and the status, then end the span; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        self._span.set_attributes(_response_attributes(record))
        if record.status != Status.ok:
            # the semconv leaves the status unset on success; any other outcome is an error for the caller
            if record.status == Status.cancelled:
                error_type = Status.cancelled.value
            else:
                error_type = (record.error_type or "_OTHER")[:MAX_ERROR_TYPE_CHARS]  # _OTHER: the semconv's fallback
            self._span.set_attribute("error.type", error_type)
            self._span.set_status(StatusCode.ERROR, (record.error or error_type)[:MAX_DESCRIPTION_CHARS])
        self._span.end(end_time=end_time_ns)


def _response_attributes(record: RequestRecord) -> dict[str, AttributeValue]:
    optional: dict[str, AttributeValue | None] = {
        "gen_ai.response.model": record.model,
        "gen_ai.usage.input_tokens": record.prompt_tokens,
        "gen_ai.usage.output_tokens": record.completion_tokens,
        "gen_ai.response.finish_reasons": [record.finish_reason] if record.finish_reason is not None else None,
        "inferwatch.pool": record.pool,
        "inferwatch.revision": record.revision,
        "inferwatch.hardware": record.hardware,
        "inferwatch.request_id": record.id,
        "inferwatch.ttft_s": record.ttft_s,
        "inferwatch.tpot_s": record.tpot_s,
        "inferwatch.cached_tokens": record.cached_tokens,
    }
    return {key: value for key, value in optional.items() if value is not None}
