"""POST a JSON request to an OpenAI-compatible endpoint, retrying what may succeed on a second try.

Transient: connection errors, timeouts, HTTP 5xx and 429. Anything else (400, 404, ...) is the request's own
fault and is not retried. The canary and the eval runner both ask pools through this; the eval runner asks for
streamed answers (so its requests carry TTFT and TPOT) and gets them back whole.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from collector.client.credentials import client_headers
from collector.gateway.sse import DONE, read_data
from collector.loadgen.runner import error_message


class RequestFailed(RuntimeError):
    """Every attempt failed; the message is the last cause (e.g. "HTTP 502: ..." or "ConnectError: ...")."""

    def __init__(self, message: str, attempts: int, transient: bool) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.transient = transient


def is_transient(status: int) -> bool:
    return status >= 500 or status == 429


class _Refused(Exception):
    """One attempt's answer was not a usable 200 answer; `transient`: another attempt may succeed."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    retries: int = 2,
    backoff_s: float = 0.2,
    stream: bool = False,
) -> tuple[dict[str, Any], int]:
    """The decoded 200 answer and how many attempts it took; RequestFailed after `retries` retries.

    `stream`: the answer is asked for as server-sent events and put back together in the shape of a whole
    answer (StreamedAnswer), so that the gateway measures TTFT and TPOT on these requests too. The client API key
    of the environment (INFERWATCH_API_KEY) is sent unless `headers` carry an Authorization of their own.
    """
    headers = {**client_headers("client"), **headers}
    last, transient = "", True
    for attempt in range(retries + 1):
        try:
            answer = await (_streamed if stream else _whole)(http, url, body, headers)
        except httpx.HTTPError as exc:
            last, transient = f"{type(exc).__name__}: {exc}".rstrip(": "), True
        except _Refused as exc:
            last, transient = str(exc), exc.transient
            if not transient:
                raise RequestFailed(last, attempt + 1, False) from None
        else:
            return answer, attempt + 1
        if attempt < retries:
            await asyncio.sleep(backoff_s * 2**attempt)
    raise RequestFailed(last, retries + 1, transient)


async def _whole(http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    response = await http.post(url, json=body, headers=headers)
    if response.status_code != 200:
        raise _Refused(f"HTTP {response.status_code}: {response.text[:300]}", is_transient(response.status_code))
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        raise _Refused(f"HTTP 200 with a body that is not JSON: {response.text[:200]!r}", False) from None
    return answer


async def _streamed(http: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    answer = StreamedAnswer()
    async with http.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            raise _Refused(f"HTTP {response.status_code}: {text[:300]}", is_transient(response.status_code))
        await read_data(response.aiter_bytes(), answer.add)
    return answer.whole()


class StreamedAnswer:
    """The events of a streamed completion or chat completion (first choice only), put back together as the
    whole answer would have been: choices[0] with text (or message.content) and finish_reason, and usage."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.chat = False
        self.seen_choice = False
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False

    def add(self, payload: bytes) -> bool:
        """One `data:` payload; True at `[DONE]`. _Refused on an error event or one that is not JSON."""
        if payload.strip() == DONE:
            self.done = True
            return True
        data = payload.decode(errors="replace").strip()
        try:
            event = json.loads(data)
        except ValueError:
            raise _Refused(f"malformed stream: an event is not JSON: {data[:200]!r}", False) from None
        if not isinstance(event, dict):
            raise _Refused(f"malformed stream: an event is not an object: {data[:200]!r}", False)
        if "error" in event:
            raise _Refused(f"stream error: {error_message(event)}", True)
        for choice in event.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            self.seen_choice = True
            if "delta" in choice:
                self.chat = True
                self.parts.append((choice["delta"] or {}).get("content") or "")
            else:
                self.parts.append(choice.get("text") or "")
            self.finish = choice.get("finish_reason") or self.finish
        if event.get("usage"):
            self.usage = event["usage"]
        return False

    def whole(self) -> dict[str, Any]:
        if not self.done:
            raise _Refused("the stream ended before data: [DONE]", True)
        if not self.seen_choice:
            return {"choices": [], "usage": self.usage}
        text = "".join(self.parts)
        choice: dict[str, Any] = {"index": 0, "finish_reason": self.finish}
        choice |= {"message": {"role": "assistant", "content": text}} if self.chat else {"text": text}
        return {"choices": [choice], "usage": self.usage}
