"""One row of the `requests` table, as the gateway records it and every consumer reads it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    id: str
    pool: str
    source: str  # collector.vocabulary.Source
    started_at: datetime  # wall clock (UTC) when the gateway received the request
    status: str  # collector.vocabulary.Status
    operation: str | None = None  # collector.vocabulary.Operation
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
    error_type: str | None = None  # collector.vocabulary.ErrorType
    cost_usd: float | None = None
    item_id: str | None = None  # which work item (eval item, load item index, canary probe:mode:seed)
    # the engine's own timings (vLLM per-request metrics on the usage chunk or whole answer); None when not sent
    engine_queue_s: float | None = None  # waiting in the scheduler
    engine_prefill_s: float | None = None  # first scheduled -> first token (vLLM time_to_first_token_ms)
    engine_decode_s: float | None = None  # first token -> last token
    engine_tpot_s: float | None = None  # vLLM mean_itl_ms: decode / (completion_tokens - 1)
    token_events: int | None = None  # stream events that carried a token
    chunk_arrivals: int | None = None  # distinct arrival times among them (fewer: the pool coalesced the stream)
    gateway_s: float | None = None  # time the gateway itself added (collector/gateway/exchange.py Exchange.gateway_ns)

    def as_row(self) -> dict[str, Any]:
        return asdict(self)
