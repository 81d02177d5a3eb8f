"""The split a rollout holds on every gateway, over HTTP (/admin/splits): set with a lease on each, renewed by
a thread while the rollout runs, cleared on each when it ends, or kept (promoted) without a lease."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.state import CollectorError


class LeasedSplit:
    """The split in force on every gateway while the block runs, renewed every lease/3, and cleared on every
    gateway when the block ends however it ends, unless `keep` replaced it first. A gateway that refuses the
    split at the start fails the block before it runs (CollectorError naming its URL), with the split cleared
    again on those that took it. Were the process killed, the leases run out and each gateway drops the split
    by itself: traffic is on the baseline again."""

    def __init__(
        self, clients: Sequence[SplitClient], split: Split, lease_s: float, log: Callable[[str], None]
    ) -> None:
        if not clients:
            raise ValueError("clients: give the split client of at least one gateway")
        self.clients, self.split, self.lease_s, self.log = tuple(clients), split, lease_s, log
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="rollout-lease", daemon=True)
        self._kept = False

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            for client in self.clients:
                try:
                    client.set(self.split, ttl_s=self.lease_s)
                except RuntimeError as exc:  # the next renewal may get through; the lease covers two misses
                    self.log(f"could not renew the split {self.split} at {client.url}: {exc}")

    def __enter__(self) -> LeasedSplit:
        self._set_everywhere(self.split, self.lease_s)
        self._renewer.start()
        return self

    def _set_everywhere(self, split: Split, ttl_s: float | None) -> None:
        """`split` on every gateway, or on none: a refusal clears it again where it was set, then raises."""
        done: list[SplitClient] = []
        for client in self.clients:
            try:
                client.set(split, ttl_s=ttl_s)
            except RuntimeError as exc:
                self._clear(done)
                raise CollectorError(f"the split {split} could not be set at {client.url}: {exc}") from None
            done.append(client)

    def _clear(self, clients: Sequence[SplitClient]) -> None:
        """The split cleared on each of `clients`; one that cannot be reached is named (its lease lapses)."""
        for client in clients:
            try:
                client.clear(self.split.baseline)
            except RuntimeError as exc:
                self.log(f"could not clear the split {self.split} at {client.url} (it lapses within "
                         f"{self.lease_s:g}s): {exc}")  # fmt: skip

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join()

    def keep(self, final: Split) -> None:
        """Replace the leased split with `final` on every gateway, without a lease: it stays after the block. When
        a gateway refuses, the block ends with the split cleared everywhere (CollectorError naming the URL)."""
        self._stop_renewing()
        self._set_everywhere(final, None)
        self._kept = True

    def __exit__(self, *exc: object) -> None:
        self._stop_renewing()
        if not self._kept:
            self._clear(self.clients)
