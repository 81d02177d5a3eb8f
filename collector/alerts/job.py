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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import httpx

from collector.alerts.deliverer import Deliverer
from collector.alerts.evaluate import Alert, Change, describe, evaluate, subject_of
from collector.alerts.outbox import AttemptRecord, load_active, next_seq, outbox_rows, state_rows
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
    rows = state_rows(changes, now, next_seq(store)) if changes else []
    store.append_all([("alerts", rows), ("alert_outbox", outbox_rows(made))])
    return Evaluation(now, changes, made)


class AlertJob:
    """The collector's alerting: every `interval_s`, renews `lease` (alert_lease) and, while it holds it,
    evaluates; delivers as notifications fall due while it holds it. Without a lease it always does (one
    evaluator by arrangement: a single gateway, a test). After `stop`, `run` returns within `grace_s` (plus
    the evaluation round in progress): attempts still in flight then are cut off and recorded as retrying."""

    def __init__(self, store: StoreLike, config: AlertConfig, *, interval_s: float = 15.0, external_url: str = "",
                 client: httpx.AsyncClient | None = None, clock: Clock = utcnow, lease: Lease | None = None,
                 grace_s: float = 5.0) -> None:  # fmt: skip
        if interval_s <= 0 or grace_s < 0:
            raise ValueError("interval_s must be > 0 and grace_s >= 0")
        self.store = store
        self.config = config
        self.interval_s = interval_s
        self.external_url = external_url
        self.lease = lease
        self.holds = lease is None  # whether this job evaluates and delivers now
        self.grace_s = grace_s  # run() returns within this of `stop`, whatever the receivers do
        self._clock = clock
        self.deliverer = Deliverer(store, config, client=client, clock=clock)

    def step(self) -> Evaluation | None:
        """One round: renew the lease, then evaluate if it is held (None when it is not)."""
        now = self._clock()
        if self.lease is not None:
            try:  # `holds` keeps its value while the store answers (/healthz reads it meanwhile)
                self.holds = self.lease.acquire_or_renew(now)
            except Exception:
                self.holds = False  # the store could not say: another gateway may lead
                raise
            if not self.holds:
                return None
        return evaluate_once(self.store, self.config, now, self.external_url)

    async def run(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        delivering = asyncio.create_task(self.deliverer.run(stop, wake, lambda: self.holds, self.grace_s))
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
        deliverer = Deliverer(store, config, client=client, clock=utcnow)
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
