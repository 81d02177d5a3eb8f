"""What is wrong with the running collector now, part by part, and /healthz built from it.

Each loop of the collector (the committer thread, the scraper, the alert job, the store's state behind /metrics)
reports into one `Faults`: `report(part, reason)` when it fails, `report(part, None)` when it works again. A
part whose failure can only be seen from outside (a stuck thread, a task that ended) is either `watch`ed (an
asyncio task: its end is reported when it happens) or `probe`d (a check run at every `current()`).

Each change is logged once: a fault when it starts or its reason changes (ERROR), its recovery (INFO), never
once per scrape or second and never with a traceback. A reason should therefore say what stays true while the
fault lasts ("since 12:00:01"), not a count that grows.

/healthz is not ok (HTTP 503, "ok": false) while any fault stands or the data path is degraded; its JSON keeps
the collector's fields and adds `faults`: [{part, reason, since}].
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger("inferwatch.health")

Probe = Callable[[], str | None]  # why the part is faulty now, or None


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Fault:
    part: str  # committer, scraper, alerts, metrics/drift ...
    reason: str  # in words, with what to do where it is known
    since: datetime  # UTC, when this reason was first reported

    def to_json(self) -> dict[str, str]:
        return {"part": self.part, "reason": self.reason, "since": self.since.isoformat()}


class Faults:
    """The collector's standing faults; thread-safe (the committer reports from its thread, /metrics from a
    worker thread, the scraper from the event loop)."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._faults: dict[str, Fault] = {}
        self._probes: dict[str, tuple[Probe, logging.Logger]] = {}
        self._lock = threading.Lock()

    def report(self, part: str, reason: str | None, logger: logging.Logger = log) -> None:
        """`part` is faulty for `reason`, or (None) works. Logs only a change."""
        with self._lock:
            before = self._faults.get(part)
            if reason is None:
                self._faults.pop(part, None)
            elif before is None or before.reason != reason:
                self._faults[part] = Fault(part, reason, self._clock())
        if reason is None and before is not None:
            logger.info("%s works again (it was: %s)", part, before.reason)
        elif reason is not None and (before is None or before.reason != reason):
            logger.error("%s: %s", part, reason)

    def probe(self, part: str, check: Probe, logger: logging.Logger = log) -> None:
        """Run `check` at every current() and report what it says for `part`."""
        with self._lock:
            self._probes[part] = (check, logger)

    def watch(self, part: str, task: asyncio.Task[Any], logger: logging.Logger = log) -> None:
        """A task that should run until the collector stops: an exception or a cancellation ending it is a fault
        of `part` (reported when it ends); returning is its normal end."""

        def ended(done: asyncio.Task[Any]) -> None:
            reason = task_end(done)
            if reason is not None:
                self.report(part, reason, logger)

        task.add_done_callback(ended)

    def current(self) -> list[Fault]:
        """The standing faults, the probes run first, in order of part."""
        with self._lock:
            probes = list(self._probes.items())
        for part, (check, logger) in probes:
            try:
                reason = check()
            except Exception as exc:  # a probe that fails is itself a fault, not a 500 of /healthz
                reason = f"its health check failed ({type(exc).__name__}: {exc})"
            self.report(part, reason, logger)
        with self._lock:
            return sorted(self._faults.values(), key=lambda f: f.part)


def task_end(task: asyncio.Task[Any]) -> str | None:
    """Why a finished task ended early, or None when it returned."""
    if task.cancelled():
        return "its task was cancelled; restart the collector"
    exc = task.exception()
    if exc is None:
        return None
    return f"its task stopped: {type(exc).__name__}: {exc}; restart the collector (its log says more)"


def health_body(faults: list[Fault], details: Mapping[str, Any]) -> dict[str, Any]:
    """/healthz's JSON: `details` (the collector's fields; "status" is the data path's ok | degraded) with "ok"
    and "faults"."""
    ok = not faults and details.get("status") == "ok"
    return {"ok": ok, **details, "faults": [f.to_json() for f in faults]}


def health_response(faults: Faults, details: Mapping[str, Any]) -> JSONResponse:
    """/healthz: 200 when ok, else 503, with health_body()."""
    body = health_body(faults.current(), details)
    return JSONResponse(body, 200 if body["ok"] else 503)
