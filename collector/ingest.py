"""How the collector's rows reach the store: checked, journaled on local disk before the gateway acknowledges
(collector/journal/), committed into the store by a background thread (collector/journal/committer.py).

The journal, not RAM, absorbs a slow or absent store: memory does not grow with the backlog. The high-water
mark (`high_water_rows`) and the overflow policy decide what the gateway does when the backlog passes it or
the journal cannot be written (disk full): `fail-open` keeps serving and says so in /healthz ("degraded");
`fail-closed` refuses new requests with 503 and Retry-After and never acknowledges an unjournaled row.

`faults` is the collector's fault registry (collector/health.py): the committer reports into it as "committer"
(its thread stopped, a commit stuck, commits failing in a row), and the other loops of the process get the same
one, so that /healthz lists every fault.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.health import Faults
from collector.journal.committer import Committer
from collector.journal.segments import JournalError
from collector.journal.writer import FsyncPolicy, Journal
from collector.store.api import Store

log = logging.getLogger(__name__)

OVERFLOW = ("fail-open", "fail-closed")
JOURNAL_RETRY_S = 0.5  # after a failed journal write, how often /healthz and admission try the journal again
COMMITTER = "committer"  # its part in /healthz's faults
STUCK_AFTER_S = 120.0  # a commit running longer is a fault (the store hangs): DuckDB's lock wait is 10 s


@dataclass(frozen=True)
class IngestConfig:
    journal_dir: str
    fsync: str = "none"  # none | group:<ms> | always (docs/DESIGN.md "Store" says what each survives)
    high_water_rows: int = 500_000
    overflow: str = "fail-open"
    commit_interval_s: float = 1.0

    def check(self) -> None:
        FsyncPolicy.parse(self.fsync)
        if self.overflow not in OVERFLOW:
            raise ValueError(f"overflow {self.overflow!r}: give one of {', '.join(OVERFLOW)}")
        if self.high_water_rows < 1:
            raise ValueError(f"high_water_rows must be at least 1, got {self.high_water_rows}")


def writer_id(journal_dir: Path, name: str) -> str:
    """This journal's name in the store's segment markers: `name` and an id made once per journal directory, so
    that a journal directory made afresh (segments numbered from 1 again) is never taken for one already stored."""
    path = journal_dir / "WRITER"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        made = f"{name}-{uuid.uuid4().hex[:8]}"
        path.write_text(made + "\n")
        return made


class Ingest:
    """The collector's RowSink: `append` checks and journals; `durable` waits for the fsync policy."""

    def __init__(self, store: Store, config: IngestConfig, name: str, *, faults: Faults | None = None) -> None:
        config.check()
        self.store, self.config = store, config
        self.faults = Faults() if faults is None else faults
        self.journal = Journal(Path(config.journal_dir), fsync=FsyncPolicy.parse(config.fsync))
        self.writer_id = writer_id(Path(config.journal_dir), name)
        self.committer = Committer(
            self.journal, store, self.writer_id, interval_s=config.commit_interval_s,
            stuck_after_s=max(STUCK_AFTER_S, 10 * config.commit_interval_s),
            report=lambda reason: self.faults.report(COMMITTER, reason, log),
        )  # fmt: skip
        self.faults.probe(COMMITTER, self.committer.fault, log)
        self.unjournaled = 0  # rows that could not be journaled (fail-open: the client still had its answer)
        self._journal_tried_at = -JOURNAL_RETRY_S

    def append(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Journal the rows (checked against the store's schema); returns the journal sequence number.
        Raises StoreError for a bad row, JournalError when the journal cannot be written."""
        checked = self.store.validate(table, rows)
        try:
            return self.journal.append(table, [dict(r) for r in checked])
        except JournalError:
            self.unjournaled += len(checked)
            raise

    async def durable(self, seq: int) -> None:
        await self.journal.durable(seq)

    @property
    def fail_closed(self) -> bool:
        return self.config.overflow == "fail-closed"

    def trouble(self) -> str | None:
        """Why the data path is not healthy now, or None."""
        if self.journal.last_error and not self._journal_back():
            return f"journal {self.config.journal_dir}: {self.journal.last_error}"
        backlog = self.journal.backlog_records
        if backlog > self.config.high_water_rows:
            return f"backlog of {backlog} rows is over the high-water mark ({self.config.high_water_rows})"
        return None

    def _journal_back(self) -> bool:
        """Whether the journal takes writes again (disk space freed), tried at most every JOURNAL_RETRY_S."""
        now = time.monotonic()
        if now - self._journal_tried_at < JOURNAL_RETRY_S:
            return False
        self._journal_tried_at = now
        return self.journal.retry()

    def refusal(self) -> str | None:
        """Fail-closed and in trouble: why a new request is refused (503)."""
        return self.trouble() if self.fail_closed else None

    def health(self) -> Mapping[str, Any]:
        state = self.committer.state
        trouble = self.trouble()
        if trouble is None and state.consecutive_failures:
            trouble = f"store: {state.last_error}"
        return {
            "status": "ok" if trouble is None else "degraded", "problem": trouble,
            "writer": self.writer_id, "journal": self.config.journal_dir, "fsync": self.config.fsync,
            "overflow": self.config.overflow, "backlog_rows": self.journal.backlog_records,
            "backlog_bytes": self.journal.backlog_bytes, "high_water_rows": self.config.high_water_rows,
            "committed_rows": state.committed_rows, "torn_records": state.torn_records,
            "unjournaled_rows": self.unjournaled,
            "last_commit_at": state.last_commit_at.isoformat() if state.last_commit_at else None,
        }  # fmt: skip

    async def start(self) -> None:
        await self.journal.start()
        self.committer.start()

    async def close(self, timeout_s: float = 30.0) -> None:
        """Commit what is journaled (up to `timeout_s`; what remains replays at the next start), then stop."""
        self.committer.stop()
        try:
            if not self.committer.flush(timeout_s):
                log.warning("rows left in the journal %s for the next start", self.config.journal_dir)
        except Exception as exc:  # the store is down: the journal keeps the rows for the next start
            log.warning("rows left in the journal %s for the next start: %s", self.config.journal_dir, exc)
        await self.journal.close()
