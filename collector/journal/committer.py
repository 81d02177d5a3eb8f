"""`Committer`: the thread that moves sealed journal segments into the store, exactly once.

Every `interval_s` it seals the journal and, while segments are pending, takes up to `max_segments` of them:
it asks the target which of them it already has (a crash after the store's commit but before the files were
deleted) and marks those done unread, then reads the rest and hands them to `target.commit()` as one
transaction (rows and segment markers together), then marks them done. A failed cycle keeps the segments,
logs its error once per distinct message (with the traceback) and backs off, exponentially with full jitter
over [interval_s, min(max_backoff_s, interval_s * 2**failures)]. The thread never dies from an exception.

`fault()` says what /healthz reports (collector/health.py): the thread stopped (it should not: anything it
raises outside a cycle is caught and kept as the reason), a commit running for over `stuck_after_s` (the
store hangs), or `failing_after` cycles in a row failed (the store's disk is full, its file was replaced).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from collector.journal.records import HEADER, decode_payload, encode, split_frames, table_of
from collector.journal.segments import SegmentInfo
from collector.journal.writer import Journal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmentBatch:
    """One segment's records, grouped by table and left undecoded: the store reads a table's rows as one batch
    (collector/store/json_rows.py) and decodes them one by one only when that fails."""

    segment: str  # file name
    payloads: dict[str, list[bytes]]  # table -> the records' payloads (collector/journal/records.py), in order
    torn: int  # torn/corrupt records skipped

    @classmethod
    def of_rows(cls, segment: str, rows: Mapping[str, list[dict[str, Any]]], torn: int = 0) -> SegmentBatch:
        return cls(segment, {table: [encode(table, r)[HEADER.size :] for r in rs] for table, rs in rows.items()}, torn)

    @property
    def records(self) -> int:
        return sum(len(p) for p in self.payloads.values())

    @cached_property
    def rows(self) -> dict[str, list[dict[str, Any]]]:
        """The records decoded (a payload that does not decode is left out; the store quarantines it)."""
        return {table: [r.row for r in map(decode_payload, ps) if r is not None] for table, ps in self.payloads.items()}


class CommitTarget(Protocol):
    def committed(self, writer_id: str, segments: list[str]) -> set[str]:
        """Those of `segments` the store already has from this writer."""
        ...

    def commit(self, writer_id: str, batches: list[SegmentBatch]) -> None:
        """One transaction: every batch's rows plus a marker per segment."""
        ...


@dataclass(frozen=True)
class CommitterState:
    last_error: str | None = None  # the failing cycle's error; None once a cycle succeeds
    last_commit_at: datetime | None = None  # UTC, the last cycle that moved segments
    consecutive_failures: int = 0
    failures: int = 0  # failed cycles, all time
    committed_segments: int = 0  # committed by this process (segments the store already had not counted)
    committed_rows: int = 0
    torn_records: int = 0


def read_batch(info: SegmentInfo) -> SegmentBatch:
    frames = split_frames(info.path.read_bytes())
    payloads: dict[str, list[bytes]] = {}
    corrupt = 0
    for payload in frames.payloads:
        table = table_of(payload)
        if table is None:  # not the way `encode` starts a plain table's record: decode it to know
            record = decode_payload(payload)
            if record is None:
                corrupt += 1
                continue
            table = record.table
        payloads.setdefault(table, []).append(payload)
    return SegmentBatch(info.name, payloads, frames.torn + frames.corrupt + corrupt)


def backoff_s(failures: int, interval_s: float, max_backoff_s: float, u: float) -> float:
    """The wait after `failures` consecutive failures, for a uniform draw u in [0, 1)."""
    cap = max(interval_s, min(max_backoff_s, interval_s * 2.0 ** min(failures, 60)))
    return interval_s + u * (cap - interval_s)


