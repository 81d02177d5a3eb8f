"""The store as another process sees it while the collector runs: the same calls, over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx
import pyarrow as pa

from collector.store.embedded import StoreError
from collector.store.service import ARROW_STREAM, encode_params, from_ipc, to_ipc


class RemoteStore:
    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.post(self.url + path, **kwargs)
        except httpx.HTTPError as exc:
            hint = "is it up? `inferwatch collector status`"
            raise StoreError(f"collector at {self.url}: no answer ({exc}); {hint}") from None
        if response.status_code != 200:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            raise StoreError(f"collector at {self.url}: {message}")
        return response

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        return from_ipc(self._post("/store/query", json={"sql": sql, "params": encode_params(params)}).content)

    def append(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        batch = [dict(r) for r in rows]
        if not batch:
            return 0
        data = to_ipc(pa.Table.from_pylist(batch))
        response = self._post(f"/store/append/{table}", content=data, headers={"content-type": ARROW_STREAM})
        return int(response.json()["appended"])

    def flush(self) -> int:
        return int(self._post("/store/flush").json()["flushed"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
