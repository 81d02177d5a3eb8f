"""The split a rollout holds on the collector, over HTTP (/admin/splits): set with a lease, renewed by a
thread while the rollout runs, cleared when it ends, or kept (promoted) without a lease."""

from __future__ import annotations

import threading
from collections.abc import Callable

from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient


class LeasedSplit:
    """The split in force while the block runs, renewed every lease/3, and cleared when the block ends however
    it ends, unless `keep` replaced it first. Were the process killed, the lease runs out and the collector
    drops the split by itself: traffic is on the baseline again."""

    def __init__(self, client: SplitClient, split: Split, lease_s: float, log: Callable[[str], None]) -> None:
        self.client, self.split, self.lease_s, self.log = client, split, lease_s, log
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew, name="rollout-lease", daemon=True)
        self._kept = False

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self.client.set(self.split, ttl_s=self.lease_s)
            except RuntimeError as exc:  # the next renewal may get through; the lease covers two misses
                self.log(f"could not renew the split {self.split}: {exc}")

    def __enter__(self) -> LeasedSplit:
        self.client.set(self.split, ttl_s=self.lease_s)
        self._renewer.start()
        return self

    def _stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join()

    def keep(self, final: Split) -> None:
        """Replace the leased split with `final`, without a lease: it stays after the block."""
        self._stop_renewing()
        self.client.set(final)
        self._kept = True

    def __exit__(self, *exc: object) -> None:
        self._stop_renewing()
        if not self._kept:
            self.client.clear(self.split.baseline)
