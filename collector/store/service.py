"""The store over loopback HTTP, served by the collector: the one process that holds the DuckDB file.

DuckDB lets one process open a file for writing and then no other process may open it, not even to read.
So while the collector runs, everyone else (dashboard, gate, canary, evals) goes through these routes:

    POST /store/query          {"sql": "SELECT ...", "params": [...]}  -> Arrow IPC stream
                               (a timestamp parameter travels as {"datetime": "<ISO 8601>"})
    POST /store/append/{table} Arrow IPC stream of rows                 -> {"appended": n}
    POST /store/flush                                                    -> {"flushed": n}

Queries run on their own cursor of the writer's connection in a worker thread, so they see every flushed
row and never block ingestion (DuckDB's MVCC: a query reads a consistent snapshot while inserts go on).
Only single SELECT statements are accepted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import anyio
import duckdb
import pyarrow as pa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.store.embedded import Store, StoreError

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def check_read_only(sql: str) -> None:
    """Refuse anything but one SELECT statement (ValueError says why)."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ValueError(f"query does not parse: {exc}") from None
    if len(statements) != 1:
        raise ValueError(f"send exactly one statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise ValueError(f"only SELECT queries are served, got {statements[0].type.name}")


def encode_params(params: list[Any] | None) -> list[Any] | None:
    """JSON-ready query parameters: datetimes become {"datetime": ISO 8601}."""
    if params is None:
        return None
    return [{"datetime": p.isoformat()} if isinstance(p, datetime) else p for p in params]


def decode_params(params: list[Any] | None) -> list[Any] | None:
    if params is None:
        return None
    return [datetime.fromisoformat(p["datetime"]) if isinstance(p, dict) and "datetime" in p else p for p in params]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


class StoreService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def http_routes(self) -> list[Route]:
        return [
            Route("/store/query", self.query, methods=["POST"]),
            Route("/store/append/{table}", self.append, methods=["POST"]),
            Route("/store/flush", self.flush, methods=["POST"]),
        ]

    async def query(self, request: Request) -> Response:
        try:
            body: Any = json.loads(await request.body())
            sql, params = body["sql"], body.get("params")
            if not isinstance(sql, str) or not (params is None or isinstance(params, list)):
                raise TypeError("sql must be a string and params a list")
            params = decode_params(params)
            check_read_only(sql)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"bad query request: {exc}")
        try:
            table = await anyio.to_thread.run_sync(self.store.query, sql, params)
        except duckdb.Error as exc:
            return _error(400, f"query failed: {exc}")
        return Response(to_ipc(table), media_type=ARROW_STREAM)

    async def append(self, request: Request) -> Response:
        table = request.path_params["table"]
        try:
            rows = from_ipc(await request.body()).to_pylist()
        except pa.ArrowException as exc:
            return _error(400, f"append to {table}: body is not an Arrow IPC stream ({exc})")
        try:
            appended = self.store.append(table, rows)
        except StoreError as exc:
            return _error(400, str(exc))
        return JSONResponse({"appended": appended})

    async def flush(self, request: Request) -> Response:
        flushed = await anyio.to_thread.run_sync(self.store.flush)
        return JSONResponse({"flushed": flushed})
