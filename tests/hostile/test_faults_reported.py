"""Faults are reported, not hidden (issue 17, item 6): each turns /healthz not ok (503, "ok": false) with the
reason in words, reaches the log once (again only when it changes, and its recovery too), never as a traceback
to the user. The registry and the loops against real threads, tasks, journals and DuckDB stores; then a real
collector process (the scripted upstream, no vLLM) whose store file is replaced under it, and one started on a
corrupt store."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector import daemon
from collector.health import Fault, Faults, health_body
from collector.ingest import Ingest, IngestConfig
from collector.journal.committer import Committer
from collector.journal.writer import FsyncPolicy, Journal
from collector.scraper import Scraper, Target
from collector.state import CollectorError
from collector.store.api import Store
from tests.collector.faulty_upstream import FaultyUpstream, start_collector, write_engine
from tests.collector.journal.test_committer import WRITER, MemoryTarget
from tests.conftest import flush_collector, free_port, inferwatch

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
GARBAGE = b"this is no DuckDB store, it replaced one\n" * 200


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (got := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)
    return got


def messages(caplog: pytest.LogCaptureFixture, logger: str | None = None) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if logger is None or r.name == logger]


# --- the registry ---------------------------------------------------------------------------------------------


def test_a_fault_is_logged_once_again_when_its_reason_changes_and_at_recovery(caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([T0, T0 + timedelta(seconds=5), T0 + timedelta(seconds=9)])
    faults = Faults(clock=lambda: next(clock))
    with caplog.at_level(logging.INFO, logger="inferwatch.health"):
        for _ in range(3):
            faults.report("committer", "disk full")
        assert faults.current() == [Fault("committer", "disk full", T0)]  # since the first report
        faults.report("committer", "store file replaced")
        faults.report("scraper", "loop stopped")
        faults.report("committer", None)
        faults.report("committer", None)
    assert faults.current() == [Fault("scraper", "loop stopped", T0 + timedelta(seconds=9))]
    assert messages(caplog) == [
        (logging.ERROR, "committer: disk full"),
        (logging.ERROR, "committer: store file replaced"),
        (logging.ERROR, "scraper: loop stopped"),
        (logging.INFO, "committer works again (it was: store file replaced)"),
    ]
    assert all(r.exc_info is None for r in caplog.records)  # no traceback


def test_healthz_body_keeps_the_fields_and_is_not_ok_with_a_fault_or_degraded() -> None:
    details = {"status": "ok", "problem": None, "committed_rows": 3}
    assert health_body([], details) == {"ok": True, "status": "ok", "problem": None, "committed_rows": 3, "faults": []}
    fault = Fault("alerts", "its task stopped", T0)
    assert health_body([fault], details) == {
        "ok": False, "status": "ok", "problem": None, "committed_rows": 3,
        "faults": [{"part": "alerts", "reason": "its task stopped", "since": "2026-12-01T12:00:00+00:00"}],
    }  # fmt: skip
    assert health_body([], {**details, "status": "degraded"})["ok"] is False


def test_a_task_that_dies_or_is_cancelled_is_a_fault_and_one_that_returns_is_not() -> None:
    faults = Faults()

    async def main() -> None:
        async def dies() -> None:
            raise ValueError("rules file vanished")

        async def returns() -> None:
            return None

        async def waits() -> None:
            await asyncio.sleep(60)

        tasks = {name: asyncio.create_task(work()) for name, work in
                 (("alerts", dies), ("done", returns), ("cancelled", waits))}  # fmt: skip
        for name, task in tasks.items():
            faults.watch(name, task)
        await asyncio.sleep(0.01)
        tasks["cancelled"].cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop

    asyncio.run(main())
    assert {f.part: f.reason for f in faults.current()} == {
        "alerts": "its task stopped: ValueError: rules file vanished; restart the collector (its log says more)",
        "cancelled": "its task was cancelled; restart the collector",
    }


def test_a_probe_that_raises_is_a_fault_not_an_error_of_healthz() -> None:
    faults = Faults()
    faults.probe("scraper", lambda: str(1 / 0))
    [fault] = faults.current()
    assert fault.reason == "its health check failed (ZeroDivisionError: division by zero)"


# --- the committer --------------------------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal", fsync=FsyncPolicy.parse("none"))
    yield journal
    asyncio.run(journal.close())


def test_a_commit_thread_that_dies_is_reported_once(journal: Journal, caplog: pytest.LogCaptureFixture) -> None:
    faults = Faults()
    target = MemoryTarget()
    target.fail = [OSError("disk I/O error")]

    def broken_random() -> float:
        raise RuntimeError("no entropy")

    committer = Committer(journal, target, WRITER, interval_s=0.01, uniform=broken_random,
                          report=lambda reason: faults.report("committer", reason))  # fmt: skip
    faults.probe("committer", committer.fault)
    journal.append("requests", [{"id": "r1"}])
    with caplog.at_level(logging.INFO, logger="inferwatch.health"):
        committer.start()  # the failed commit's backoff draws from `uniform`, which raises outside any cycle
        wait_for("the thread to stop", lambda: committer._thread is not None and not committer._thread.is_alive())
        for _ in range(3):
            faults.current()
    reason = "the commit thread stopped (RuntimeError: no entropy); restart the collector: the journal keeps the rows"
    assert [(f.part, f.reason) for f in faults.current()] == [("committer", reason)]
    assert messages(caplog, "inferwatch.health") == [(logging.ERROR, f"committer: {reason}")]
    committer.stop()


def test_a_stuck_commit_is_reported_while_it_hangs(journal: Journal) -> None:
    release = threading.Event()

    class Hanging(MemoryTarget):
        url = "store.duckdb"

        def commit(self, writer_id: str, batches: list[Any]) -> None:
            release.wait(30)
            super().commit(writer_id, batches)

    committer = Committer(journal, Hanging(), WRITER, interval_s=0.01, stuck_after_s=0.2)
    journal.append("requests", [{"id": "r1"}])
    committer.start()
    try:
        reason = wait_for("the stuck commit", committer.fault)
        assert reason.startswith("a commit has been running since ")
        assert reason.endswith("UTC (over 0.2 s): the store store.duckdb does not answer")
        release.set()
        wait_for("the commit to finish", lambda: committer.state.committed_rows == 1)
        assert committer.fault() is None
    finally:
        release.set()
        committer.stop()


def test_commits_failing_on_a_replaced_store_file_are_a_fault_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.duckdb"
    store = Store(path)
    ingest = Ingest(store, IngestConfig(str(tmp_path / "journal"), commit_interval_s=0.05), "gw")
    aside = tmp_path / "s.aside"

    async def run() -> None:
        await ingest.start()
        try:
            ingest.append("pool_samples", [{"pool": "ref", "sampled_at": T0, "metric": "scrape_up", "value": 1.0}])
            await asyncio.to_thread(wait_for, "a first commit", lambda: ingest.committer.state.committed_rows == 1)
            path.rename(aside)
            path.write_bytes(GARBAGE)
            ingest.append("pool_samples", [{"pool": "ref", "sampled_at": T0, "metric": "scrape_up", "value": 0.0}])
            faults = await asyncio.to_thread(wait_for, "the fault", ingest.faults.current, 60.0)
            assert [f.part for f in faults] == ["committer"]
            assert faults[0].reason.startswith("commits into the store keep failing, the journal holds the rows: ")
            assert str(path) in faults[0].reason
            for _ in range(5):
                ingest.faults.current()
            path.unlink()
            aside.rename(path)
            await asyncio.to_thread(wait_for, "the recovery", lambda: ingest.committer.state.committed_rows == 2, 60.0)
            assert ingest.faults.current() == []
        finally:
            await ingest.close(timeout_s=5)
            store.close()

    with caplog.at_level(logging.INFO, logger="collector.ingest"):
        asyncio.run(run())
    said = [(level, text.split(":")[0]) for level, text in messages(caplog, "collector.ingest")]
    assert said == [(logging.ERROR, "committer"), (logging.INFO, "committer works again (it was")]


# --- the scraper ----------------------------------------------------------------------------------------------


class Refusing:
    """A row sink that refuses rows until `accept` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.accept = False

    def append(self, table: str, rows: list[dict[str, object]]) -> int:
        self.calls += 1
        if not self.accept:
            raise RuntimeError("journal: No space left on device")
        return len(rows)


