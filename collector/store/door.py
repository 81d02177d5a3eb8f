"""The one door to the store: every command, job, page and gateway opens it here, by store URL
(collector/store/url.py) — there is no store server to go through.

- `open_store` (writers: the collector's committer, canary, evals, gate, alerts): migrates the store to this
  code's schema; creates an embedded store that is not there yet.
- `open_reader` (readers: fleet, eval report, gate's inputs, the dashboard): read-only, never migrates or
  creates; an embedded file is opened for each query only, so readers and writers take turns on it.
- Both: one SELECT per query over the store's tables, on a connection with no file, network or extension
  access, within a statement timeout and a result cap (collector/store/guard.py, lockdown.py, limits.py).
"""

from __future__ import annotations

from pathlib import Path

from collector.store.api import Store
from collector.store.errors import StoreError
from collector.store.limits import QueryLimits
from collector.store.url import StoreURL, parse_store_url


def open_store(url: StoreURL | str | Path, *, create: bool = True, limits: QueryLimits | None = None) -> Store:
    """The store at `url` for writing; `create=False` refuses an embedded store that is not there yet."""
    parsed = url if isinstance(url, StoreURL) else parse_store_url(url)
    if not create and not parsed.exists():
        raise StoreError(f"{parsed}: no store there yet; `inferwatch collector up` creates it")
    return Store(parsed, limits=limits)


def open_reader(url: StoreURL | str | Path, *, limits: QueryLimits | None = None) -> Store:
    """The store at `url`, read-only; its queries within `limits` (default: QueryLimits.from_env())."""
    return Store(url, read_only=True, limits=limits)
