"""`Committer` against an in-memory target: exactly once, retries with backoff, never dies, flush."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.journal.committer import Committer, SegmentBatch, backoff_s, read_batch
from collector.journal.records import encode
from collector.journal.writer import FsyncPolicy, Journal

WRITER = "gw-test-1"


class MemoryTarget:
    """A store in a dict: rows per table and segment markers per writer, one 'transaction' per commit()."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.markers: dict[str, set[str]] = {}
        self.commits: list[list[str]] = []
        self.fail: list[BaseException] = []  # raised by the next commits, first first
        self.fail_after_commit = 0  # commits that land, then raise (the connection dropped on the way back)
        self.fail_committed: list[BaseException] = []

    def committed(self, writer_id: str, segments: list[str]) -> set[str]:
        if self.fail_committed:
            raise self.fail_committed.pop(0)
        return self.markers.get(writer_id, set()) & set(segments)

    def commit(self, writer_id: str, batches: list[SegmentBatch]) -> None:
        if self.fail:
            raise self.fail.pop(0)
        for batch in batches:
            for table, rows in batch.rows.items():
                self.rows.setdefault(table, []).extend(rows)
            self.markers.setdefault(writer_id, set()).add(batch.segment)
        self.commits.append([b.segment for b in batches])
        if self.fail_after_commit:
            self.fail_after_commit -= 1
            raise ConnectionError("connection reset after COMMIT")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "journal", fsync=FsyncPolicy.parse("none"))
    yield journal
    asyncio.run(journal.close())


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _ids(target: MemoryTarget, table: str = "requests") -> list[str]:
    return [row["id"] for row in target.rows.get(table, [])]


def test_backoff_grows_from_the_interval_to_the_cap() -> None:
    assert backoff_s(1, 1.0, 30.0, 0.0) == 1.0
    assert backoff_s(1, 1.0, 30.0, 1.0) == 2.0
    assert backoff_s(2, 1.0, 30.0, 0.5) == 2.5  # uniform over [1, 4]
    assert backoff_s(4, 1.0, 30.0, 1.0) == 16.0
    assert backoff_s(5, 1.0, 30.0, 1.0) == 30.0  # 32 capped at 30
    assert backoff_s(5000, 1.0, 30.0, 0.5) == 15.5
    assert backoff_s(0, 1.0, 30.0, 0.7) == 1.0


def test_flush_commits_everything_in_journal_order(journal: Journal) -> None:
    target = MemoryTarget()
    journal.append("requests", [{"id": "a"}, {"id": "b"}])
    journal.append("probes", [{"id": "p1"}])
    journal.seal()
    journal.append("requests", [{"id": "c"}])  # still active: flush seals it
    committer = Committer(journal, target, WRITER)
    assert committer.flush(timeout_s=5)
    assert target.rows == {"requests": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "probes": [{"id": "p1"}]}
    assert target.commits == [["seg-0000000001.log", "seg-0000000002.log"]]
    assert journal.pending() == []
    assert journal.backlog_records == 0
    state = committer.state
    assert (state.committed_segments, state.committed_rows, state.torn_records) == (2, 4, 0)
    assert state.last_commit_at is not None
    assert committer.flush(timeout_s=5)  # nothing left: no empty commit
    assert len(target.commits) == 1


def test_max_segments_per_transaction(journal: Journal) -> None:
    target = MemoryTarget()
    for i in range(5):
        journal.append("requests", [{"id": f"r{i}"}])
        journal.seal()
    assert Committer(journal, target, WRITER, max_segments=2).flush(timeout_s=5)
    assert [len(c) for c in target.commits] == [2, 2, 1]
    assert _ids(target) == [f"r{i}" for i in range(5)]