def test_a_scraper_whose_rows_are_refused_is_a_fault_logged_once_and_its_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = Faults()
    sink = Refusing()
    seen: list[list[str]] = []

    async def loop() -> None:
        stop = asyncio.Event()
        dead = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens: scrape_up 0 rows, every time
        async with Scraper([Target(dead, {"arith@ref": "ref"})], sink, interval_s=0.01, faults=faults) as scraper:
            task = asyncio.create_task(scraper.run(stop))
            while sink.calls < 5:
                await asyncio.sleep(0.01)
            seen.append([f.reason for f in faults.current()])
            sink.accept = True
            calls = sink.calls
            while sink.calls < calls + 2:
                await asyncio.sleep(0.01)
            seen.append([f.reason for f in faults.current()])
            stop.set()
            await asyncio.wait_for(task, timeout=5)

    with caplog.at_level(logging.INFO, logger="collector.scraper"):
        asyncio.run(loop())
    reason = "the samples of the latest scrape could not be stored (RuntimeError: journal: No space left on device)"
    assert seen == [[reason], []]
    health = [(level, text) for level, text in messages(caplog, "collector.scraper") if text.startswith("scraper")]
    assert health == [(logging.ERROR, f"scraper: {reason}"), (logging.INFO, f"scraper works again (it was: {reason})")]
    assert all(r.exc_info is None for r in caplog.records if r.levelno >= logging.INFO)


def test_a_scraper_loop_that_is_cancelled_before_its_stop_is_a_fault() -> None:
    faults = Faults()

    async def loop() -> None:
        sink = Refusing()
        sink.accept = True
        async with Scraper([], sink, interval_s=60, faults=faults) as scraper:
            task = asyncio.create_task(scraper.run(asyncio.Event()))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(loop())
    assert [(f.part, f.reason) for f in faults.current()] == [
        ("scraper", "the scrape loop stopped (was cancelled); restart the collector")
    ]


