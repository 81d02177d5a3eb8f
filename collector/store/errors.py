"""The store's errors: a store that cannot be opened, read or written, or rows it refuses. The message names
the store URL (or table and row) and says what to do. Every one is a StoreError, so the command line maps
each to one exit code (inferwatch/cli/__init__.py looks classes up along the MRO)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store that cannot be opened or rows that cannot be stored; the message says which and why."""


class StoreBusy(StoreError):
    """The store stayed locked or in conflict past the retry bound; trying again later may succeed."""


class StoreFileError(StoreError):
    """The store's file (or DuckLake catalog) is not a store this inferwatch can open (collector/store/files.py)."""


class StoreCorrupt(StoreFileError):
    """A DuckDB file (or DuckLake catalog) that is damaged: truncated, empty, or failing its checks."""


class StoreFormatError(StoreFileError):
    """A file of another format where the store should be: SQLite, Parquet, text, a directory."""


class NotAStore(StoreFileError):
    """A valid database that holds other tables but no inferwatch schema_migrations."""


class StoreUnreadable(StoreFileError):
    """The store's file or directory cannot be read by this user (permissions)."""


class QueryRefused(StoreError):
    """A query the store's reader API does not run: not one SELECT, or it reaches files, the network,
    extensions or the configuration (collector/store/guard.py)."""


class QueryLimitExceeded(StoreError):
    """A query that ran past the statement timeout or returned more than the result cap
    (collector/store/limits.py); the message names the limit and how to raise it."""
