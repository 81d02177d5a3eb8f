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

    def as_row(self) -> dict[str, Any]:
        return asdict(self)