def test_a_scraper_loop_that_hangs_is_a_fault() -> None:
    scraper = Scraper([], Refusing(), interval_s=1.0, timeout_s=1.0)
    scraper._beat = (100.0, T0)
    assert scraper.stale_after_s == 4.0  # max(3 x 1, 1 + 3 x 1)
    assert scraper.fault(now=104.0) is None
    assert scraper.fault(now=104.5) == (
        "no scrape has finished since 2026-12-01 12:00:00 UTC (over 4 s): the scrape loop hangs"
    )


# --- a real collector -----------------------------------------------------------------------------------------


def healthz(url: str) -> httpx.Response:
    return httpx.get(f"{url}/healthz", timeout=10)


def test_a_live_collector_whose_store_file_is_replaced_says_so_in_healthz_and_metrics_then_recovers(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store.duckdb"
    aside = tmp_path / "store.aside"
    with FaultyUpstream() as upstream:
        state = start_collector(tmp_path, upstream, commit_interval_s=0.2, scrape_interval_s=3600.0)
        try:
            assert healthz(state.url).status_code == 200
            flush_collector(state.url)
            store.rename(aside)
            store.write_bytes(GARBAGE)
            body = {"model": "arith@ok", "prompt": "1+1=", "max_tokens": 3}
            answer = httpx.post(f"{state.url}/v1/completions", json=body, timeout=30)
            assert answer.status_code == 200  # fail-open: the row is journaled, the client has its answer

            def committer_fault() -> httpx.Response | None:
                answer = healthz(state.url)
                return answer if any(f["part"] == "committer" for f in answer.json()["faults"]) else None

            sick = wait_for("the committer's fault in /healthz", committer_fault, 60.0)
            assert sick.status_code == 503
            data = sick.json()
            assert data["ok"] is False and data["status"] == "degraded" and data["backlog_rows"] >= 1
            [fault] = [f for f in data["faults"] if f["part"] == "committer"]
            assert fault["reason"].startswith("commits into the store keep failing, the journal holds the rows: ")
            assert str(store) in fault["reason"] and "Traceback" not in sick.text
            metrics = httpx.get(f"{state.url}/metrics", timeout=30)
            assert metrics.status_code == 200  # still answers: the gateway's metrics, the store's state down
            assert "\ninferwatch_store_state_up 0.0\n" in metrics.text
            assert 'inferwatch_requests_total{hardware="cpu",model="arith@ok",pool="ok"' in metrics.text
            for _ in range(5):
                healthz(state.url)
            store.unlink()
            aside.rename(store)

            def well() -> httpx.Response | None:  # Prometheus keeps scraping: a /metrics query's fault clears then
                httpx.get(f"{state.url}/metrics", timeout=30)
                answer = healthz(state.url)
                return answer if answer.status_code == 200 else None

            recovered = wait_for("/healthz 200", well, 90.0).json()
            assert recovered["ok"] is True and recovered["faults"] == [], recovered
            assert "\ninferwatch_store_state_up 1.0\n" in httpx.get(f"{state.url}/metrics", timeout=30).text
        finally:
            daemon.down(tmp_path / "collector.json")
    log = Path(state.log).read_text()
    assert log.count("committer: commits into the store keep failing") == 1
    assert log.count("committer works again") == 1


def test_a_collector_started_on_a_corrupt_store_reports_the_stores_error_not_a_traceback(tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    store.write_bytes(GARBAGE)
    with FaultyUpstream() as upstream, pytest.raises(CollectorError) as raised:
        start_collector(tmp_path, upstream)
    message = str(raised.value)
    assert message.startswith("the collector exited at start (1): ")
    assert str(store) in message.splitlines()[0] and "Traceback" not in message and 'File "' not in message
    assert message.endswith(f"(its log: {tmp_path / 'collector.log'})")


def test_start_error_is_the_last_exception_of_the_log_without_its_traceback() -> None:
    log = (
        "2026-12-01 12:00:00 INFO inferwatch.collector: starting\n"
        "Traceback (most recent call last):\n"
        '  File "/x/collector/service.py", line 1, in <module>\n'
        "    store = Store(config.store_url)\n"
        "collector.store.errors.StoreError: /h/s.duckdb: not a DuckDB store; move it aside\n"
    )
    assert daemon.start_error(log) == "/h/s.duckdb: not a DuckDB store; move it aside"
    assert daemon.start_error("2026-12-01 INFO nothing went wrong\n") is None


def test_collector_up_through_the_cli_on_a_corrupt_store_names_the_file_without_a_traceback(tmp_path: Path) -> None:
    write_engine(tmp_path, f"http://127.0.0.1:{free_port()}")
    store = tmp_path / "corrupt.duckdb"
    store.write_bytes(GARBAGE)
    args = ["--home", str(tmp_path), "--store", str(store), "--collector-port", str(free_port())]
    done = inferwatch("collector", "up", *args, timeout=120)
    assert done.returncode != 0, done.stdout
    assert str(store) in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "collector.json").exists()  # nothing recorded as running
