"""What the gateway accepts from a client, checked before a request is routed (no row for a refused request):
an InvalidRequest names the header or field and becomes a 400 with an OpenAI error body.

- Identifiers stored with the row (x-request-id, X-Inferwatch-Run): 1 to 128 visible ASCII characters
  (0x21-0x7E: no spaces, no control characters, no CR/LF, no bytes beyond ASCII), at most one of each header.
  An absent or empty x-request-id gets a fresh one; a bad one is refused, not replaced: the client would look
  for its row under the id it sent.
- The body: UTF-8 JSON, an object, no key twice in one object, no NaN/Infinity (and no number so large it
  becomes one), at most `max_depth` levels of nesting (json.loads recurses in C: a body nested a thousand
  levels deep raises RecursionError there, which is a 400 here too).
- The fields the gateway acts on are read the way the pool reads them: vLLM's request models are pydantic in
  lax mode (`stream: bool | None`, `stream_options: StreamOptions | None`, `n: int`), so "false", "0", 0 and
  0.0 are false, "true", "1", 1, 1.0 (and "yes"/"on"/"t"/"y") are true, any other string or number is a 400.
  The gateway forwards the coerced values, so that the pool streams exactly when the gateway relays a stream.

Pure: bytes and strings in, a dict or InvalidRequest out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

MAX_ID_CHARS = 128
MAX_JSON_DEPTH = 64
_ID = re.compile(r"[\x21-\x7e]+")
_LAX_BOOL: TypeAdapter[bool | None] = TypeAdapter(bool | None)
_LAX_INT: TypeAdapter[int] = TypeAdapter(int)


class InvalidRequest(ValueError):
    """A request the gateway refuses with a 400; `param` is the field or header it names."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """How the gateway handles a request, read as the pool reads it."""

    stream: bool
    include_usage: bool  # the client asked for the usage event itself
    n: int


def check_identifier(header: str, values: Sequence[str]) -> str | None:
    """The one value of an identifier header (None: absent or empty); InvalidRequest naming the header."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"header {header}: sent {len(values)} times; send it once", header)
    value = values[0]
    if not value:
        return None
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequest(f"header {header}: {len(value)} characters, over the limit of {MAX_ID_CHARS}", header)
    if not _ID.fullmatch(value):
        bad = next(c for c in value if not "\x21" <= c <= "\x7e")
        raise InvalidRequest(
            f"header {header}: character {bad!r} is not allowed; use visible ASCII (letters, digits, punctuation, "
            "no spaces)", header,
        )  # fmt: skip
    return value


def parse_body(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The request body as a JSON object; InvalidRequest saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"request body is not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})"
        ) from None
    try:
        body = json.loads(text, object_pairs_hook=_object, parse_constant=_constant, parse_float=_float)
    except InvalidRequest:
        raise
    except RecursionError:
        raise InvalidRequest(f"request body nests deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise InvalidRequest(f"request body is not valid JSON ({exc})") from None
    if type(body) is not dict:
        raise InvalidRequest("request body must be a JSON object")
    # only a body with more brackets than levels allowed can nest too deep: most bodies skip the walk
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(body, max_depth):
        raise InvalidRequest(f"request body nests deeper than {max_depth} levels")
    return body


def read_options(body: dict[str, Any], n_may_be_null: bool) -> tuple[dict[str, Any], RequestOptions]:
    """The body with `stream`, `stream_options` and `n` as the pool will read them, and the options they make.
    `n_may_be_null`: chat completions take `n: null` (vLLM: `int | None`), completions do not."""
    body = dict(body)
    stream = False
    if "stream" in body:
        body["stream"] = _lax_bool("stream", body["stream"])
        stream = bool(body["stream"])
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if type(options) is not dict:
            raise InvalidRequest('stream_options: must be an object, e.g. {"include_usage": true}', "stream_options")
        options = dict(options)
        for key in ("include_usage", "continuous_usage_stats"):
            if key in options:
                options[key] = _lax_bool(f"stream_options.{key}", options[key])
        body["stream_options"] = options
        include_usage = bool(options.get("include_usage"))
    n = 1
    if "n" in body and not (body["n"] is None and n_may_be_null):
        try:
            n = body["n"] if type(body["n"]) is int else _LAX_INT.validate_python(body["n"])
        except ValidationError:
            raise InvalidRequest(f"n: {_shown(body['n'])} is not an integer", "n") from None
        if n < 1:
            raise InvalidRequest(f"n: {n}; it must be at least 1", "n")
        body["n"] = n
    return body, RequestOptions(stream, include_usage, n)


def _lax_bool(field: str, value: object) -> bool | None:
    if value is None or type(value) is bool:  # what clients send: no need to ask pydantic
        return value
    try:
        return _LAX_BOOL.validate_python(value)
    except ValidationError:
        raise InvalidRequest(
            f'{field}: {_shown(value)} is not a boolean (true, false, 1, 0, "true", "false", "1", "0")', field
        ) from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                break
            seen.add(key)
        raise InvalidRequest(f"request body: key {key[:100]!r} appears twice in one object; send it once", key[:100])
    return result


def _constant(name: str) -> float:
    raise InvalidRequest(f"request body: {name} is not JSON (numbers must be finite)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidRequest(f"request body: the number {text[:40]} is too large for a 64-bit float")
    return value


def _deeper_than(value: object, limit: int) -> bool:
    """Whether containers nest more than `limit` levels (the body itself is level 1); iterative, no recursion."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children: Iterable[object] = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)
    return False


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else type(value).__name__
    return text[:60]
