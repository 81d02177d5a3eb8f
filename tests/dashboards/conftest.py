"""The dashboard tests' store and app: a real DuckDB file seeded with known rows (seed.py), the real app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from collector.store.api import Store
from dashboards.launch import APP, COLLECTOR_STATE_VAR, STORE_VAR
from tests.dashboards.seed import seed

OpenApp = Callable[..., AppTest]


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    path = tmp_path / "seeded.duckdb"
    with Store(path) as store:
        seed(store, datetime.now(UTC))
    return path


def app_on(store: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> OpenApp:
    """An opener of the app on `store` (no collector recorded in `home` unless a test writes one), with the
    environment `inferwatch dashboard` gives it."""
    monkeypatch.setenv(STORE_VAR, str(store))
    monkeypatch.setenv(COLLECTOR_STATE_VAR, str(home / "collector.json"))

    def open_app(page: str | None = None, window: str | None = None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        if window is not None:
            at.session_state["window"] = window
        at.run()
        if page is not None:
            at.switch_page(f"views/{page}.py").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return open_app


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    st.cache_data.clear()
    yield
    st.cache_data.clear()


@pytest.fixture
def app(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OpenApp:
    return app_on(seeded, tmp_path, monkeypatch)