def test_exactly_once_when_the_store_already_has_a_segment(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = Journal(directory, fsync=FsyncPolicy.parse("none"))
    journal.append("requests", [{"id": "a"}])
    journal.seal()
    journal.append("requests", [{"id": "b"}])
    asyncio.run(journal.close())
    target = MemoryTarget()
    journal = Journal(directory, fsync=FsyncPolicy.parse("none"))
    # the crash: the store committed seg 1 (rows and marker), the process died before deleting the file
    target.commit(WRITER, [read_batch(journal.pending()[0])])
    committer = Committer(journal, target, WRITER)
    assert committer.flush(timeout_s=5)
    assert _ids(target) == ["a", "b"]
    assert target.markers[WRITER] == {"seg-0000000001.log", "seg-0000000002.log"}
    assert committer.state.committed_segments == 1  # only seg 2 was committed by this committer
    assert journal.pending() == []
    assert list(directory.glob("seg-*")) == []
    asyncio.run(journal.close())


def test_a_commit_that_lands_but_reports_failure_is_not_repeated(journal: Journal) -> None:
    target = MemoryTarget()
    target.fail_after_commit = 1
    journal.append("requests", [{"id": "a"}])
    committer = Committer(journal, target, WRITER, interval_s=0.001)
    assert committer.flush(timeout_s=5)
    assert _ids(target) == ["a"]
    assert committer.state.failures == 1


def test_markers_are_per_writer(journal: Journal) -> None:
    target = MemoryTarget()
    target.markers["gw-other"] = {"seg-0000000001.log"}  # another gateway's seg 1 is not ours
    journal.append("requests", [{"id": "a"}])
    assert Committer(journal, target, WRITER).flush(timeout_s=5)
    assert _ids(target) == ["a"]


def test_torn_records_are_counted(tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    (directory / "seg-0000000007.log").write_bytes(
        encode("requests", {"id": "a"}) + encode("requests", {"id": "b"})[:5]
    )
    journal = Journal(directory, fsync=FsyncPolicy.parse("none"))
    target = MemoryTarget()
    committer = Committer(journal, target, WRITER)
    assert committer.flush(timeout_s=5)
    assert _ids(target) == ["a"]
    assert (committer.state.torn_records, committer.state.committed_rows) == (1, 1)
    journal.append("requests", [{"id": "c"}])
    journal.seal()
    assert [i.name for i in journal.pending()] == ["seg-0000000008.log"]
    asyncio.run(journal.close())


def test_failures_keep_the_segments_and_flush_gives_up_at_its_timeout(journal: Journal) -> None:
    target = MemoryTarget()
    target.fail = [RuntimeError("store down")] * 1000
    journal.append("requests", [{"id": "a"}, {"id": "b"}])
    committer = Committer(journal, target, WRITER, interval_s=0.01, max_backoff_s=0.02)
    assert not committer.flush(timeout_s=0.1)
    state = committer.state
    assert state.last_error == "RuntimeError: store down"
    assert state.consecutive_failures == state.failures >= 2
    assert state.committed_rows == 0
    assert [i.records for i in journal.pending()] == [2]
    assert journal.backlog_records == 2
    target.fail = []
    assert committer.flush(timeout_s=5)
    assert (committer.state.consecutive_failures, committer.state.last_error) == (0, None)
    assert _ids(target) == ["a", "b"]


def test_the_thread_retries_with_backoff_logs_once_and_never_dies(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    target = MemoryTarget()
    target.fail = [RuntimeError("store down")] * 3 + [ValueError("poison")]
    target.fail_committed = [KeyError("surprise")]  # not a store error at all: still survived
    draws: list[float] = []

    def uniform() -> float:
        draws.append(1.0)
        return 1.0

    journal.append("requests", [{"id": "a"}])
    committer = Committer(journal, target, WRITER, interval_s=0.005, max_backoff_s=0.02, uniform=uniform)
    with caplog.at_level(logging.ERROR, logger="collector.journal.committer"):
        committer.start()
        try:
            _until(lambda: committer.state.committed_rows == 1)
            journal.append("requests", [{"id": "b"}])
            _until(lambda: committer.state.committed_rows == 2)
        finally:
            committer.stop()
    state = committer.state
    assert (state.failures, state.consecutive_failures, state.last_error) == (5, 0, None)
    assert len(draws) == 5  # one backoff per failure
    assert _ids(target) == ["a", "b"]
    logged = [r.getMessage().rsplit(": ", 2)[-2:] for r in caplog.records]
    assert logged == [["KeyError", "'surprise'"], ["RuntimeError", "store down"], ["ValueError", "poison"]]
    assert all(r.exc_info is not None for r in caplog.records)


def test_stop_ends_the_thread(journal: Journal) -> None:
    committer = Committer(journal, MemoryTarget(), WRITER, interval_s=0.005)
    committer.start()
    thread = committer._thread
    assert thread is not None and thread.is_alive()
    committer.stop()
    assert not thread.is_alive()
