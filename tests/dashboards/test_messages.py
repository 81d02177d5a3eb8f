"""No store, an empty or older store, a store another process writes, a collector that is gone or running:
every page says what is going on and what to do, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from collector import daemon
from collector.state import CollectorState
from collector.store.door import connect
from collector.store.embedded import Store
from collector.store.schema import MIGRATIONS
from dashboards.data import HINTS
from dashboards.launch import COLLECTOR_STATE_VAR, STORE_VAR
from tests.collector.faulty_upstream import FaultyUpstream, start_collector
from tests.conftest import free_port
from tests.dashboards.conftest import OpenApp, app_on
from tests.dashboards.seed import seed
from tests.dashboards.test_app import PAGES

TOPICS = {"fleet": "requests", "latency_cost": "requests", "drift": "drift", "evals": "evals", "gates_alerts": "gates"}


def messages(at: AppTest) -> list[str]:
    return [m.value for m in (*at.info, *at.warning)]


def test_no_store_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_app = app_on(tmp_path / "nothing.duckdb", tmp_path, monkeypatch)
    for page in PAGES:
        shown = messages(open_app(page))
        assert any("no store there yet; `inferwatch collector up` creates it" in m for m in shown), (page, shown)


def test_started_without_inferwatch_dashboard_no_store_is_guessed(
    seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_app = app_on(seeded, tmp_path, monkeypatch)
    monkeypatch.delenv(STORE_VAR)
    monkeypatch.delenv(COLLECTOR_STATE_VAR)
    expected = (f"No store named: start the dashboard with `inferwatch dashboard` (it sets {STORE_VAR} and "
                f"{COLLECTOR_STATE_VAR} for the app).")  # fmt: skip
    for page in PAGES:
        shown = messages(open_app(page))
        assert shown and set(shown) == {expected}, (page, shown)  # gates_alerts says it for each of its tables
    assert expected in [c.value for c in open_app().sidebar.caption]


def test_an_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "empty.duckdb").close()
    open_app = app_on(tmp_path / "empty.duckdb", tmp_path, monkeypatch)
    for page in PAGES:
        assert HINTS[TOPICS[page]] in messages(open_app(page)), page
    assert messages(open_app("gates_alerts")) == [HINTS["gates"], HINTS["alerts"]]


def test_an_older_store_without_the_later_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with duckdb.connect(str(tmp_path / "v1.duckdb")) as con:  # schema version 1: no eval_runs, no alert outbox
        con.execute(MIGRATIONS[0])
    open_app = app_on(tmp_path / "v1.duckdb", tmp_path, monkeypatch)
    assert messages(open_app("evals")) == [HINTS["evals"]]
    assert messages(open_app("gates_alerts")) == [HINTS["gates"], HINTS["alerts"]]
    assert messages(open_app("fleet")) == [HINTS["requests"]]


@pytest.fixture
def writer_elsewhere(seeded: Path) -> Iterator[Path]:
    """Another process holds the seeded store as its writer (a collector that is starting, say)."""
    code = "import sys, time; from collector.store.embedded import Store; s = Store(sys.argv[1]); " \
           "print('open', flush=True); " \
           "time.sleep(120)"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(seeded)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield seeded
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_store_another_process_writes(
    writer_elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_app = app_on(writer_elsewhere, tmp_path, monkeypatch)
    for page in PAGES:
        shown = messages(open_app(page))
        assert any("held by another process that writes it" in m and "`inferwatch collector status`" in m
                   for m in shown), (page, shown)  # fmt: skip


def test_reading_does_not_keep_the_store_from_its_writer(app: OpenApp, seeded: Path) -> None:
    for page in PAGES:
        app(page)
    # a collector starting now opens the file as its writer: nothing of the dashboard holds it
    code = "import sys; from collector.store.embedded import Store; Store(sys.argv[1]).close(); print('opened')"
    done = subprocess.run([sys.executable, "-c", code, str(seeded)], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "opened", done.stderr


def test_a_recorded_collector_that_is_gone(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = CollectorState(pid=1, url=f"http://127.0.0.1:{free_port()}", store=str(seeded), log="")
    gone.save(tmp_path / "collector.json")
    at = app_on(seeded, tmp_path, monkeypatch)()
    assert f"Reading {seeded} (read-only; no collector runs)" in [c.value for c in at.sidebar.caption]
    assert ("TTFT p50", "250 ms") in [(m.label, m.value) for m in at.metric]


def test_through_a_running_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultyUpstream() as upstream:
        state = start_collector(tmp_path, upstream)
        try:
            with connect(state.url) as store:
                seed(store, datetime.now(UTC))
                store.flush()
            open_app = app_on(Path(state.store), tmp_path, monkeypatch)
            at = open_app()
            assert f"Reading collector at {state.url} (store {state.store})" in [c.value for c in at.sidebar.caption]
            ref = [(m.label, m.value, m.delta) for m in at.metric][8:10]
            assert ref == [("req/s", "0.00139", "+0.000833"), ("TTFT p50", "250 ms", "+100 ms")]
            for page in PAGES[1:]:
                assert not open_app(page).warning, page
        finally:
            daemon.down(tmp_path / "collector.json")
