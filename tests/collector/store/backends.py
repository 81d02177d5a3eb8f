"""Store URLs of every backend for a test: embedded, DuckLake on SQLite, DuckLake on the session's PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

from collector.store.postgres import PostgresServer

BACKENDS = ("embedded", "ducklake-sqlite", "ducklake-postgres")


def store_url(backend: str, tmp_path: Path, postgres: PostgresServer | None) -> str:
    if backend == "embedded":
        return str(tmp_path / "s.duckdb")
    if backend == "ducklake-sqlite":
        return f"ducklake:sqlite:{tmp_path}/cat.sqlite?data={tmp_path}/lake"
    assert postgres is not None
    name = "t_" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    return f"ducklake:postgres://{postgres.user}@{postgres.host}:{postgres.port}/{name}?data={tmp_path}/lake"
