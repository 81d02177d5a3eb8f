"""What every page shares: the time window chosen in the sidebar, and data that shows a message instead of
failing (dashboards/data.py)."""

from __future__ import annotations

from typing import Any, NoReturn

import streamlit as st

from dashboards.data import HINTS, Unavailable, load

WINDOWS: dict[str, float | None] = {
    "last 5 minutes": 300, "last 15 minutes": 900, "last hour": 3600, "last 6 hours": 6 * 3600,
    "last 24 hours": 86400, "last 7 days": 7 * 86400, "everything in the store": None,
}  # fmt: skip
WINDOW_KEY = "window"
DEFAULT_WINDOW = "last hour"


def window_picker() -> None:
    """The sidebar's time window, kept across pages (the entry script draws it before the page)."""
    st.sidebar.selectbox("Time window", list(WINDOWS), index=list(WINDOWS).index(DEFAULT_WINDOW), key=WINDOW_KEY)


def window() -> tuple[str, float | None]:
    name = st.session_state.get(WINDOW_KEY, DEFAULT_WINDOW)
    return name, WINDOWS[name]


def stop(message: str, missing: bool) -> NoReturn:
    (st.info if missing else st.warning)(message)
    st.stop()


def fetch(topic: str, query: str, *args: Any) -> Any:
    """load(), or the page stops here with the reason and what to do."""
    try:
        return load(topic, query, *args)
    except Unavailable as exc:
        stop(exc.message, exc.missing)


def no_requests(window_name: str) -> NoReturn:
    """The page stops, saying whether the store has no requests at all or only none in the window."""
    _, last = fetch("requests", "request_span")
    if last is None:
        stop(HINTS["requests"], True)
    stop(f"No requests in the {window_name}; the latest started at {last:%Y-%m-%d %H:%M:%S} UTC: choose a longer "
         "time window in the sidebar.", True)  # fmt: skip
