"""Where a store's tables live, behind one `connection()`: an embedded DuckDB file or a DuckLake.

- Embedded: the file is opened for each use and closed after it, so that any number of processes take
  turns: DuckDB lets one process hold a file read-write, or many hold it read-only, never both. The
  collector's committer opens it about once a second for ~20 ms; readers (gate, fleet, the dashboard) open it
  read-only for each query. A use that meets the other kind's lock retries with jitter up to
  `lock_timeout_s`, then fails with StoreBusy naming the holder.
- DuckLake: one DuckDB connection per process with the lake ATTACHed (read-only for readers); every use gets
  a cursor of it. Writers in many processes and machines commit concurrently (DuckLake's optimistic
  concurrency); a conflict is retried by the caller (Store._with_retry). Every Store of one URL in a process
  shares the attachment, kept a minute after the last closes (see DuckLakeBackend).
- Both: every connection is locked down once the store is attached (collector/store/lockdown.py), and a file
  that is not a store is named as such (collector/store/files.py).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import duckdb

from collector.store import extensions
from collector.store.errors import StoreBusy, StoreCorrupt, StoreError
from collector.store.files import check_sqlite_catalog, embedded_fault
from collector.store.lockdown import CONNECT_CONFIG, lock_down
from collector.store.url import StoreURL

LAKE = "inferwatch_lake"
_OPEN_LOCK = threading.Lock()
_OPEN: dict[tuple[str, bool], list[Any]] = {}  # (file, read_only) -> [connection, uses]: one per process


class Backend(Protocol):
    url: StoreURL
    read_only: bool

    def connection(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def newer_format_error(url: StoreURL, exc: Exception) -> StoreError | None:
    text = str(exc)
    if "newer version of DuckDB" in text or "version number" in text:
        return StoreError(
            f"{url}: written by a newer DuckDB than this inferwatch's ({duckdb.__version__}): open it with the "
            "inferwatch (DuckDB) that wrote it and `EXPORT DATABASE`, then `IMPORT DATABASE` here, or give a new "
            "--store"
        )
    return None


class EmbeddedBackend:
    def __init__(self, url: StoreURL, *, read_only: bool, lock_timeout_s: float = 10.0) -> None:
        assert url.path is not None
        self.url, self.read_only, self.lock_timeout_s = url, read_only, lock_timeout_s
        self.path = url.path
        if read_only and not self.path.exists():
            raise StoreError(f"{url}: no store there yet; `inferwatch collector up` creates it")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of this process's open database: the first use opens the file, the last one closes it
        (DuckDB allows one attachment of a file per process, so threads share it)."""
        key = (str(self.path.resolve()), self.read_only)
        with _OPEN_LOCK:
            entry = _OPEN.get(key)
            if entry is None:
                entry = _OPEN[key] = [self._open(), 0]
            entry[1] += 1
            cursor = entry[0].cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            with _OPEN_LOCK:
                entry[1] -= 1
                if entry[1] == 0:
                    del _OPEN[key]
                    entry[0].close()

    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.005
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=self.read_only, config=CONNECT_CONFIG)
            except duckdb.IOException as exc:
                error = newer_format_error(self.url, exc)
                if error is not None:
                    raise error from None
                if "could not set lock" not in str(exc).lower() and "conflicting lock" not in str(exc).lower():
                    raise self._open_error(exc) from None
                if time.monotonic() >= deadline:
                    holder = re.search(r"PID (\d+)", str(exc))
                    who = f"process {holder.group(1)}" if holder else "another process"
                    raise StoreBusy(
                        f"{self.url}: held by {who} for over {self.lock_timeout_s:g} s; if that process is stuck, "
                        "stop it (a collector: `inferwatch collector down`)"
                    ) from None
            except duckdb.Error as exc:
                raise self._open_error(exc) from None
            else:
                try:
                    lock_down(con, [f"{self.path.resolve()}.tmp/"])  # its spill directory, nothing else
                except BaseException:
                    con.close()
                    raise
                return con
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 0.2)

    def _open_error(self, exc: duckdb.Error) -> StoreError:
        fault = embedded_fault(str(self.url), self.path, _first_line(exc))
        return fault or StoreError(f"{self.url}: cannot open the store ({_first_line(exc)})")

    def reset(self) -> None:
        """Nothing to reset: every use opens the file afresh."""

    def close(self) -> None:
        """Nothing stays open between uses."""


