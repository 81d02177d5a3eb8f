"""Traffic splits changed while the collector runs, over loopback HTTP (the rollout uses these):

    GET    /admin/splits              -> {"splits": [{"baseline", "candidate", "weight", "ttl_s"}, ...]}
    PUT    /admin/splits              {"baseline": "ref", "candidate": "bf16", "weight": 0.2, "ttl_s": 60}
                                      -> the split in force; ttl_s (optional): it lapses unless PUT again in time
    DELETE /admin/splits/{baseline}   -> {"cleared": <the split> | null}; traffic goes back to the baseline

A bad split is a 400 naming the field. PUT and DELETE need the admin token and GET the read token when tokens
are set (collector/auth.py); SplitClient sends them from the environment (INFERWATCH_ADMIN_TOKEN or its _FILE).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.client.credentials import client_headers
from collector.gateway.routes import Router, Split, SplitError
from collector.state import CollectorError

log = logging.getLogger(__name__)


def split_json(split: Split, now: float | None = None) -> dict[str, Any]:
    left = None if split.expires_at is None else round(split.expires_at - (now or time.monotonic()), 3)
    return {"baseline": split.baseline, "candidate": split.candidate, "weight": split.weight, "ttl_s": left}


def parse_split(body: Any) -> tuple[Split, float | None]:
    """The split and its ttl from a PUT body; SplitError naming the field otherwise."""
    if not isinstance(body, dict):
        raise SplitError('the body must be a JSON object like {"baseline": "ref", "candidate": "bf16", "weight": 0.2}')
    unknown = sorted(set(body) - {"baseline", "candidate", "weight", "ttl_s"})
    if unknown:
        raise SplitError(f"unknown field(s) {', '.join(unknown)}; fields are baseline, candidate, weight, ttl_s")
    for name in ("baseline", "candidate"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise SplitError(f"field {name}: a pool name is required")
    for name in ("weight", "ttl_s"):
        value = body.get(name)
        if (value is not None or name == "weight") and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise SplitError(f"field {name}: a number is required, got {value!r}")
    ttl = body.get("ttl_s")
    return Split(body["baseline"], body["candidate"], float(body["weight"])), None if ttl is None else float(ttl)


def split_routes(router: Router) -> list[Route]:
    async def listing(request: Request) -> Response:
        return JSONResponse({"splits": [split_json(s) for s in router.splits.values()]})

    async def put(request: Request) -> Response:
        try:
            split, ttl_s = parse_split(await request.json())
            split = router.set_split(split, ttl_s)
        except ValueError as exc:  # SplitError, or a body that is not JSON
            return JSONResponse({"error": f"PUT /admin/splits: {exc}"}, status_code=400)
        log.info("split %s set (ttl %s)", split, ttl_s)
        return JSONResponse(split_json(split))

    async def delete(request: Request) -> Response:
        cleared = router.clear_split(request.path_params["baseline"])
        if cleared is not None:
            log.info("split %s cleared", cleared)
        return JSONResponse({"cleared": None if cleared is None else split_json(cleared)})

    return [
        Route("/admin/splits", listing, methods=["GET"]),
        Route("/admin/splits", put, methods=["PUT"]),
        Route("/admin/splits/{baseline}", delete, methods=["DELETE"]),
    ]


class SplitClient:
    """The routes above, from another process (the rollout). RuntimeError naming the collector on failure.
    It sends the admin token of the environment (client_headers) unless given `headers`."""

    def __init__(self, url: str, timeout_s: float = 10.0, headers: dict[str, str] | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **(client_headers("admin") if headers is None else headers)}

    def __repr__(self) -> str:
        return f"SplitClient({self.url!r})"  # never its headers: they hold the token

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx

        content = None if body is None else json.dumps(body)
        try:
            response = httpx.request(method, self.url + path, content=content, headers=self.headers,
                                     timeout=self.timeout_s)  # fmt: skip
        except httpx.HTTPError as exc:
            raise CollectorError(f"collector at {self.url}: no answer to {method} {path} ({exc})") from None
        if response.status_code != 200:
            raise CollectorError(f"collector at {self.url}: {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        return answer

    def set(self, split: Split, ttl_s: float | None = None) -> dict[str, Any]:
        body = {"baseline": split.baseline, "candidate": split.candidate, "weight": split.weight, "ttl_s": ttl_s}
        return self._call("PUT", "/admin/splits", body)

    def clear(self, baseline: str) -> dict[str, Any] | None:
        cleared: dict[str, Any] | None = self._call("DELETE", f"/admin/splits/{baseline}")["cleared"]
        return cleared

    def list(self) -> list[dict[str, Any]]:
        splits: list[dict[str, Any]] = self._call("GET", "/admin/splits")["splits"]
        return splits
