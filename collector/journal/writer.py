"""`Journal`: appends rows to the active segment, seals segments for the committer, and makes them durable.

`append()` runs on the gateway's event loop and returns once the records are written to the file (the page
cache); `durable(seq)` then waits as long as the fsync policy asks. What each policy survives:

- `none`: write() only. Survives a process crash, SIGKILL and the OOM killer (the kernel holds the pages);
  a power loss or kernel crash may lose the last seconds.
- `group:<ms>`: an fsync every <ms> ms (when there is anything to sync); `durable()` resumes after the fsync
  that covers its record. Survives power loss for every record whose `durable()` returned.
- `always`: each `durable()` fsyncs; waiters that arrive while an fsync runs share the next one.

fsync runs in a worker thread (anyio.to_thread), never on the loop. A threading.Lock guards the active
segment and the counters between the loop and the committer thread, held only for a write or a seal, never
for an fsync or a store write. Under the fsync policies a sealed segment's file stays open until an fsync pass
has covered it, so a pass never touches a closed descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio.to_thread

from collector.journal.records import encode
from collector.journal.segments import JournalDir, JournalError, SegmentFile, SegmentInfo


class FsyncMode(StrEnum):
    none = "none"
    group = "group"
    always = "always"


_GROUP = re.compile(r"group:(\d+)")


@dataclass(frozen=True)
class FsyncPolicy:
    mode: FsyncMode
    interval_ms: int = 0  # group only

    @classmethod
    def parse(cls, text: str, *, setting: str = "journal fsync") -> FsyncPolicy:
        value = text.strip().lower()
        if value in (FsyncMode.none, FsyncMode.always):
            return cls(FsyncMode(value))
        if (m := _GROUP.fullmatch(value)) and 1 <= int(m[1]) <= 60_000:
            return cls(FsyncMode.group, int(m[1]))
        raise ValueError(
            f"{setting} {text!r}: expected 'none', 'group:<ms>' with 1 <= ms <= 60000 (e.g. group:10) or 'always'"
        )

    def __str__(self) -> str:
        return f"group:{self.interval_ms}" if self.mode is FsyncMode.group else str(self.mode)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a shared future's exception as seen, for the case where every waiter was cancelled."""
    if not fut.cancelled():
        fut.exception()


