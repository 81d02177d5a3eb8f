"""One row of the `requests` table, as the gateway records it and every consumer reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    ok = "ok"  # the upstream answered 2xx and the response reached the client
    error = "error"  # upstream down, 4xx/5xx, malformed stream: `error` says which
    cancelled = "cancelled"  # the client went away before the response ended


class ErrorType(StrEnum):
    """A short, closed class of what went wrong (the message in `error` says exactly what)."""

    upstream_unreachable = "upstream_unreachable"  # no connection, or no answer in time
    upstream_4xx = "upstream_4xx"  # the pool refused the request (passed on to the client as is)
    upstream_5xx = "upstream_5xx"  # the pool failed (the client gets 502)
    upstream_error_event = "upstream_error_event"  # the pool sent an error event inside the stream
    malformed_stream = "malformed_stream"  # not an OpenAI SSE stream, or not an OpenAI JSON answer
    stream_cut = "stream_cut"  # the stream broke off or ended without data: [DONE]
    cancelled = "cancelled"  # the client went away


class Operation(StrEnum):
    """gen_ai.operation.name of the OpenTelemetry GenAI conventions."""

    text_completion = "text_completion"  # /v1/completions
    chat = "chat"  # /v1/chat/completions


class Source(StrEnum):
    traffic = "traffic"
    load = "load"
    canary = "canary"
    eval = "eval"


@dataclass(frozen=True)
class RequestRecord:
    id: str
    pool: str
    source: str
    started_at: datetime  # wall clock (UTC) when the gateway received the request
    status: str
    operation: str | None = None
    trace_id: str | None = None  # 32 hex digits, W3C trace id
    run_id: str | None = None
    revision: str | None = None
    hardware: str | None = None
    model: str | None = None  # the model id the client asked for, e.g. arith@ref
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_p50_s: float | None = None
    itl_max_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    error_type: str | None = None  # ErrorType
    cost_usd: float | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)
