"""What the gateway accepts from clients (collector/gateway/validation.py): identifiers stored with the row,
bodies that are not plain JSON objects, and the fields it acts on read the way vLLM's pydantic models read
them. Pure functions by hand and by Hypothesis (never anything but a value or InvalidRequest), then a handful
through a real gateway: the status, the OpenAI error body, no row for a refused request, and the gateway
still serving.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.gateway.proxy import GatewayConfig
from collector.gateway.validation import (
    MAX_ID_CHARS,
    InvalidRequest,
    RequestOptions,
    check_identifier,
    parse_body,
    read_options,
)
from tests.collector.faulty_upstream import FaultyUpstream
from tests.collector.gateway.served import ServedGateway, serve_gateway

# --- the pure checks, by hand ---


@pytest.mark.parametrize("value", ["req-1", "a" * MAX_ID_CHARS, "eval-0123abcd-ref-format-v1-charset-000", "!~{}"])
def test_identifiers_of_visible_ascii_up_to_128_are_taken(value: str) -> None:
    assert check_identifier("x-request-id", [value]) == value


@pytest.mark.parametrize("values", [[], [""]])
def test_an_absent_or_empty_request_id_gets_a_fresh_one(values: list[str]) -> None:
    assert check_identifier("x-request-id", values) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["a" * 129], "header x-request-id: 129 characters, over the limit of 128"),
        (["has space"], "header x-request-id: character ' ' is not allowed; use visible ASCII"),
        (["tab\there"], "character '\\t' is not allowed"),
        (["caf\u00e9"], "character 'é' is not allowed"),  # latin-1 bytes, as starlette decodes headers
        (["nul\x00"], "character '\\x00' is not allowed"),
        (["a", "b"], "header x-request-id: sent 2 times; send it once"),
    ],
)
def test_bad_identifiers_are_refused_naming_the_header(values: list[str], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_identifier("x-request-id", values)
    assert message in str(info.value)
    assert info.value.param == "x-request-id"


def nested(depth: int) -> bytes:
    """A body whose `prompt` nests lists so that the body has `depth` levels in all."""
    return b'{"prompt": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe{}", "request body is not UTF-8 (byte 0: b'\\xff')"),
        (b'{"prompt": "caf\xe9"}', "request body is not UTF-8 (byte 15: b'\\xe9')"),
        (b'{"model": "a", "model": "b"}', "request body: key 'model' appears twice in one object; send it once"),
        (b'{"temperature": NaN}', "request body: NaN is not JSON (numbers must be finite)"),
        (b'{"temperature": -Infinity}', "request body: -Infinity is not JSON (numbers must be finite)"),
        (b'{"temperature": 1e999}', "request body: the number 1e999 is too large for a 64-bit float"),
        (b'{"max_tokens": 1' + b"0" * 5000 + b"}", "request body is not valid JSON (Exceeds the limit (4300 digits)"),
        (nested(65), "request body nests deeper than 64 levels"),
        (b"[" * 100_000 + b"]" * 100_000, "request body nests deeper than 64 levels"),  # RecursionError in C
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "request body nests deeper than 64 levels"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'"prompt"', "request body must be a JSON object"),
        (b"null", "request body must be a JSON object"),
        (b"", "request body is not valid JSON"),
    ],
)
def test_bodies_that_are_not_plain_json_objects_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_body(raw)
    assert str(info.value).startswith(message), str(info.value)


def test_64_levels_are_taken() -> None:
    assert parse_body(nested(64))["prompt"] is not None


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (True, True), ("true", True), ("1", True), (1, True), (1.0, True), ("yes", True), ("on", True),
        (False, False), ("false", False), ("0", False), (0, False), ("no", False), ("off", False), (None, False),
    ],
)  # fmt: skip
def test_stream_is_read_as_vllm_reads_it_and_forwarded_as_a_boolean(stream: object, expected: bool) -> None:
    body, options = read_options({"model": "m", "stream": stream}, n_may_be_null=False)
    assert options == RequestOptions(stream=expected, include_usage=False, n=1)
    assert body["stream"] is (None if stream is None else expected)


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"stream": "maybe"}, 'stream: "maybe" is not a boolean', "stream"),
        ({"stream": 2}, "stream: 2 is not a boolean", "stream"),
        ({"stream": " true"}, 'stream: " true" is not a boolean', "stream"),
        ({"stream": []}, "stream: list is not a boolean", "stream"),
        ({"stream": True, "stream_options": "usage"}, "stream_options: must be an object", "stream_options"),
        ({"stream": True, "stream_options": [True]}, "stream_options: must be an object", "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": "sure"}}, "stream_options.include_usage: \"sure\"",
         "stream_options.include_usage"),
        ({"n": "two"}, 'n: "two" is not an integer', "n"),
        ({"n": 2.5}, "n: 2.5 is not an integer", "n"),
        ({"n": None}, "n: null is not an integer", "n"),  # completions: `n: int`
        ({"n": 0}, "n: 0; it must be at least 1", "n"),
    ],
)  # fmt: skip
def test_fields_the_pool_would_refuse_are_refused_naming_them(body: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        read_options(body, n_may_be_null=False)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.param == param


def test_n_and_stream_options_are_coerced_as_vllm_does() -> None:
    body, options = read_options(
        {"stream": "1", "stream_options": {"include_usage": "false", "x": 1}, "n": "2"}, n_may_be_null=False
    )
    assert options == RequestOptions(stream=True, include_usage=False, n=2)
    assert (body["stream"], body["stream_options"], body["n"]) == (True, {"include_usage": False, "x": 1}, 2)
    assert read_options({"n": None}, n_may_be_null=True)[1].n == 1  # chat: `n: int | None`


# --- the pure checks, by Hypothesis: a value or InvalidRequest, never anything else ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_object_or_invalid_request(raw: bytes) -> None:
    with contextlib.suppress(InvalidRequest):
        assert type(parse_body(raw)) is dict


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_gives_an_object_or_invalid_request(value: object) -> None:
    raw = json.dumps(value).encode()  # NaN and Infinity come out as such: the check must refuse them
    try:
        body = parse_body(raw)
        assert type(body) is dict and body == json.loads(raw)
        body, options = read_options(body, n_may_be_null=False)
        assert type(options.stream) is bool and type(options.n) is int and options.n >= 1
    except InvalidRequest as exc:
        assert str(exc)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["stream", "stream_options", "n", "model"]), json_values, max_size=4))
def test_any_options_give_options_or_invalid_request(body: dict[str, Any]) -> None:
    try:
        _, options = read_options(body, n_may_be_null=True)
        assert type(options.stream) is bool and type(options.include_usage) is bool
    except InvalidRequest as exc:
        assert exc.param in {"stream", "stream_options", "stream_options.include_usage",
                             "stream_options.continuous_usage_stats", "n"}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=3))
def test_any_header_values_give_an_identifier_or_invalid_request(values: list[str]) -> None:
    try:
        value = check_identifier("x-request-id", values)
        assert value is None or (len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable())
        assert value is None or " " not in value
    except InvalidRequest as exc:
        assert exc.param == "x-request-id"


# --- a handful through a real gateway ---


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, upstream: FaultyUpstream) -> Iterator[ServedGateway]:
    with serve_gateway(upstream, tmp_path_factory.mktemp("gw"), GatewayConfig()) as gateway:
        yield gateway


def row_count(served: ServedGateway) -> int:
    return int(served.store.query("SELECT count(*) AS n FROM requests").column("n")[0].as_py())


def send(served: ServedGateway, content: bytes, request_id: str | None, **headers: str) -> httpx.Response:
    sent = {"content-type": "application/json", **headers}
    if request_id is not None:
        sent["x-request-id"] = request_id
    return httpx.post(f"{served.url}/v1/completions", content=content, headers=sent, timeout=30)


def assert_still_serving(served: ServedGateway, request_id: str) -> None:
    reply = send(served, b'{"model": "arith@ok", "prompt": "1"}', request_id)
    assert reply.status_code == 200 and served.row(request_id)["status"] == "ok"


@pytest.mark.parametrize(
    ("content", "headers", "message", "param"),
    [
        (b'{"model": "arith@ok", "prompt": "1"}', {"x-request-id": "x" * 129},
         "header x-request-id: 129 characters, over the limit of 128", "x-request-id"),
        (b'{"model": "arith@ok", "prompt": "1"}', {"x-request-id": "two words"},
         "header x-request-id: character ' ' is not allowed", "x-request-id"),
        (b'{"model": "arith@ok", "prompt": "1"}', {"x-inferwatch-run": "r" * 200},
         "header x-inferwatch-run: 200 characters, over the limit of 128", "x-inferwatch-run"),
        (b'{"model": "arith@ok", "prompt": ' + b"[" * 80 + b"]" * 80 + b"}", {},
         "request body nests deeper than 64 levels", None),
        (b"[" * 50_000 + b"]" * 50_000, {}, "request body nests deeper than 64 levels", None),
        (b'{"model": "arith@ok", "prompt": "1", "model": "arith@slow"}', {},
         "request body: key 'model' appears twice in one object", "model"),
        (b'{"model": "arith@ok", "prompt": "1", "temperature": NaN}', {}, "request body: NaN is not JSON", None),
        (b'{"model": "arith@ok", "prompt": "\xff"}', {}, "request body is not UTF-8", None),
        (b'{"model": "arith@ok", "prompt": "1", "stream": "maybe"}', {}, 'stream: "maybe" is not a boolean',
         "stream"),
        (b'{"model": "arith@ok", "prompt": "1", "stream": true, "stream_options": 1}', {},
         "stream_options: must be an object", "stream_options"),
        (b'{"model": "arith@ok", "prompt": "1", "n": "two"}', {}, 'n: "two" is not an integer', "n"),
    ],
)  # fmt: skip
def test_the_gateway_refuses_with_a_400_naming_what_and_records_nothing(
    served: ServedGateway, content: bytes, headers: dict[str, str], message: str, param: str | None
) -> None:
    request_id = f"refused-{uuid.uuid4().hex}"
    rows_before = row_count(served)
    reply = send(served, content, None if "x-request-id" in headers else request_id, **headers)
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["message"].startswith(message), error
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", 400, param)
    assert row_count(served) == rows_before  # refused before it was routed: no row
    assert_still_serving(served, f"{request_id}-after")


@pytest.mark.parametrize(("stream", "streams"), [("false", False), ("0", False), (0, False), ("true", True), (1, True)])
def test_a_stream_given_as_a_string_or_number_is_handled_as_the_pool_handles_it(
    served: ServedGateway, upstream: FaultyUpstream, stream: object, streams: bool
) -> None:
    request_id = f"stream-as-{json.dumps(stream)}"
    body = {"model": "arith@ok", "prompt": "1", "stream": stream}
    reply = send(served, json.dumps(body).encode(), request_id)
    assert reply.status_code == 200
    sent = next(r for r in upstream.received if r["headers"].get("x-request-id") == request_id)
    assert sent["body"]["stream"] is streams  # the pool gets the boolean the gateway acted on
    if streams:
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert reply.text.endswith("data: [DONE]\n\n")
        assert sent["body"]["stream_options"] == {"include_usage": True}
    else:
        assert reply.json()["choices"][0]["text"] == "46"
        assert "stream_options" not in sent["body"]
    row = served.row(request_id)
    assert (row["status"], row["completion_tokens"]) == ("ok", 3)
    assert (row["ttft_s"] is not None) is streams  # timed as a stream exactly when it was one