class Journal:
    def __init__(self, directory: Path, *, fsync: FsyncPolicy, segment_bytes: int = 4 << 20) -> None:
        self.directory = Path(directory)
        self.policy = fsync
        self.segment_bytes = segment_bytes
        self._dir = JournalDir(self.directory)
        self._lock = threading.Lock()
        self._active: SegmentFile | None = None
        self._sealed = {info.name: info for info in self._dir.leftover}
        self._sealed_records = sum(info.records for info in self._dir.leftover)
        self._sealed_bytes = sum(info.bytes for info in self._dir.leftover)
        self._unsynced: list[SegmentFile] = []  # sealed, still open, waiting for an fsync pass
        self._dir_dirty = False  # a segment was created since the last pass
        self._seq = 0  # records appended by this process
        self._synced = 0  # records covered by a finished fsync pass
        self._last_error: str | None = None
        self._closed = False
        self._ticker: asyncio.Task[None] | None = None
        self._ticker_sleeping = False
        self._stopping = False
        self._pass: asyncio.Future[None] | None = None  # always: the fsync in flight
        self._group_waiters: asyncio.Future[None] | None = None  # group: resolved by the next pass

    # --- appending (the event loop) ---

    def append(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Write the rows as records to the active segment; returns the last record's sequence number."""
        data = b"".join([encode(table, row) for row in rows])  # TypeError before anything is written
        with self._lock:
            if self._closed:
                raise JournalError(f"{self.directory}: the journal is closed")
            if not rows:
                return self._seq
            try:
                segment = self._active or self._open_segment()
                segment.write(data, len(rows))
            except OSError as exc:
                self._last_error = f"{self.directory}: cannot append to the journal ({exc})"
                self._drop_active()
                raise JournalError(self._last_error) from exc
            self._seq += len(rows)
            self._last_error = None
            if segment.bytes >= self.segment_bytes:
                self._seal_locked()
            return self._seq

    def retry(self) -> bool:
        """After a failed append: whether the journal takes writes again (a block can be written in its directory);
        if so the error is cleared. Nothing else clears it but an append that works, and a fail-closed gateway
        attempts none while it refuses every request on that error."""
        with self._lock:
            if self._last_error is None or self._closed:
                return self._last_error is None
            try:
                self._dir.probe()
            except OSError:
                return False
            self._last_error = None
            return True

    def _open_segment(self) -> SegmentFile:
        self._active = self._dir.create()
        self._dir_dirty = True
        return self._active

    def _drop_active(self) -> None:
        """After a failed write: seal what the segment holds (or delete it if empty) and start anew next time."""
        segment = self._active
        if segment is None:
            return
        if segment.records:
            self._seal_locked()
            return
        self._active = None
        self._retire(segment)
        with contextlib.suppress(OSError):
            self._dir.remove(segment.name)

    # --- segments (the committer thread, or anyone) ---

    def seal(self) -> None:
        """Close the active segment, if it holds records, so the committer may take it."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        segment, self._active = self._active, None
        if segment is None:
            return
        info = segment.info()
        self._sealed[info.name] = info
        self._sealed_records += info.records
        self._sealed_bytes += info.bytes
        self._retire(segment)

    def _retire(self, segment: SegmentFile) -> None:
        if self.policy.mode is FsyncMode.none:
            segment.close()
        else:
            self._unsynced.append(segment)

    def pending(self) -> list[SegmentInfo]:
        """Sealed segments not yet done, oldest first."""
        with self._lock:
            return sorted(self._sealed.values(), key=lambda info: info.name)

    def done(self, name: str) -> None:
        """Delete a segment the store has committed."""
        with self._lock:
            info = self._sealed.pop(name, None)
            if info is None:
                raise ValueError(f"{self.directory}: {name} is not a sealed, pending segment")
            self._sealed_records -= info.records
            self._sealed_bytes -= info.bytes
        try:
            self._dir.remove(name)
        except OSError as exc:
            raise JournalError(f"{self.directory}: cannot delete the committed segment {name} ({exc})") from exc

    @property
    def backlog_records(self) -> int:
        with self._lock:
            return self._sealed_records + (self._active.records if self._active else 0)

    @property
    def backlog_bytes(self) -> int:
        with self._lock:
            return self._sealed_bytes + (self._active.bytes if self._active else 0)

    @property
    def last_error(self) -> str | None:
        return self._last_error

    # --- durability ---

    def _sync_pass(self) -> int:
        """fsync everything written so far (in a worker thread); returns the sequence number it covers."""
        with self._lock:
            target, active = self._seq, self._active
            retired, self._unsynced = self._unsynced, []
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for segment in [*retired, *([active] if active else [])]:
                segment.fsync()
            if dir_dirty:
                self._dir.fsync()
        except OSError as exc:
            with self._lock:
                self._dir_dirty |= dir_dirty
                self._last_error = f"{self.directory}: cannot fsync the journal ({exc})"
            raise JournalError(self._last_error) from exc
        finally:
            for segment in retired:
                segment.close()
        return target

    async def _run_pass(self) -> None:
        target = await anyio.to_thread.run_sync(self._sync_pass)
        self._synced = max(self._synced, target)

    def _always_pass(self) -> asyncio.Future[None]:
        if self._pass is None or self._pass.done():
            self._pass = asyncio.ensure_future(self._run_pass())
            self._pass.add_done_callback(_retrieve)
        return self._pass

    def _next_group_pass(self) -> asyncio.Future[None]:
        if self._ticker is None or self._ticker.done():
            raise JournalError(f"{self.directory}: group fsync needs `await journal.start()` before durable()")
        if self._group_waiters is None:
            self._group_waiters = asyncio.get_running_loop().create_future()
            self._group_waiters.add_done_callback(_retrieve)
        return self._group_waiters

    async def durable(self, seq: int) -> None:
        """Return once record `seq` is as durable as the policy says; JournalError if the fsync failed."""
        if self.policy.mode is FsyncMode.none:
            return
        seq = min(seq, self._seq)  # a number this journal never handed out must not wait forever
        while self._synced < seq:
            fut = self._always_pass() if self.policy.mode is FsyncMode.always else self._next_group_pass()
            await asyncio.shield(fut)

    async def _group_pass(self) -> None:
        waiters, self._group_waiters = self._group_waiters, None
        if waiters is None and self._synced >= self._seq and not self._unsynced and not self._dir_dirty:
            return
        try:
            await self._run_pass()
        except Exception as exc:  # JournalError (last_error says it); the ticker must outlive it
            if waiters is not None:
                waiters.set_exception(exc)
            return
        if waiters is not None:
            waiters.set_result(None)

    async def _tick(self, interval_s: float) -> None:
        while not self._stopping:
            self._ticker_sleeping = True
            try:
                await asyncio.sleep(interval_s)
            finally:
                self._ticker_sleeping = False
            await self._group_pass()

    async def start(self) -> None:
        """Start the group-fsync task (a no-op for the other policies)."""
        if self.policy.mode is FsyncMode.group and self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(self.policy.interval_ms / 1000))

    async def close(self) -> None:
        """Stop appends, seal the active segment, fsync (unless the policy is none) and release the directory."""
        with self._lock:
            self._closed = True
            self._seal_locked()
        try:
            await self._stop_ticker()
            if self.policy.mode is not FsyncMode.none:
                await self._final_pass()
        finally:
            for segment in self._unsynced:
                segment.close()
            self._unsynced = []
            self._dir.close()

    async def _final_pass(self) -> None:
        if self._pass is not None:
            with contextlib.suppress(JournalError):
                await self._pass
        waiters, self._group_waiters = self._group_waiters, None
        try:
            await self._run_pass()
        except JournalError as exc:
            if waiters is not None:
                waiters.set_exception(exc)
            raise
        if waiters is not None:
            waiters.set_result(None)

    async def _stop_ticker(self) -> None:
        self._stopping = True
        if self._ticker is None:
            return
        if self._ticker_sleeping:
            self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        self._ticker = None
