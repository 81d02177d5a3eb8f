"""The journal directory and `Journal`: lock, segment names, backlog counts, fsync policies, faults, SIGKILL."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from collector.journal.records import encode
from collector.journal.segments import JournalError, read_segment
from collector.journal.writer import FsyncMode, FsyncPolicy, Journal

ROOT = Path(__file__).resolve().parents[3]
NONE = FsyncPolicy.parse("none")


def _size(*rows: dict[str, Any]) -> int:
    return sum(len(encode("requests", row)) for row in rows)


def _ids(journal: Journal) -> list[str]:
    return [r.row["id"] for info in journal.pending() for r in read_segment(info.path).records]


class FsyncCounter:
    """os.fsync that counts the calls on files and on directories, then really syncs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: OSError | None = None) -> None:
        self.files = self.dirs = 0
        self.fail = fail
        self.gate = threading.Event()  # clear it to hold every fsync until it is set again
        self.gate.set()
        self._real: Callable[[int], None] = os.fsync
        monkeypatch.setattr(os, "fsync", self)

    def __call__(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.dirs += 1
        else:
            self.files += 1
        assert self.gate.wait(timeout=10)
        if self.fail is not None:
            raise self.fail
        self._real(fd)


def test_policy_parse() -> None:
    assert FsyncPolicy.parse("none") == FsyncPolicy(FsyncMode.none)
    assert FsyncPolicy.parse(" Always ") == FsyncPolicy(FsyncMode.always)
    assert FsyncPolicy.parse("group:20") == FsyncPolicy(FsyncMode.group, 20)
    assert str(FsyncPolicy.parse("group:5")) == "group:5"
    for bad in ["", "group", "group:0", "group:-1", "group:1.5", "sometimes", "group:60001"]:
        with pytest.raises(ValueError, match=r"--journal-fsync .*expected 'none', 'group:<ms>'.* or 'always'"):
            FsyncPolicy.parse(bad, setting="--journal-fsync")


def test_a_second_journal_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path, fsync=NONE)
    with pytest.raises(JournalError) as err:
        Journal(tmp_path, fsync=NONE)
    assert str(err.value) == f"{tmp_path}: journal in use by pid {os.getpid()}; give each gateway its own --journal-dir"
    asyncio.run(first.close())
    asyncio.run(Journal(tmp_path, fsync=NONE).close())  # free again once closed


def test_segments_are_named_in_order_and_seq_continues_after_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync=NONE)
    assert journal.append("requests", [{"id": "a"}, {"id": "b"}]) == 2
    journal.seal()
    journal.seal()  # nothing active: no empty segment
    assert journal.append("requests", [{"id": "c"}]) == 3
    assert journal.append("requests", []) == 3
    asyncio.run(journal.close())
    assert sorted(p.name for p in tmp_path.glob("seg-*")) == ["seg-0000000001.log", "seg-0000000002.log"]

    journal = Journal(tmp_path, fsync=NONE)
    assert [i.name for i in journal.pending()] == ["seg-0000000001.log", "seg-0000000002.log"]
    assert _ids(journal) == ["a", "b", "c"]
    for info in journal.pending():
        journal.done(info.name)
    assert list(tmp_path.glob("seg-*")) == []
    asyncio.run(journal.close())

    journal = Journal(tmp_path, fsync=NONE)  # every segment deleted: SEQ still says where to go on
    journal.append("requests", [{"id": "d"}])
    journal.seal()
    assert [i.name for i in journal.pending()] == ["seg-0000000003.log"]
    asyncio.run(journal.close())


