from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from collector.export.tracing import RequestTracing, span_exporters_from_env, tracer_provider_from_env
from collector.store.rows import RequestRecord

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exported() -> Iterator[tuple[RequestTracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = RequestTracing(provider)
    yield tracing, exporter
    tracing.shutdown()


def record(**fields: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "id": "req-7", "pool": "ref", "source": "traffic", "started_at": datetime(2026, 1, 1, tzinfo=UTC),
        "status": "ok", "operation": "text_completion", "model": "arith@ref",
    }  # fmt: skip
    return RequestRecord(**{**base, **fields})


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1
    return spans[0]


def test_span_continues_the_callers_trace(exported: tuple[RequestTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported
    # header names of any case: HTTP headers are case-insensitive
    span = tracing.start("text_completion", "arith@ref", {"Traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    outgoing = span.outgoing_headers()
    span.end(record())

    finished = only_span(exporter)
    assert span.trace_id == TRACE_ID
    assert f"{finished.context.trace_id:032x}" == TRACE_ID
    assert finished.parent is not None and f"{finished.parent.span_id:016x}" == PARENT_ID
    assert finished.parent.is_remote
    # upstream sees our span as its parent, in the same trace, with the caller's tracestate passed on
    assert outgoing == {"traceparent": f"00-{TRACE_ID}-{span.span_id}-01", "tracestate": "vendor=abc"}
    assert span.span_id == f"{finished.context.span_id:016x}" != PARENT_ID


def test_without_traceparent_a_new_trace_starts(exported: tuple[RequestTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported
    first = tracing.start("chat", "arith@ref", {})
    second = tracing.start("chat", "arith@ref", {"traceparent": "garbage"})
    first.end(record())
    second.end(record())
    spans = exporter.get_finished_spans()
    assert [s.parent for s in spans] == [None, None]
    assert len(first.trace_id) == 32 and int(first.trace_id, 16) != 0
    assert first.trace_id == first.trace_id.lower()
    assert first.trace_id != second.trace_id
    version, trace_id, parent_id, flags = first.outgoing_headers()["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", first.trace_id, first.span_id)
    assert int(flags, 16) & 0x01  # sampled (the SDK also sets 0x02, "random trace id", on new traces)


def test_attributes_of_a_finished_request(exported: tuple[RequestTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported
    span = tracing.start(
        "text_completion", "arith@ref", {}, start_time_ns=1_700_000_000_000_000_000,
        server_address="127.0.0.1", server_port=8000,
    )  # fmt: skip
    done = record(
        revision="r1", hardware="cpu", ttft_s=0.07, tpot_s=0.002, prompt_tokens=12, cached_tokens=8,
        completion_tokens=4, finish_reason="stop", e2e_s=0.076,
    )  # fmt: skip
    span.end(done, end_time_ns=1_700_000_000_076_000_000)

    finished = only_span(exporter)
    assert finished.name == "text_completion arith@ref"
    assert finished.kind is SpanKind.CLIENT
    assert (finished.start_time, finished.end_time) == (1_700_000_000_000_000_000, 1_700_000_000_076_000_000)
    assert dict(finished.attributes or {}) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.request.model": "arith@ref",
        "gen_ai.provider.name": "vllm",
        "gen_ai.system": "vllm",
        "server.address": "127.0.0.1",
        "server.port": 8000,
        "gen_ai.response.model": "arith@ref",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.finish_reasons": ("stop",),
        "inferwatch.pool": "ref",
        "inferwatch.revision": "r1",
        "inferwatch.hardware": "cpu",
        "inferwatch.request_id": "req-7",
        "inferwatch.ttft_s": 0.07,
        "inferwatch.tpot_s": 0.002,
        "inferwatch.cached_tokens": 8,
    }
    assert finished.status.status_code is StatusCode.UNSET  # success: the semconv leaves it unset


def test_error_and_cancelled_requests(exported: tuple[RequestTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = exported
    message = "pool ref: HTTP 503 from http://h/v1: overloaded"
    tracing.start("chat", "arith@ref", {}).end(record(status="error", error=message, error_type="upstream_5xx"))
    tracing.start("chat", "arith@ref", {}).end(record(status="cancelled"))
    tracing.start("chat", "arith@ref", {}).end(record(status="error", error="x" * 500))
    failed, cancelled, long = exporter.get_finished_spans()

    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == message  # the message in the description, the class in error.type
    assert failed.attributes is not None and failed.attributes["error.type"] == "upstream_5xx"
    assert "gen_ai.usage.input_tokens" not in failed.attributes  # unknown values are left out, not zero

    assert cancelled.status.status_code is StatusCode.ERROR
    assert cancelled.attributes is not None and cancelled.attributes["error.type"] == "cancelled"

    assert long.attributes is not None and long.attributes["error.type"] == "_OTHER"  # no class given
    assert long.status.description == "x" * 500  # the whole message goes to the status description


def test_end_twice_is_a_no_op(
    exported: tuple[RequestTracing, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    tracing, exporter = exported
    span = tracing.start("chat", "arith@ref", {})
    span.end(record(prompt_tokens=3))
    span.end(record(status="error", error="late", prompt_tokens=99))
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]  # the SDK's complaint, not reached
    finished = only_span(exporter)
    assert finished.status.status_code is StatusCode.UNSET
    assert finished.attributes is not None and finished.attributes["gen_ai.usage.input_tokens"] == 3


# --- configuration from the environment -----------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable of the machine running the tests: the SDK reads some from os.environ itself."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.usefixtures("clean_env")
def test_nothing_set_exports_nothing_but_makes_real_traces() -> None:
    assert span_exporters_from_env({}) == []
    assert span_exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    provider = tracer_provider_from_env({"OTEL_TRACES_EXPORTER": "none"})
    try:
        assert provider._active_span_processor._span_processors == ()  # white-box: nothing would export
        span = RequestTracing(provider).start("chat", "arith@ref", {})
        assert int(span.trace_id, 16) != 0
        span.end(record())
        assert provider.resource.attributes["service.name"] == "inferwatch-gateway"
    finally:
        provider.shutdown()


def test_console_exporter_prints_finished_spans(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw-test"}
    assert [type(e) for e in span_exporters_from_env(env)] == [ConsoleSpanExporter]
    provider = tracer_provider_from_env(env)
    try:
        span = RequestTracing(provider).start("chat", "arith@ref", {"traceparent": TRACEPARENT})
        span.end(record())
    finally:
        provider.shutdown()
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "chat arith@ref"
    assert printed["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert printed["resource"]["attributes"]["service.name"] == "gw-test"


def test_exporter_and_protocol_selection() -> None:
    assert [type(e) for e in span_exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp"})] == [HttpExporter]
    endpoint_only = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}
    assert [type(e) for e in span_exporters_from_env(endpoint_only)] == [HttpExporter]
    grpc = {"OTEL_TRACES_EXPORTER": "otlp, console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert [type(e) for e in span_exporters_from_env(grpc)] == [GrpcExporter, ConsoleSpanExporter]
    # the traces-specific protocol wins over the general one
    specific = {**grpc, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert [type(e) for e in span_exporters_from_env(specific)] == [HttpExporter, ConsoleSpanExporter]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"},
         r"OTEL_TRACES_EXPORTER='jaeger': unknown exporter jaeger; allowed: .*otlp, console, none"),
        ({"OTEL_TRACES_EXPORTER": "none,console"}, r"OTEL_TRACES_EXPORTER=.*'none' cannot be combined"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
         r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json' is not supported; allowed: http/protobuf, grpc"),
    ],
)  # fmt: skip
def test_bad_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tracer_provider_from_env(env)


class _Collector(BaseHTTPRequestHandler):
    """A minimal OTLP/HTTP receiver: keeps the decoded export requests."""

    received: list[ExportTraceServiceRequest]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_otlp_http_export_reaches_a_collector(clean_env: pytest.MonkeyPatch) -> None:
    _Collector.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # the exporter reads its endpoint from the process environment itself (clean_env restores it)
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        clean_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
        tracing = RequestTracing(tracer_provider_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}))
        span = tracing.start("text_completion", "arith@ref", {"traceparent": TRACEPARENT})
        span.end(record(prompt_tokens=5))
        tracing.shutdown()  # flushes the batch: the span must have arrived when it returns
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

    (request,) = _Collector.received
    (resource_spans,) = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "inferwatch-gateway"
    assert resource["deployment.environment.name"] == "test"
    (scope_spans,) = resource_spans.scope_spans
    (exported,) = scope_spans.spans
    assert exported.name == "text_completion arith@ref"
    assert exported.trace_id.hex() == TRACE_ID
    assert exported.parent_span_id.hex() == PARENT_ID
