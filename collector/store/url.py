"""Store URLs: which backend holds the store and where (DESIGN.md "Scale-out").

    var/inferwatch.duckdb                   embedded: one DuckDB file (a path, or duckdb:<path>)
    ducklake:postgres://USER@HOST:PORT/DB?data=DIR_OR_S3
                                            DuckLake: catalog in PostgreSQL, Parquet data under `data`
    ducklake:sqlite:CATALOG.sqlite?data=DIR DuckLake with a local SQLite catalog (one machine, many processes)

`data` is a directory (local or shared) or an s3:// prefix (credentials from the AWS_* environment);
for a sqlite catalog it defaults to `<catalog>.files/`. A PostgreSQL password comes from PGPASSWORD or
~/.pgpass, never from the URL, so that the URL can be logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from collector.store.errors import StoreError

FORMS = (
    "a path to a DuckDB file (var/inferwatch.duckdb), ducklake:postgres://USER@HOST:PORT/DB?data=DIR, "
    "or ducklake:sqlite:CATALOG.sqlite?data=DIR"
)


@dataclass(frozen=True)
class StoreURL:
    text: str  # as given (no secrets in it)
    backend: str  # "embedded" | "ducklake"
    path: Path | None = None  # embedded: the file
    catalog: str | None = None  # ducklake: "postgres:<libpq dsn>" or "sqlite:<path>"
    data_path: str | None = None  # ducklake: directory or s3:// prefix, ending in "/"

    def __str__(self) -> str:
        return self.text

    @property
    def local_file(self) -> Path | None:
        """The embedded store's file (None for DuckLake)."""
        return self.path

    def exists(self) -> bool:
        """Whether there is a store there already (DuckLake: always assumed; opening tells)."""
        return self.path is None or self.path.exists()


def parse_store_url(text: str | Path) -> StoreURL:
    """The store URL, checked; StoreError naming the URL and the accepted forms."""
    raw = str(text).strip()
    if not raw:
        raise StoreError(f"store URL is empty; give {FORMS}")
    if raw.startswith("ducklake:"):
        return _ducklake(raw)
    if raw in {":memory:", "duckdb::memory:"}:
        raise StoreError("store URL ':memory:': a store must outlive a process (every use opens it); give a file")
    if raw.startswith("duckdb:"):
        raw_path = raw.removeprefix("duckdb:").removeprefix("//")
        return StoreURL(raw, "embedded", path=Path(raw_path))
    if "://" in raw or raw.split(":", 1)[0] in {"postgres", "postgresql", "sqlite", "s3", "http", "https"}:
        raise StoreError(f"store URL {raw!r}: unknown scheme; give {FORMS}")
    return StoreURL(raw, "embedded", path=Path(raw))


def _ducklake(raw: str) -> StoreURL:
    rest = raw.removeprefix("ducklake:")
    target, _, query = rest.partition("?")
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"data"})
    if unknown:
        raise StoreError(f"store URL {raw!r}: unknown option(s) {', '.join(unknown)}; the one option is data=DIR")
    data = options.get("data", [""])[-1]
    if target.startswith(("postgres://", "postgresql://")):
        if not data:
            raise StoreError(f"store URL {raw!r}: a PostgreSQL catalog needs ?data=DIR (or s3://bucket/prefix)")
        return StoreURL(raw, "ducklake", catalog="postgres:" + _libpq_dsn(raw, target), data_path=_dir(data))
    if target.startswith("sqlite:"):
        catalog = target.removeprefix("sqlite:").removeprefix("//")
        if not catalog:
            raise StoreError(f"store URL {raw!r}: name the SQLite catalog file, e.g. ducklake:sqlite:var/lake.sqlite")
        return StoreURL(raw, "ducklake", catalog="sqlite:" + catalog, data_path=_dir(data or catalog + ".files"))
    raise StoreError(f"store URL {raw!r}: DuckLake needs a postgres:// or sqlite: catalog; give {FORMS}")


def _dir(data: str) -> str:
    return data if data.endswith("/") else data + "/"


def _libpq_dsn(raw: str, target: str) -> str:
    parts = urlsplit(target)
    if parts.password:
        shown = raw.replace(":" + parts.password + "@", ":***@")
        raise StoreError(f"store URL {shown!r}: put the password in PGPASSWORD or ~/.pgpass, not in the URL")
    database = parts.path.lstrip("/")
    try:
        port = parts.port
    except ValueError:
        raise StoreError(
            f"store URL {raw!r}: the port is not a number; give ducklake:postgres://USER@HOST:PORT/DB?data=DIR"
        ) from None
    if not parts.hostname or not database:
        raise StoreError(f"store URL {raw!r}: give host and database: ducklake:postgres://USER@HOST:PORT/DB?data=DIR")
    fields = {"dbname": database, "host": parts.hostname, "port": port, "user": parts.username}
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


def same_store(a: str | Path, b: str | Path) -> bool:
    """Whether two store URLs name one store (embedded: the same file, however the path is spelled)."""
    try:
        first, second = parse_store_url(a), parse_store_url(b)
    except StoreError:
        return False
    if first.path is not None and second.path is not None:
        return first.path.resolve() == second.path.resolve()
    return first.text == second.text