def test_backlog_counts_after_appends_seal_done_and_reopen(tmp_path: Path) -> None:
    a, b, c = {"id": "a"}, {"id": "bb", "n": 1}, {"id": "ccc", "x": None}
    journal = Journal(tmp_path, fsync=NONE)
    assert (journal.backlog_records, journal.backlog_bytes) == (0, 0)
    journal.append("requests", [a, b])
    assert (journal.backlog_records, journal.backlog_bytes) == (2, _size(a, b))
    journal.seal()
    [first] = journal.pending()
    assert (first.records, first.bytes) == (2, _size(a, b))
    journal.append("requests", [c])
    assert (journal.backlog_records, journal.backlog_bytes) == (3, _size(a, b, c))
    journal.done(first.name)
    assert (journal.backlog_records, journal.backlog_bytes) == (1, _size(c))
    with pytest.raises(ValueError, match=r"seg-0000000001\.log is not a sealed, pending segment"):
        journal.done(first.name)
    asyncio.run(journal.close())

    with (tmp_path / "seg-0000000002.log").open("ab") as f:  # a crash cut the next append short
        f.write(encode("requests", {"id": "torn"})[:9])
    journal = Journal(tmp_path, fsync=NONE)
    [left] = journal.pending()
    assert (left.name, left.records, left.bytes) == ("seg-0000000002.log", 1, _size(c) + 9)
    assert (journal.backlog_records, journal.backlog_bytes) == (1, _size(c) + 9)
    asyncio.run(journal.close())


def test_a_segment_seals_itself_past_segment_bytes(tmp_path: Path) -> None:
    row = {"id": "x" * 50}
    one = _size(row)
    journal = Journal(tmp_path, fsync=NONE, segment_bytes=2 * one + 1)
    for _ in range(7):
        journal.append("requests", [row])
    # 3 records pass 2*one+1 bytes: two full segments, one record active
    assert [(i.name, i.records) for i in journal.pending()] == [("seg-0000000001.log", 3), ("seg-0000000002.log", 3)]
    assert journal.backlog_records == 7
    asyncio.run(journal.close())


def test_group_durable_waits_for_an_fsync_that_covers_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncCounter(monkeypatch)

    async def go() -> None:
        journal = Journal(tmp_path, fsync=FsyncPolicy.parse("group:20"))
        await journal.start()
        fsyncs.gate.clear()
        waiter = asyncio.create_task(journal.durable(journal.append("requests", [{"id": "a"}])))
        for _ in range(1000):  # until the ticker's fsync has begun (and is held)
            if fsyncs.files:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        assert not waiter.done()
        assert (fsyncs.files, fsyncs.dirs) == (1, 0)
        fsyncs.gate.set()
        await waiter
        assert (fsyncs.files, fsyncs.dirs) == (1, 1)  # the segment, and the directory that got it

        async def one(i: int) -> None:
            await journal.durable(journal.append("requests", [{"id": f"r{i}"}]))

        await asyncio.gather(*(one(i) for i in range(50)))
        assert (fsyncs.files, fsyncs.dirs) == (2, 1)  # 50 appends, 50 waiters, one fsync
        await asyncio.sleep(0.1)
        assert fsyncs.files == 2  # nothing new: the ticker does not sync again
        await journal.close()

    asyncio.run(go())


def test_group_durable_needs_start(tmp_path: Path) -> None:
    async def go() -> None:
        journal = Journal(tmp_path, fsync=FsyncPolicy.parse("group:5"))
        with pytest.raises(JournalError, match="start"):
            await journal.durable(journal.append("requests", [{"id": "a"}]))
        await journal.close()

    asyncio.run(go())


def test_always_fsyncs_each_durable_and_concurrent_waiters_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs = FsyncCounter(monkeypatch)

    async def go() -> None:
        journal = Journal(tmp_path, fsync=FsyncPolicy.parse("always"))
        for i in range(3):
            await journal.durable(journal.append("requests", [{"id": f"a{i}"}]))
        assert (fsyncs.files, fsyncs.dirs) == (3, 1)
        await journal.durable(2)  # already covered
        assert fsyncs.files == 3
        seqs = [journal.append("requests", [{"id": f"b{i}"}]) for i in range(10)]
        await asyncio.gather(*(journal.durable(seq) for seq in seqs))
        assert fsyncs.files == 4
        await journal.close()
        assert fsyncs.files == 5  # close syncs once more

    asyncio.run(go())


