"""No store, an empty or older store, a store another process writes or holds, a collector that is gone or
running: every page shows the data or says what is going on and what to do, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from collector import daemon
from collector.state import CollectorState
from collector.store.api import Store
from collector.store.door import open_store
from collector.store.schema import MIGRATIONS, MIGRATIONS_TABLE, SCHEMA_VERSION
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


def test_an_older_store_is_refused_until_a_writer_migrates_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:  # schema version 1: no eval_runs, no alert outbox
        con.execute(MIGRATIONS[0])
        con.execute(MIGRATIONS_TABLE)
        con.execute("INSERT INTO schema_migrations VALUES (1, now())")
    open_app = app_on(path, tmp_path, monkeypatch)
    refused = f"{path}: store schema version 1, this inferwatch reads version {SCHEMA_VERSION}; any writer migrates it"
    for page in PAGES:
        shown = messages(open_app(page))
        assert shown and all(m.startswith(refused) and "`inferwatch collector up`" in m for m in shown), (page, shown)
    Store(path).close()  # a writer (the collector starting) migrates it; the later tables are there, empty
    st.cache_data.clear()
    assert messages(open_app("evals")) == [HINTS["evals"]]
    assert messages(open_app("gates_alerts")) == [HINTS["gates"], HINTS["alerts"]]
    assert messages(open_app("fleet")) == [HINTS["requests"]]


WRITER = """
import sys, time
from datetime import UTC, datetime
from collector.store.api import Store
with Store(sys.argv[1]) as store:
    for i in range(100_000):
        store.append("journal_segments", [{"writer": "elsewhere", "segment": f"s{i}", "rows": 0, "torn": 0,
                                           "quarantined": 0, "committed_at": datetime.now(UTC)}])
        if i == 0:
            print("writing", flush=True)
        time.sleep(0.02)
"""


@pytest.fixture
def writer_elsewhere(seeded: Path) -> Iterator[Path]:
    """Another process writes the seeded store all the time (a collector's committer, only busier)."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(seeded)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        yield seeded
        assert writer.poll() is None, "the writer stopped: a reader kept it from the store"
    finally:
        writer.kill()
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()


def test_a_store_another_process_writes(
    writer_elsewhere: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_app = app_on(writer_elsewhere, tmp_path, monkeypatch)
    for page in PAGES:
        assert not messages(open_app(page)), page  # readers and the writer take turns on the file
    assert ("TTFT p50", "250 ms") in [(m.label, m.value) for m in open_app().metric]
    with Store(writer_elsewhere, read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM journal_segments").column("n")[0].as_py() > 0


@pytest.fixture
def holder_elsewhere(seeded: Path) -> Iterator[int]:
    """Another process holds the seeded store open for writing and never lets go (a stuck writer)."""
    code = "import sys, time, duckdb; con = duckdb.connect(sys.argv[1]); print('open', flush=True); time.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(seeded)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_store_held_by_a_stuck_writer(
    holder_elsewhere: int, seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = messages(app_on(seeded, tmp_path, monkeypatch)("fleet"))
    assert shown and all(f"held by process {holder_elsewhere} for over" in m and "`inferwatch collector down`" in m
                         for m in shown), shown  # fmt: skip


def test_reading_does_not_keep_the_store_from_its_writer(app: OpenApp, seeded: Path) -> None:
    for page in PAGES:
        app(page)
    # a collector starting now opens the file as its writer: nothing of the dashboard holds it
    code = "import sys; from collector.store.api import Store; Store(sys.argv[1]).close(); print('opened')"
    done = subprocess.run([sys.executable, "-c", code, str(seeded)], capture_output=True, text=True, check=False)
    assert done.stdout.strip() == "opened", done.stderr


def test_a_recorded_collector_that_is_gone(seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = CollectorState(pid=1, url=f"http://127.0.0.1:{free_port()}", store=str(seeded), log="")
    gone.save(tmp_path / "collector.json")
    at = app_on(seeded, tmp_path, monkeypatch)()
    assert f"Reading {seeded} (read-only)" in [c.value for c in at.sidebar.caption]
    assert ("TTFT p50", "250 ms") in [(m.label, m.value) for m in at.metric]


def test_through_a_running_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultyUpstream() as upstream:
        state = start_collector(tmp_path, upstream)
        try:
            with open_store(state.store) as store:  # a second writer beside the collector's committer
                seed(store, datetime.now(UTC))
            open_app = app_on(Path(state.store), tmp_path, monkeypatch)
            at = open_app()
            assert f"Reading {state.store} (read-only)" in [c.value for c in at.sidebar.caption]
            ref = [(m.label, m.value, m.delta) for m in at.metric][10:12]
            assert ref == [("req/s", "0.00139", "+0.000833"), ("TTFT p50", "250 ms", "+100 ms")]
            for page in PAGES[1:]:
                assert not open_app(page).warning, page
        finally:
            daemon.down(tmp_path / "collector.json")
