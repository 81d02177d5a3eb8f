"""The store's one error: a store that cannot be opened, read or written, or rows it refuses. The message
names the store URL (or table and row) and says what to do."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store that cannot be opened or rows that cannot be stored; the message says which and why."""


class StoreBusy(StoreError):
    """The store stayed locked or in conflict past the retry bound; trying again later may succeed."""
