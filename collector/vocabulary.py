"""The closed sets of labels every package shares, and the HTTP headers between the gateway and its clients.

The store holds these values as strings (requests.status, .error_type, .operation, .source; drift.verdict,
eval_runs.verdict, gates.verdict): a value is never renamed, only added (tests/collector/test_vocabulary.py
pins each spelling). Compare with the members, never with a spelled-out string; SQL is built from the values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Status(StrEnum):
    """requests.status: how a request through the gateway ended."""

    ok = "ok"  # the upstream answered 2xx and the response reached the client
    error = "error"  # upstream down, 4xx/5xx, malformed stream: `error` says which
    cancelled = "cancelled"  # the client went away before the response ended


class ErrorType(StrEnum):
    """requests.error_type: a short, closed class of what went wrong (the message in `error` says exactly what)."""

    upstream_unreachable = "upstream_unreachable"  # no connection, or no answer head in time
    upstream_timeout = "upstream_timeout"  # no data event (or whole answer) within read_timeout_s
    upstream_4xx = "upstream_4xx"  # the pool refused the request (passed on to the client as is)
    upstream_5xx = "upstream_5xx"  # the pool failed (the client gets 502)
    upstream_error_event = "upstream_error_event"  # the pool sent an error event inside the stream
    malformed_stream = "malformed_stream"  # not an OpenAI SSE stream, or not an OpenAI JSON answer
    stream_cut = "stream_cut"  # the stream broke off or ended without data: [DONE]
    cancelled = "cancelled"  # the client went away


class Operation(StrEnum):
    """requests.operation: gen_ai.operation.name of the OpenTelemetry GenAI conventions."""

    text_completion = "text_completion"  # /v1/completions
    chat = "chat"  # /v1/chat/completions


class Source(StrEnum):
    """requests.source: who sent a request (header SOURCE_HEADER; none is traffic)."""

    traffic = "traffic"
    load = "load"
    canary = "canary"
    eval = "eval"


class DriftVerdict(StrEnum):
    """drift.verdict: one canary metric of a pool against the reference (canary/analysis.py)."""

    ok = "ok"
    drift = "drift"
    nodata = "nodata"


class EvalVerdict(StrEnum):
    """eval_runs.verdict: one pool's eval run against the reference's (evals/compare.py)."""

    reference = "reference"
    passed = "pass"
    regressed = "regressed"
    improved = "improved"
    inconclusive = "inconclusive"
    nodata = "nodata"


class GateVerdict(StrEnum):
    """gates.verdict: the rollout judge's verdict on a candidate against its baseline (gate/judge.py)."""

    passed = "pass"
    marginal = "marginal"
    fail = "fail"
    nodata = "nodata"


# HTTP headers (lower case, as the gateway reads them; HTTP header names are case-insensitive)
POOL_HEADER: Final = "x-inferwatch-pool"  # request: route to this pool; reply: the pool that served it
SOURCE_HEADER: Final = "x-inferwatch-source"  # request: a Source value
RUN_HEADER: Final = "x-inferwatch-run"  # request: the load, canary or eval run the request belongs to
ITEM_HEADER: Final = "x-inferwatch-item"  # request: the work item (eval item id, load item index, canary probe)
GATEWAY_TIME_HEADER: Final = "x-inferwatch-gateway-ms"  # reply: the gateway's own time so far (Exchange.gateway_ns)
REQUEST_ID_HEADER: Final = "x-request-id"  # request: the id stored with the row (else the gateway makes one); reply
