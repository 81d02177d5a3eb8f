"""POST a JSON request to an OpenAI-compatible endpoint, retrying what may succeed on a second try.

Transient: connection errors, timeouts, HTTP 5xx and 429. Anything else (400, 404, ...) is the request's own
fault and is not retried. The canary and the eval runner both ask pools through this.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class RequestFailed(RuntimeError):
    """Every attempt failed; the message is the last cause (e.g. "HTTP 502: ..." or "ConnectError: ...")."""

    def __init__(self, message: str, attempts: int, transient: bool) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.transient = transient


def is_transient(status: int) -> bool:
    return status >= 500 or status == 429


async def post_json(
    http: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    *,
    retries: int = 2,
    backoff_s: float = 0.2,
) -> tuple[dict[str, Any], int]:
    """The decoded 200 answer and how many attempts it took; RequestFailed after `retries` retries."""
    last, transient = "", True
    for attempt in range(retries + 1):
        try:
            response = await http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            last, transient = f"{type(exc).__name__}: {exc}".rstrip(": "), True
        else:
            if response.status_code == 200:
                try:
                    answer: dict[str, Any] = response.json()
                except ValueError:
                    raise RequestFailed(f"HTTP 200 with a body that is not JSON: {response.text[:200]!r}",
                                        attempt + 1, False) from None  # fmt: skip
                return answer, attempt + 1
            last = f"HTTP {response.status_code}: {response.text[:300]}"
            transient = is_transient(response.status_code)
            if not transient:
                raise RequestFailed(last, attempt + 1, False)
        if attempt < retries:
            await asyncio.sleep(backoff_s * 2**attempt)
    raise RequestFailed(last, retries + 1, transient)
