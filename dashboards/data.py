"""Where the pages get their data: the store and the collector state file that `inferwatch dashboard` names in
the app's environment (dashboards/launch.py); the store is attached read-only by its URL for each query
(collector.store.door.open_reader), answers cached for a few seconds. Anything the store cannot answer becomes an
`Unavailable` that says what to do; the pages show it instead of a traceback.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import streamlit as st

from collector.state import CollectorError
from collector.store.door import open_reader
from collector.store.errors import StoreError
from dashboards.launch import COLLECTOR_STATE_VAR, STORE_VAR

TTL_S = 10  # how long a query's answer is reused

HINTS = {
    "requests": "No requests in the store yet: start the collector (`inferwatch collector up`) and send load "
    "through it (`inferwatch load`).",
    "drift": "No canary run in the store yet: `inferwatch canary run --reference ref`.",
    "evals": "No eval run in the store yet: `inferwatch eval run --suite arith-v1 --reference ref`.",
    "gates": "No gate verdict in the store yet: `inferwatch gate --baseline ref --candidate bf16`.",
    "alerts": "No alert has changed state and no notification was sent yet: the collector evaluates the alert "
    "rules (docs/ALERTS.md).",
}


class Unavailable(Exception):
    """The store cannot answer what a page asks; `message` says why and what to do, `missing` that the data
    is simply not there yet (an empty or older store)."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.missing = missing


@dataclass(frozen=True)
class Location:
    store: str  # a store URL (collector/store/url.py)
    collector_state: Path


def location(environ: Mapping[str, str] = os.environ) -> Location:
    """The paths `inferwatch dashboard` passed; Unavailable naming the variables when the app was started
    some other way (a bare `streamlit run` reads no store rather than guessing one)."""
    store, state = environ.get(STORE_VAR), environ.get(COLLECTOR_STATE_VAR)
    if not store or not state:
        raise Unavailable(
            f"No store named: start the dashboard with `inferwatch dashboard` (it sets {STORE_VAR} and "
            f"{COLLECTOR_STATE_VAR} for the app)."
        )
    return Location(store, Path(state))


def now(step_s: int = TTL_S) -> datetime:
    """The current time rounded down to `step_s`, so that reruns within it reuse cached answers."""
    return datetime.fromtimestamp(time.time() // step_s * step_s, UTC)


@st.cache_data(ttl=TTL_S, show_spinner=False)
def _cached(query: str, store: str, state: str, *args: Any) -> Any:
    from dashboards import queries

    function: Callable[..., Any] = getattr(queries, query)
    with open_reader(store) as reader:
        return function(reader, *args)


def _is_missing(message: str) -> bool:
    return "does not exist" in message or "not found" in message.lower()


def load(topic: str, query: str, *args: Any) -> Any:
    """`dashboards.queries.<query>(store, *args)`, cached; Unavailable when the store cannot answer (with the
    hint for `topic` when its table is not there)."""
    where = location()
    try:
        return _cached(query, str(where.store), str(where.collector_state), *args)
    except (StoreError, CollectorError) as exc:
        message = str(exc)
        if not _is_missing(message):
            raise Unavailable(message) from None
    except duckdb.Error as exc:
        message = str(exc)
        if not _is_missing(message):
            raise Unavailable(f"{where.store}: {message}") from None
    raise Unavailable(HINTS[topic], missing=True)


def source() -> str:
    """What the pages read, in words."""
    return f"{location().store} (read-only)"
