"""The one door to the store: every command, job and page opens it here.

- `open_store` (writers: canary, evals, alerts): the running collector's store service when the collector
  holds the file, else the file itself (as its one writer).
- `open_reader` (readers: fleet, eval report, gate, the dashboard): the collector's store service when it
  holds the file, else the file opened read-only for each query (collector/store/readonly.py), so a reader
  never migrates, flushes or holds the file.
- `connect`: the store of a collector known to run at a URL.
"""

from __future__ import annotations

from pathlib import Path

from collector.state import CollectorState, health
from collector.store.embedded import Store
from collector.store.readonly import ReadOnlyStore
from collector.store.remote import RemoteStore


def connect(url: str) -> RemoteStore:
    """The store of the collector answering at `url`, over its loopback HTTP."""
    return RemoteStore(url)


def open_store(store_path: Path, state_path: Path) -> Store | RemoteStore:
    """The running collector's store service when it holds `store_path`, else the file itself."""
    return _served(store_path, state_path) or Store(store_path)


def open_reader(store_path: Path, state_path: Path) -> ReadOnlyStore | RemoteStore:
    """For readers that must not hold the file (the dashboard): the collector's store service when it holds
    `store_path`, else the file opened read-only for each query (collector/store/readonly.py)."""
    return _served(store_path, state_path) or ReadOnlyStore(store_path)


def _served(store_path: Path, state_path: Path) -> RemoteStore | None:
    state = CollectorState.load(state_path)
    if state is not None and Path(state.store).resolve() == store_path.resolve() and health(state.url):
        return connect(state.url)
    return None
