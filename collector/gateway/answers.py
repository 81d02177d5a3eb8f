"""What the gateway takes from a pool's answer (a whole JSON answer, or one event of a stream) and what it
refuses: the usage, the finish reason and the shape around them. A pool that answers anything else (a JSON
array, `choices` that is not a list, token counts that are strings, negative, floats, booleans or beyond what
the store's INTEGER columns hold) has not given an OpenAI answer: OddAnswer, whose message names the field.

Pure: parsed JSON in, typed values out. The gateway never trusts a count it did not check (it feeds the cost
meter, the Prometheus counters and the store).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_TOKENS_COUNT = 2**31 - 1  # requests.prompt_tokens, .cached_tokens, .completion_tokens are INTEGER
MAX_FINISH_REASON = 64  # "stop", "length", "tool_calls", "abort", ...: a longer one is not a finish reason
MAX_ENGINE_MS = 1e9  # an engine timing beyond about 11.6 days is not a request's timing


class OddAnswer(ValueError):
    """The pool's answer is not an OpenAI answer; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class EngineTimings:
    """vLLM's per-request metrics (`--enable-per-request-metrics`, the `metrics` object beside `usage` on a
    stream's usage chunk or a whole answer; n = 1 only), in seconds. Engine-core clocks: queue = first scheduled -
    queued; prefill = first token - first scheduled (vLLM calls it time_to_first_token_ms: it excludes the queue);
    decode = last token - first token; tpot = decode / (completion_tokens - 1) (vLLM mean_itl_ms)."""

    queue_s: float | None = None
    prefill_s: float | None = None
    decode_s: float | None = None
    tpot_s: float | None = None


ENGINE_FIELDS = (
    ("queue_s", "queue_time_ms"), ("prefill_s", "time_to_first_token_ms"), ("decode_s", "generation_time_ms"),
    ("tpot_s", "mean_itl_ms"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AnswerFacts:
    """What the row takes from a whole (non-streamed) answer."""

    usage: Usage | None
    finish_reason: str | None
    error: str | None = None  # the answer is an OpenAI error object (a pool that answers 200 with one)
    engine: EngineTimings | None = None


def _count(where: str, value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int:  # bool is an int subclass, float is not a count
        raise OddAnswer(f"{where} is {_shown(value)}, not a whole number of tokens")
    if not 0 <= value <= MAX_TOKENS_COUNT:
        raise OddAnswer(f"{where} is {value}, outside 0..{MAX_TOKENS_COUNT}")
    return value


def read_usage(value: object) -> Usage | None:
    """An OpenAI `usage` object (None: absent or null)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OddAnswer(f"usage is {_shown(value)}, not an object")
    details = value.get("prompt_tokens_details")
    if details is not None and not isinstance(details, dict):
        raise OddAnswer(f"usage.prompt_tokens_details is {_shown(details)}, not an object")
    _count("usage.total_tokens", value.get("total_tokens"))
    return Usage(
        prompt_tokens=_count("usage.prompt_tokens", value.get("prompt_tokens")),
        completion_tokens=_count("usage.completion_tokens", value.get("completion_tokens")),
        cached_tokens=_count("usage.prompt_tokens_details.cached_tokens", (details or {}).get("cached_tokens")),
    )


def read_engine_metrics(value: object) -> EngineTimings | None:
    """vLLM's `metrics` object (None: absent or null, as from a pool without per-request metrics). Each timing is
    a finite number of milliseconds in 0..MAX_ENGINE_MS, or null/absent; anything else is an OddAnswer."""
    if value is None:
        return None
    if type(value) is not dict:
        raise OddAnswer(f"metrics is {_shown(value)}, not an object")
    seconds: dict[str, float | None] = {}
    for name, key in ENGINE_FIELDS:
        ms = value.get(key)
        if ms is not None and (type(ms) not in (int, float) or not 0 <= ms <= MAX_ENGINE_MS):  # NaN fails too
            raise OddAnswer(f"metrics.{key} is {_shown(ms)}, not a number of milliseconds in 0..{MAX_ENGINE_MS:g}")
        seconds[name] = None if ms is None else ms / 1000
    return EngineTimings(**seconds) if any(v is not None for v in seconds.values()) else None


def read_choices(value: object) -> list[dict[str, Any]]:
    """An answer's or a chunk's `choices`: a list of objects (absent or null: none)."""
    if value is None:
        return []
    if type(value) is not list:
        raise OddAnswer(f"choices is {_shown(value)}, not a list")
    for choice in value:
        if type(choice) is not dict:
            raise OddAnswer(f"choices holds {_shown(choice)}, not an object")
    return value


def read_finish_reason(choice: dict[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    if reason is None:
        return None
    if type(reason) is not str or len(reason) > MAX_FINISH_REASON:
        raise OddAnswer(f"choices[].finish_reason is {_shown(reason)}, not a finish reason")
    return reason


def error_message(error: object) -> str:
    """The message of an OpenAI error object (`{"error": {"message": ...}}`), bounded."""
    message = error.get("message", error) if isinstance(error, dict) else error
    return str(message)[:500]


def read_answer(data: bytes) -> AnswerFacts:
    """A whole answer's facts. OddAnswer when it is not UTF-8 JSON, not an object, or its fields are not
    OpenAI's; json.loads recurses in C, so a deeply nested answer is an OddAnswer too, not a RecursionError."""
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OddAnswer(f"the answer is not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    if type(answer) is not dict:
        raise OddAnswer(f"the answer is {_shown(answer)}, not a JSON object")
    if "error" in answer and answer.get("choices") is None:
        return AnswerFacts(None, None, error_message(answer["error"]))
    choices = read_choices(answer.get("choices"))
    reasons = [r for c in choices if (r := read_finish_reason(c)) is not None]
    usage, engine = read_usage(answer.get("usage")), read_engine_metrics(answer.get("metrics"))
    return AnswerFacts(usage, reasons[0] if reasons else None, engine=engine)


def _shown(value: object) -> str:
    """A value as an error message shows it: its JSON type and the start of its text."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", float: "a number",
            int: "a number", type(None): "null"}.get(type(value), type(value).__name__)  # fmt: skip
    text = repr(value)
    return f"{kind} ({text[:60]}{'...' if len(text) > 60 else ''})"
