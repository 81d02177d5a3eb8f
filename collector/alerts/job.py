"""Running the alerts: evaluate the rules over the store, keep the changes and the notifications they call for,
deliver the outbox. In the collector (`AlertJob.run`, every `interval_s`, deliveries as they fall due) or once
(`check_once`, for `inferwatch alerts check` and the demo). Only one of them should evaluate a store at a time:
every gateway given alert rules runs an AlertJob, and among them the one holding the store's lease "alerts"
(collector/store/leases.py; renewed every interval, ttl 3 intervals) evaluates and delivers; the others stand by
and take over when it stops renewing. The collector reports in /healthz (`alerts`) whether it holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import httpx

from collector.alerts.delivery import attempt
from collector.alerts.evaluate import Alert, Change, describe, evaluate, subject_of
from collector.alerts.outbox import (
    AttemptRecord,
    Pending,
    attempt_rows,
    due,
    load_active,
    load_pending,
    outbox_rows,
    state_rows,
)
from collector.alerts.payload import Notification, notifications
from collector.alerts.rules import AlertConfig
from collector.alerts.sources import read_samples
from collector.store.leases import Lease, LeaseStore
from collector.store.protocols import StoreLike

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
ALERTS_LEASE = "alerts"  # the lease's name in the store
LEASE_INTERVALS = 3  # the lease's ttl, in evaluation intervals: a holder may miss two renewals


def alert_lease(store: LeaseStore, holder: str, interval_s: float) -> Lease:
    """The lease that lets one of N gateways evaluate and deliver (holder: the gateway's journal writer id)."""
    return Lease(store, ALERTS_LEASE, holder, ttl_s=LEASE_INTERVALS * interval_s)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Evaluation:
    at: datetime
    changes: list[Change]
    notifications: list[Notification]


def evaluate_once(store: StoreLike, config: AlertConfig, now: datetime, external_url: str = "") -> Evaluation:
    """Read the store, step every rule, write the changes and the outbox rows (stored before returning)."""
    changes = evaluate(config, read_samples(store, config.rules, now), load_active(store), now)
    made = notifications(config, changes, now, external_url)
    # one transaction: a state change is never stored without the notification it makes
    store.append_all([("alerts", state_rows(changes, now)), ("alert_outbox", outbox_rows(made))])
    return Evaluation(now, changes, made)


@dataclass(frozen=True)
class Round:
    attempts: list[AttemptRecord]
    pending: int  # notifications still undelivered after this round
    next_due: datetime | None


class Deliverer:
    """Attempts what the outbox holds when it falls due, and records every attempt."""

    def __init__(self, store: StoreLike, config: AlertConfig, *, client: httpx.AsyncClient | None = None,
                 clock: Clock = utcnow, rng: random.Random | None = None) -> None:  # fmt: skip
        self.store = store
        self.config = config
        self._http = client or httpx.AsyncClient()
        self._owns_client = client is None
        self._clock = clock
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(config.delivery.concurrency)

    async def deliver_due(self) -> Round:
        pending = await anyio.to_thread.run_sync(load_pending, self.store)
        todo, next_due = due(pending, self._clock())
        records = list(await asyncio.gather(*(self._attempt(p) for p in todo)))
        if records:
            await anyio.to_thread.run_sync(self._record, records)
        left = len(pending) - sum(r.outcome != "retrying" for r in records)
        times = [t for t in (next_due, *(r.next_attempt_at for r in records)) if t is not None]
        return Round(records, left, min(times, default=None))

    async def _attempt(self, pending: Pending) -> AttemptRecord:
        async with self._slots:
            receiver = self.config.receiver(pending.notification.receiver)
            return await attempt(self._http, receiver, pending, self.config.delivery, self._clock, self._rng)

    def _record(self, records: Sequence[AttemptRecord]) -> None:
        self.store.append("alerts", attempt_rows(records))
        for r in records:
            if r.outcome != "delivered":
                log.warning("alert notification %s to %s: attempt %d %s (%s)", r.notification_id, r.receiver,
                            r.attempt, r.outcome, r.error)  # fmt: skip

    async def run(self, stop: asyncio.Event, wake: asyncio.Event, allowed: Callable[[], bool] = lambda: True) -> None:
        """Deliver until `stop`, while `allowed()` (the lease is held); between rounds wait for the next due time,
        `poll`, or `wake` (new notifications, or the lease taken)."""
        while not stop.is_set():
            if not allowed():
                await _first(stop, wake, self.config.delivery.poll)
                wake.clear()
                continue
            try:
                done = await self.deliver_due()
            except Exception:  # a store or receiver problem must not end the loop; the outbox keeps the work
                log.exception("alert delivery round failed")
                done = Round([], 0, None)
            if done.attempts and done.pending:
                continue  # a delivered head may have let the next notification of its group through
            await _first(stop, wake, self._wait_s(done))
            wake.clear()

    async def drain(self, within_s: float) -> tuple[list[AttemptRecord], int]:
        """Deliver until the outbox is empty or `within_s` has passed; the attempts and what is left pending."""
        deadline = asyncio.get_running_loop().time() + within_s
        records: list[AttemptRecord] = []
        while True:
            done = await self.deliver_due()
            records += done.attempts
            left_s = deadline - asyncio.get_running_loop().time()
            if not done.pending or left_s <= 0:
                return records, done.pending
            if not done.attempts:
                await asyncio.sleep(min(left_s, self._wait_s(done)))

    def _wait_s(self, done: Round) -> float:
        """Until the next attempt falls due, at most `poll` (new notifications may come meanwhile)."""
        if done.next_due is None:
            return self.config.delivery.poll
        return min(self.config.delivery.poll, max((done.next_due - self._clock()).total_seconds(), 0.0))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()


async def _first(stop: asyncio.Event, wake: asyncio.Event, timeout_s: float) -> None:
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class AlertJob:
    """The collector's alerting: every `interval_s`, renews `lease` (alert_lease) and, while it holds it,
    evaluates; delivers as notifications fall due while it holds it. Without a lease it always does (one
    evaluator by arrangement: a single gateway, a test)."""

    def __init__(self, store: StoreLike, config: AlertConfig, *, interval_s: float = 15.0, external_url: str = "",
                 client: httpx.AsyncClient | None = None, clock: Clock = utcnow,
                 lease: Lease | None = None) -> None:  # fmt: skip
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.store = store
        self.config = config
        self.interval_s = interval_s
        self.external_url = external_url
        self.lease = lease
        self.holds = lease is None  # whether this job evaluates and delivers now
        self._clock = clock
        self.deliverer = Deliverer(store, config, client=client, clock=clock)

    def step(self) -> Evaluation | None:
        """One round: renew the lease, then evaluate if it is held (None when it is not)."""
        now = self._clock()
        if self.lease is not None:
            self.holds = False  # until the store says otherwise
            self.holds = self.lease.acquire_or_renew(now)
            if not self.holds:
                return None
        return evaluate_once(self.store, self.config, now, self.external_url)

    async def run(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        delivering = asyncio.create_task(self.deliverer.run(stop, wake, lambda: self.holds))
        try:
            while not stop.is_set():
                held, started = self.holds, asyncio.get_running_loop().time()
                try:
                    made = await anyio.to_thread.run_sync(self.step)
                    if (made is not None and made.notifications) or (self.holds and not held):
                        wake.set()  # new notifications, or the outbox another holder left
                except Exception:
                    log.exception("alert round failed (lease or evaluation)")
                if self.holds != held:
                    log.info("alert lease %s: %s", ALERTS_LEASE, "held: evaluating here" if self.holds else "not held")
                took = asyncio.get_running_loop().time() - started  # a round every interval, however long it took
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(self.interval_s - took, 0.0))
        finally:
            await delivering
            await self.deliverer.aclose()
            if self.lease is not None:
                await anyio.to_thread.run_sync(_release, self.lease)


def _release(lease: Lease) -> None:
    """At a clean stop: another gateway leads from its next round instead of after the ttl."""
    try:
        lease.release()
    except Exception:  # the claim then lapses by itself after its ttl
        log.exception("could not release the alert lease")


@dataclass(frozen=True)
class CheckResult:
    evaluation: Evaluation
    attempts: list[AttemptRecord]
    undelivered: int  # notifications left in the outbox (a later check or the collector retries them)
    active: list[Alert]  # pending and firing after the check


def check_once(
    store: StoreLike, config: AlertConfig, *, now: datetime | None = None, deliver_within_s: float = 30.0,
    repeat_interval_s: float | None = None, external_url: str = "", client: httpx.AsyncClient | None = None,
) -> CheckResult:  # fmt: skip
    """Evaluate the rules once at `now` (default: the current time) and deliver what is due, retrying for up to
    `deliver_within_s`. `repeat_interval_s` overrides the rules' repeat interval (0: notify every firing alert
    again now). Attempts and their retry times use the clock, so `now` is meant for tests and should be close
    to it. Synchronous: call it where no event loop runs (the CLI, the demo)."""
    if repeat_interval_s is not None:
        config = config.model_copy(update={"repeat_interval": repeat_interval_s})
    evaluation = evaluate_once(store, config, now or utcnow(), external_url)

    async def deliver() -> tuple[list[AttemptRecord], int]:
        deliverer = Deliverer(store, config, client=client)
        try:
            return await deliverer.drain(deliver_within_s)
        finally:
            await deliverer.aclose()

    attempts, left = asyncio.run(deliver())
    return CheckResult(evaluation, attempts, left, load_active(store))


def _subject(alert: Alert) -> str:
    return describe(subject_of(alert.labels))


def change_rows(changes: Sequence[Change]) -> list[dict[str, object]]:
    """For print_table: what an evaluation changed."""
    return [
        {"alert": c.alert.rule, "subject": _subject(c.alert), "severity": c.alert.labels.get("severity"),
         "was": c.previous.value if c.previous else "-", "now": c.alert.status.value,
         "notify": "yes" if c.notify else "", "reason": c.alert.reason}
        for c in changes
    ]  # fmt: skip


def active_rows(alerts: Sequence[Alert]) -> list[dict[str, object]]:
    """For print_table: the pending and firing alerts."""
    return [
        {"alert": a.rule, "subject": _subject(a), "severity": a.labels.get("severity"), "state": a.status.value,
         "since": a.active_since.isoformat(timespec="seconds"), "fingerprint": a.fingerprint, "reason": a.reason}
        for a in alerts
    ]  # fmt: skip


def delivery_rows(attempts: Sequence[AttemptRecord]) -> list[dict[str, object]]:
    """For print_table: every delivery attempt."""
    return [
        {"receiver": a.receiver, "notification": a.notification_id, "alerts of": a.rules, "attempt": a.attempt,
         "outcome": a.outcome, "http": a.http_status, "error": a.error or ""}
        for a in attempts
    ]  # fmt: skip
