"""The journal directory: one process's segment files, its lock, and the sequence that names the segments.

`<dir>/LOCK` holds an exclusive `flock` (and the holder's pid) for as long as the journal is open: one process
per directory. Segments are `seg-<seq:010d>.log`; a sequence number is never reused, even once every segment
has been committed and deleted: `<dir>/SEQ` keeps the last one handed out. The segments found at open (a
leftover active one from a crash included) are all sealed and pending.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from collector.journal.records import SegmentRead, read_records

SEGMENT_NAME = re.compile(r"seg-(\d{10})\.log")


class JournalError(RuntimeError):
    """A journal that cannot be opened, appended to or synced; the message names the directory and the cause."""


@dataclass(frozen=True)
class SegmentInfo:
    name: str  # seg-0000000001.log
    path: Path
    records: int  # records that read back (torn and corrupt ones not counted)
    bytes: int


def segment_name(seq: int) -> str:
    return f"seg-{seq:010d}.log"


def read_segment(path: Path) -> SegmentRead:
    return read_records(path.read_bytes())


class SegmentFile:
    """One segment open for appending: raw writes (no Python buffer), its own record and byte counts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.records = 0
        self.bytes = 0

    def write(self, data: bytes, records: int) -> None:
        """Append whole frames; on an error, cut the file back to its last whole record and raise."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self.bytes)
            raise
        self.records += records
        self.bytes += len(data)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def info(self) -> SegmentInfo:
        return SegmentInfo(self.name, self.path, self.records, self.bytes)


def _lock(directory: Path) -> int:
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise JournalError(
            f"{directory}: journal in use by pid {holder}; give each gateway its own --journal-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class JournalDir:
    """The directory, locked for this process; `leftover` lists the segments found at open, oldest first."""

    def __init__(self, directory: Path) -> None:
        self.path = directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # rows are for this user only
            self._lock_fd = _lock(directory)
        except OSError as exc:
            raise JournalError(f"{directory}: cannot open the journal ({exc})") from None
        try:
            self.leftover, self.last_seq = self._scan()
        except (OSError, ValueError) as exc:  # ValueError: a SEQ file that holds no number
            self.close()
            raise JournalError(f"{directory}: cannot read the journal ({exc})") from None

    def _scan(self) -> tuple[list[SegmentInfo], int]:
        found = sorted((int(m[1]), p) for p in self.path.iterdir() if (m := SEGMENT_NAME.fullmatch(p.name)))
        leftover = [SegmentInfo(p.name, p, len(read_segment(p).records), p.stat().st_size) for _, p in found]
        seq_file = self.path / "SEQ"
        kept = int(seq_file.read_text().strip() or 0) if seq_file.exists() else 0
        return leftover, max([kept, *(seq for seq, _ in found)])

    def create(self) -> SegmentFile:
        """A new, empty segment under the next sequence number (recorded in SEQ first, so it is never reused)."""
        seq = self.last_seq + 1
        tmp = self.path / "SEQ.tmp"
        tmp.write_text(f"{seq}\n")
        os.replace(tmp, self.path / "SEQ")
        self.last_seq = seq
        return SegmentFile(self.path / segment_name(seq))

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def probe(self) -> None:
        """Write one block to a scratch file and remove it: OSError while the directory takes no writes (disk full)."""
        path = self.path / "PROBE"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                if os.write(fd, bytes(4096)) < 4096:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            finally:
                os.close(fd)
        finally:
            path.unlink(missing_ok=True)

    def fsync(self) -> None:
        """Make the directory's entries (new segments, SEQ) durable."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