class _Attachment:
    """One process's connection with a lake attached, shared by every Store of that URL and mode."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.users = 0
        self.idle_since: float | None = None


_LAKES_LOCK = threading.Lock()
_LAKES: dict[tuple[str, str, bool], _Attachment] = {}
LAKE_IDLE_S = 60.0  # an attachment no Store uses is kept this long for the next one (a reader per query) ...
LAKE_IDLE_MAX = 4  # ... and at most this many are kept (each holds a catalog connection)


class DuckLakeBackend:
    """Attaching costs about a second (the extensions' load, the ATTACH, the catalog's first read): every Store of
    one URL in a process shares one attachment, kept a while after the last one closes, so that a reader opened
    per query (the dashboard, the gate) pays it once."""

    def __init__(self, url: StoreURL, *, read_only: bool) -> None:
        assert url.catalog is not None and url.data_path is not None
        self.url, self.read_only = url, read_only
        self._key = (url.catalog, url.data_path, read_only)
        self._closed = False
        with _LAKES_LOCK:
            _sweep(time.monotonic())
            shared = _LAKES.get(self._key)
            if shared is None:
                shared = _LAKES[self._key] = _Attachment(self._attach())
            shared.users += 1
            shared.idle_since = None
        self._shared = shared

    def _attach(self) -> duckdb.DuckDBPyConnection:
        kind, _, where = (self.url.catalog or "").partition(":")
        data = self.url.data_path or ""
        if kind == "sqlite":
            check_sqlite_catalog(str(self.url), Path(where))
        con = duckdb.connect(config=CONNECT_CONFIG)
        try:
            extensions.load(con, "ducklake", "postgres_scanner" if kind == "postgres" else "sqlite_scanner")
            if data.startswith("s3://"):
                _s3_secret(con)
            elif not self.read_only:
                os.makedirs(data, exist_ok=True)
            options = f"DATA_PATH '{_quote(data)}'" + (", READ_ONLY" if self.read_only else "")
            con.execute(f"ATTACH 'ducklake:{kind}:{_quote(where)}' AS {LAKE} ({options})")
            con.execute(f"USE {LAKE}")
            lock_down(con, _data_directories(data))
        except duckdb.Error as exc:
            con.close()
            text = _first_line(exc)
            if kind == "sqlite" and any(w in text.lower() for w in ("not a database", "malformed", "corrupt")):
                raise StoreCorrupt(
                    f"{self.url}: the DuckLake catalog {where} is damaged ({text}); restore it from a backup, or "
                    "move it aside (and its data directory) and give a new --store"
                ) from None
            raise StoreError(f"{self.url}: cannot attach the DuckLake ({text}); {_hint(kind)}") from None
        except BaseException:
            con.close()
            raise
        return con

    @property
    def shared_with(self) -> int:
        """How many open Stores of this process use this attachment (this one included)."""
        return self._shared.users

    @contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with _LAKES_LOCK:
            cursor = self._shared.con.cursor()
        try:
            cursor.execute(f"USE {LAKE}")
            yield cursor
        finally:
            cursor.close()

    def reset(self) -> None:
        """After a failure that may have broken the catalog connection (PostgreSQL restarted): attach afresh, for
        every Store sharing the attachment."""
        fresh = self._attach()
        with _LAKES_LOCK:
            old, self._shared.con = self._shared.con, fresh
        old.close()

    def close(self) -> None:
        with _LAKES_LOCK:
            if self._closed:
                return
            self._closed = True
            self._shared.users -= 1
            if self._shared.users == 0:
                self._shared.idle_since = time.monotonic()
            _sweep(time.monotonic())


def _sweep(now: float) -> None:
    """Close the attachments nobody uses that have been idle too long, or beyond the most kept (under the lock)."""
    idle = sorted(
        ((a.idle_since, key) for key, a in _LAKES.items() if a.users == 0 and a.idle_since is not None),
        reverse=True,
    )
    for rank, (since, key) in enumerate(idle):
        if rank >= LAKE_IDLE_MAX or now - since > LAKE_IDLE_S:
            _LAKES.pop(key).con.close()


def close_idle_lakes() -> None:
    """Close every attachment no Store uses now (tests that stop PostgreSQL or drop a database call it)."""
    with _LAKES_LOCK:
        for key in [k for k, a in _LAKES.items() if a.users == 0]:
            _LAKES.pop(key).con.close()


def _data_directories(data: str) -> list[str]:
    """The directories a DuckLake connection may read and write: its data path, as given and absolute."""
    if "://" in data:
        return [data]
    absolute = os.path.abspath(data).rstrip("/") + "/"
    return sorted({data, absolute})


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def _hint(kind: str) -> str:
    if kind == "postgres":
        return "is PostgreSQL up and the database created (createdb)? The first writer creates the catalog in it"
    return "is the catalog file readable, and not on a network file system?"


def _s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    """Object storage credentials from the AWS_* environment (an S3-compatible endpoint via AWS_ENDPOINT_URL)."""
    extensions.load(con, "httpfs")
    env = os.environ
    fields = {
        "KEY_ID": env.get("AWS_ACCESS_KEY_ID"), "SECRET": env.get("AWS_SECRET_ACCESS_KEY"),
        "REGION": env.get("AWS_REGION"), "ENDPOINT": (env.get("AWS_ENDPOINT_URL") or "").split("://")[-1] or None,
        "URL_STYLE": "path" if env.get("AWS_ENDPOINT_URL") else None,
        "USE_SSL": "false" if (env.get("AWS_ENDPOINT_URL") or "").startswith("http://") else None,
    }  # fmt: skip
    values = ", ".join(f"{k} '{_quote(v)}'" if k != "USE_SSL" else f"{k} {v}" for k, v in fields.items() if v)
    con.execute(f"CREATE OR REPLACE SECRET inferwatch_s3 (TYPE s3{', ' + values if values else ''})")


def open_backend(url: StoreURL, *, read_only: bool) -> EmbeddedBackend | DuckLakeBackend:
    if url.backend == "embedded":
        return EmbeddedBackend(url, read_only=read_only)
    return DuckLakeBackend(url, read_only=read_only)