class Committer:
    def __init__(
        self,
        journal: Journal,
        target: CommitTarget,
        writer_id: str,
        *,
        interval_s: float = 1.0,
        max_segments: int = 8,
        max_backoff_s: float = 30.0,
        uniform: Callable[[], float] = random.random,
        stuck_after_s: float = 120.0,
        failing_after: int = 3,
        report: Callable[[str | None], None] = lambda reason: None,
    ) -> None:
        self.journal = journal
        self.target = target
        self.writer_id = writer_id
        self.interval_s = interval_s
        self.max_segments = max_segments
        self.max_backoff_s = max_backoff_s
        self._uniform = uniform
        self.stuck_after_s = stuck_after_s
        self.failing_after = failing_after
        self._report = report  # told fault() when it changes here (collector/health.py Faults.report)
        self._cycle_since: tuple[float, datetime] | None = None  # (monotonic, UTC) start of the running cycle
        self._died: str | None = None  # why the thread stopped, when it did without stop()
        self._state = CommitterState()
        self._state_lock = threading.Lock()
        self._cycle_lock = threading.Lock()  # one commit at a time: the thread's or flush()'s
        self._logged: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> CommitterState:
        return self._state

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"journal-committer-{self.writer_id}", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the commit in progress, if any); does not commit what is pending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Seal and commit everything now, retrying with backoff; True when nothing was left pending."""
        deadline = time.monotonic() + timeout_s
        while not self._cycle(stoppable=False):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, self._delay()))
        return True

    def _run(self) -> None:
        try:
            delay = self.interval_s
            while not self._stop.wait(delay):
                delay = self.interval_s if self._cycle(stoppable=True) else self._delay()
        except BaseException as exc:  # outside a cycle: nothing should raise here, but a dead thread must say so
            self._died = f"{type(exc).__name__}: {exc}"
            log.debug("journal %s: the commit thread stopped", self.journal.directory, exc_info=exc)
            self._report(self.fault())

    def fault(self, now: float | None = None) -> str | None:
        """Why committing is broken now (a monotonic `now`), or None; /healthz shows it."""
        now = time.monotonic() if now is None else now
        if self._died is not None:
            return f"the commit thread stopped ({self._died}); restart the collector: the journal keeps the rows"
        thread = self._thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            return "the commit thread is not running; restart the collector: the journal keeps the rows"
        since = self._cycle_since
        if since is not None and now - since[0] > self.stuck_after_s:
            return (
                f"a commit has been running since {since[1]:%Y-%m-%d %H:%M:%S} UTC (over {self.stuck_after_s:g} s): "
                f"the store {self.target_name} does not answer"
            )
        s = self._state
        if s.consecutive_failures >= self.failing_after:
            return f"commits into the store keep failing, the journal holds the rows: {s.last_error}"
        return None

    @property
    def target_name(self) -> str:
        return str(getattr(self.target, "url", type(self.target).__name__))

    def _delay(self) -> float:
        return backoff_s(self._state.consecutive_failures, self.interval_s, self.max_backoff_s, self._uniform())

    def _cycle(self, *, stoppable: bool) -> bool:
        """Commit until nothing is pending (or stop() is called); False, the error recorded, when a step failed."""
        try:
            with self._cycle_lock:
                self._cycle_since = (time.monotonic(), datetime.now(UTC))
                try:
                    self.journal.seal()
                    while (pending := self.journal.pending()) and not (stoppable and self._stop.is_set()):
                        self._commit(pending[: self.max_segments])
                finally:
                    self._cycle_since = None
        except Exception as exc:
            self._failed(exc)
            return False
        with self._state_lock:
            failures = self._state.consecutive_failures
            self._state = replace(self._state, consecutive_failures=0, last_error=None)
        if failures:
            log.info("journal %s: commits resumed after %d failed attempts", self.journal.directory, failures)
            self._report(self.fault())
        self._logged = None
        return True

    def _commit(self, pending: list[SegmentInfo]) -> None:
        names = [info.name for info in pending]
        have = self.target.committed(self.writer_id, names)
        for name in names:
            if name in have:
                self.journal.done(name)  # committed before a crash; its file outlived the commit
        batches = [read_batch(info) for info in pending if info.name not in have]
        if batches:
            self.target.commit(self.writer_id, batches)
            for batch in batches:
                self.journal.done(batch.segment)
        rows = sum(batch.records for batch in batches)
        with self._state_lock:
            s = self._state
            self._state = replace(
                s,
                last_commit_at=datetime.now(UTC),
                committed_segments=s.committed_segments + len(batches),
                committed_rows=s.committed_rows + rows,
                torn_records=s.torn_records + sum(batch.torn for batch in batches),
            )

    def _failed(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        with self._state_lock:
            s = self._state
            self._state = replace(
                s, last_error=message, consecutive_failures=s.consecutive_failures + 1, failures=s.failures + 1
            )
        if message != self._logged:
            self._logged = message
            log.error("journal %s: cannot commit to the store: %s", self.journal.directory, message, exc_info=exc)
        if self._state.consecutive_failures >= self.failing_after:
            self._report(self.fault())
