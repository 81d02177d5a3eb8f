"""Delivering the outbox: every notification as it falls due, each attempt in its own task, so that nothing one
receiver does (hang, trickle, refuse, answer nonsense) delays another or the loop.

- Each attempt has a total deadline (delivery.py) and is recorded in the store as soon as it ends; the loop
  looks at the outbox again when one ends (a delivered head lets the next notification of its group through),
  when woken (new notifications), or at the next retry time, at most `poll` later.
- Per receiver at most `concurrency` attempts are in flight; receivers do not share slots.
- At a stop, attempts in flight get up to the grace period to end; those still running then are cut off and
  recorded as `retrying`, due at once, so the next process resumes them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime

import anyio
import httpx

from collector.alerts.delivery import attempt, cut_off
from collector.alerts.outbox import AttemptRecord, Pending, attempt_rows, due, load_pending
from collector.alerts.rules import AlertConfig
from collector.store.protocols import StoreLike

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
RECORD_RESERVE_S = 1.0  # of a stop's grace period, kept for recording the attempts it cuts off


class Deliverer:
    """Attempts what the outbox holds when it falls due, and records every attempt."""

    def __init__(self, store: StoreLike, config: AlertConfig, *, clock: Clock, client: httpx.AsyncClient | None = None,
                 rng: random.Random | None = None) -> None:  # fmt: skip
        self.store = store
        self.config = config
        self.attempts: list[AttemptRecord] = []  # every attempt this deliverer made, in the order they ended
        self._http = client or httpx.AsyncClient()
        self._owns_client = client is None
        self._clock = clock
        self._rng = rng or random.Random()
        self._lanes: dict[str, asyncio.Semaphore] = {}
        self._flying: dict[str, tuple[Pending, asyncio.Task[None]]] = {}  # by notification id
        self._answered: set[str] = set()  # of those in flight, the ones whose attempt has ended (being recorded)
        self._fresh: set[str] = set()  # recorded since the outbox was last read: that read may not show it
        self._ended = asyncio.Event()  # an attempt ended (and is recorded)

    async def start_due(self) -> tuple[int, datetime | None]:
        """Start an attempt of every notification due now that has none in flight. Returns how many are
        pending (in flight included) and when the next one falls due."""
        self._fresh.clear()
        pending = await anyio.to_thread.run_sync(load_pending, self.store)
        busy = self._flying.keys() | self._fresh  # the next read shows what was just recorded
        todo, next_due = due(pending, self._clock(), self.config.delivery.max_wait_s, busy=busy)
        for p in todo:
            task = asyncio.create_task(self._one(p), name=f"alert-attempt-{p.notification.notification_id}")
            self._flying[p.notification.notification_id] = (p, task)
        return len(pending), next_due

    async def _one(self, pending: Pending) -> None:
        name, nid = pending.notification.receiver, pending.notification.notification_id
        lane = self._lanes.setdefault(name, asyncio.Semaphore(self.config.delivery.concurrency))
        try:
            async with lane:
                record = await attempt(self._http, self.config.receiver(name), pending, self.config.delivery,
                                       self._clock, self._rng)  # fmt: skip
            self._answered.add(nid)
            try:
                await anyio.to_thread.run_sync(self._record, [record])
                self._fresh.add(nid)
            except Exception:  # the store could not take the record: the outbox still holds the work
                log.exception("alert notification %s to %s: the attempt could not be recorded", nid, name)
                await asyncio.sleep(self.config.delivery.max_backoff)  # in flight meanwhile: not tried again
        finally:
            self._flying.pop(nid, None)
            self._answered.discard(nid)
            self._ended.set()

    def _record(self, records: Sequence[AttemptRecord]) -> None:
        self.store.append("alerts", attempt_rows(records))
        self.attempts += records
        for r in records:
            if r.outcome != "delivered":
                log.warning("alert notification %s to %s: attempt %d %s (%s)", r.notification_id, r.receiver,
                            r.attempt, r.outcome, r.error)  # fmt: skip

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, allowed: Callable[[], bool] = lambda: True,
                  grace_s: float = 5.0) -> None:  # fmt: skip
        """Deliver until `stop`, while `allowed()` (the lease is held); between looks at the outbox wait for the
        next due time, `poll`, an attempt's end or `wake` (new notifications, or the lease taken). Returns
        within `grace_s` of `stop` whatever the receivers do."""
        try:
            while not stop.is_set():
                wake.clear()  # before reading the outbox: what is written after it wakes the next wait
                self._ended.clear()
                next_due = None
                if allowed():
                    try:
                        _, next_due = await self.start_due()
                    except Exception:  # a store problem must not end the loop; the outbox keeps the work
                        log.exception("alert delivery: the outbox could not be read")
                await _first((stop, wake, self._ended), self._wait_s(next_due))
        finally:
            await self.settle(grace_s)

    async def drain(self, within_s: float) -> tuple[list[AttemptRecord], int]:
        """Deliver until the outbox is empty or `within_s` has passed (attempts then in flight end at their
        deadline); the attempts made and how many notifications are left pending."""
        loop = asyncio.get_running_loop()
        deadline, first = loop.time() + within_s, len(self.attempts)
        while True:
            self._ended.clear()
            left, next_due = await self.start_due()
            left_s = deadline - loop.time()
            if not left or left_s <= 0:
                break
            await _first((self._ended,), min(left_s, self._wait_s(next_due)))
        await self.settle(self.config.delivery.timeout + RECORD_RESERVE_S)
        pending = await anyio.to_thread.run_sync(load_pending, self.store)
        return self.attempts[first:], len(pending)

    async def settle(self, grace_s: float) -> None:
        """Let the attempts in flight end within `grace_s`; cut off and record those that do not."""
        if not self._flying:
            return
        await asyncio.wait([t for _, t in self._flying.values()], timeout=max(grace_s - RECORD_RESERVE_S, 0.0))
        cut = [(p, t) for nid, (p, t) in self._flying.items() if nid not in self._answered]
        recording = [t for nid, (_, t) in self._flying.items() if nid in self._answered]
        for _, task in cut:
            task.cancel()
        await asyncio.gather(*(t for _, t in cut), return_exceptions=True)
        if cut:
            why = f"cut off at shutdown after {grace_s:g}s; resumed by the next process"
            try:
                await anyio.to_thread.run_sync(self._record, [cut_off(p, self._clock(), why) for p, _ in cut])
            except Exception:  # the next process retries them anyway: they are still pending
                log.exception("alert delivery: the attempts cut off at shutdown could not be recorded")
        if recording:  # answered, their records on the way to the store
            _, late = await asyncio.wait(recording, timeout=RECORD_RESERVE_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _wait_s(self, next_due: datetime | None) -> float:
        """Until the next attempt falls due, at most `poll` (new notifications may come meanwhile)."""
        poll = self.config.delivery.poll
        if next_due is None:
            return poll
        return min(poll, max((next_due - self._clock()).total_seconds(), 0.0))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()


async def _first(events: Sequence[asyncio.Event], timeout_s: float) -> None:
    """Until one of `events` is set, at most `timeout_s`."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