def test_none_never_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncCounter(monkeypatch)

    async def go() -> None:
        journal = Journal(tmp_path, fsync=NONE)
        await journal.start()
        for i in range(5):
            await journal.durable(journal.append("requests", [{"id": f"a{i}"}]))
        journal.seal()
        await journal.close()

    asyncio.run(go())
    assert (fsyncs.files, fsyncs.dirs) == (0, 0)


def test_disk_full_names_the_dir_and_appends_work_once_it_clears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path, fsync=NONE)
    journal.append("requests", [{"id": "a"}, {"id": "b"}])
    real_write = os.write
    full = [True]

    def write(fd: int, data: Any) -> int:
        if full[0] and os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            if len(data) > 4:
                return real_write(fd, data[: len(data) // 2])  # half lands, the rest finds the disk full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(JournalError) as err:
        journal.append("requests", [{"id": "c"}])
    assert str(err.value) == f"{tmp_path}: cannot append to the journal ([Errno 28] No space left on device)"
    assert journal.last_error == str(err.value)
    assert journal.backlog_records == 2
    [sealed] = journal.pending()  # the half-written record was cut away and the segment sealed
    read = read_segment(sealed.path)
    assert ([r.row["id"] for r in read.records], read.torn, sealed.records) == (["a", "b"], 0, 2)
    with pytest.raises(JournalError, match="No space left"):  # a fresh segment fails the same way, and is removed
        journal.append("requests", [{"id": "d"}])
    assert sorted(p.name for p in tmp_path.glob("seg-*")) == ["seg-0000000001.log"]

    full[0] = False
    assert journal.append("requests", [{"id": "e"}]) == 3
    assert journal.last_error is None
    journal.seal()
    assert _ids(journal) == ["a", "b", "e"]
    assert journal.backlog_records == 3
    asyncio.run(journal.close())


def test_a_failed_fsync_fails_durable_and_sets_last_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsyncs = FsyncCounter(monkeypatch, fail=OSError(errno.EIO, os.strerror(errno.EIO)))

    async def go() -> None:
        journal = Journal(tmp_path, fsync=FsyncPolicy.parse("group:5"))
        await journal.start()
        with pytest.raises(JournalError, match=r"cannot fsync the journal \(\[Errno 5\] Input/output error\)"):
            await journal.durable(journal.append("requests", [{"id": "a"}]))
        assert journal.last_error is not None
        assert str(tmp_path) in journal.last_error
        fsyncs.fail = None
        await journal.durable(journal.append("requests", [{"id": "b"}]))  # the ticker survived
        assert journal.last_error is None
        await journal.close()

    asyncio.run(go())


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path, fsync=NONE)
    asyncio.run(journal.close())
    with pytest.raises(JournalError, match="closed"):
        journal.append("requests", [{"id": "a"}])


CHILD = """
import sys
from pathlib import Path
from collector.journal.writer import FsyncPolicy, Journal
journal = Journal(Path(sys.argv[1]), fsync=FsyncPolicy.parse("none"), segment_bytes=4096)
i = 0
while True:
    seq = journal.append("requests", [{"id": f"r{i}", "pad": "x" * 100}])
    print(seq, f"r{i}", flush=True)
    i += 1
"""


def test_sigkill_loses_no_record_whose_append_returned(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        acknowledged = []
        for line in child.stdout:
            acknowledged.append(line.split()[1])
            if len(acknowledged) == 500:
                child.send_signal(signal.SIGKILL)
                break
        acknowledged += [line.split()[1] for line in child.stdout if line.endswith("\n")]  # whole lines only
        assert child.wait(timeout=30) == -signal.SIGKILL

    journal = Journal(tmp_path, fsync=NONE)
    found = _ids(journal)
    assert len(journal.pending()) > 5  # several sealed segments and the leftover active one
    assert found[: len(acknowledged)] == acknowledged  # each acknowledged record, in order, once
    assert len(found) - len(acknowledged) <= 1  # at most the one appended but not yet printed
    assert found == [f"r{i}" for i in range(len(found))]
    assert journal.backlog_records == len(found)
    asyncio.run(journal.close())
