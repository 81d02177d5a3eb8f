"""What is wrong with a store file DuckDB would not open: the file is read (its first bytes) and the error
named, with what to do, instead of DuckDB's message (or its attempt to download the sqlite extension for
a SQLite file).

- a directory, a SQLite file, a Parquet file, text or unknown bytes: StoreFormatError
- an empty file, a DuckDB file that is truncated or fails its checks: StoreCorrupt
- a file or directory this user cannot read: StoreUnreadable
- a DuckDB file or SQLite catalog with tables of its own and no inferwatch bookkeeping: NotAStore
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from collector.store.errors import NotAStore, StoreCorrupt, StoreFileError, StoreFormatError, StoreUnreadable

DUCKDB_MAGIC = b"DUCK"  # at offset 8 of every DuckDB database file
SQLITE_MAGIC = b"SQLite format 3\x00"
PARQUET_MAGIC = b"PAR1"
_NEW_STORE = "move it aside and give a new --store (a writer, `inferwatch collector up`, creates it)"
_RESTORE = "restore it from a backup, or " + _NEW_STORE


def sniff(path: Path) -> str:
    """What `path` holds, in words: "duckdb", "sqlite", "parquet", "empty", "directory", "text", "binary"."""
    if path.is_dir():
        return "directory"
    with path.open("rb") as handle:
        head = handle.read(64)
    if not head:
        return "empty"
    if head[8:12] == DUCKDB_MAGIC:
        return "duckdb"
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    return "text"


def embedded_fault(where: str, path: Path, detail: str) -> StoreFileError | None:
    """The error for a DuckDB store file that DuckDB could not open (`detail`: its message), or None when the
    file looks like a DuckDB file and the failure is not about its contents (a lock, say)."""
    try:
        kind = sniff(path)
    except PermissionError:
        return StoreUnreadable(f"{where}: this user ({_user()}) cannot read {path}; fix its permissions (chmod, chown)")
    except OSError as exc:
        return StoreUnreadable(f"{where}: cannot read {path} ({exc.strerror}); check the path and its disk")
    if kind == "directory":
        return StoreFormatError(f"{where}: {path} is a directory, not a DuckDB store file; give the file's path")
    if kind == "empty":
        return StoreCorrupt(f"{where}: {path} is empty (0 bytes; a creation cut short or a failed copy); {_NEW_STORE}")
    if kind != "duckdb":
        what = {"sqlite": "a SQLite database", "parquet": "a Parquet file", "text": "text"}.get(kind, "unknown bytes")
        return StoreFormatError(f"{where}: {path} holds {what}, not a DuckDB store; {_NEW_STORE}")
    low = detail.lower()
    damaged = ("could not read enough bytes", "checksum", "corrupt", "not a valid duckdb", "failed to read", "invalid")
    if any(word in low for word in damaged):
        return StoreCorrupt(f"{where}: {path} is a damaged DuckDB file ({detail[:200]}); {_RESTORE}")
    return None


def check_sqlite_catalog(where: str, path: Path) -> None:
    """Before attaching a DuckLake's SQLite catalog: StoreFileError when it is no SQLite file, or a SQLite file
    of someone else's tables (a writer would create a DuckLake inside it)."""
    if not path.exists():
        return
    try:
        kind = sniff(path)
    except PermissionError:
        raise StoreUnreadable(f"{where}: user {_user()} cannot read the catalog {path}; fix its permissions") from None
    if kind == "directory":
        raise StoreFormatError(f"{where}: the catalog {path} is a directory; give the catalog file's path")
    if kind == "empty":
        return  # SQLite treats an empty file as an empty database
    if kind != "sqlite":
        raise StoreCorrupt(f"{where}: the catalog {path} is not a SQLite database ({kind}); {_RESTORE}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = [str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.DatabaseError as exc:
        raise StoreCorrupt(f"{where}: the catalog {path} is a damaged SQLite database ({exc}); {_RESTORE}") from None
    if tables and "ducklake_metadata" not in tables:
        shown = ", ".join(sorted(tables)[:5])
        raise NotAStore(
            f"{where}: the catalog {path} is a SQLite database of other tables ({shown}), not a DuckLake catalog; "
            "give another catalog file"
        )


def _user() -> str:
    return str(os.getuid()) if hasattr(os, "getuid") else "?"
