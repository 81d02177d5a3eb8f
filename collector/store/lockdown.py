"""Every store connection, reader or writer, runs locked down: once what the store needs is attached (the
embedded file; the DuckLake catalog and its extensions), DuckDB's external access is turned off, with only
the store's own directories allowed (a DuckLake's data path, the embedded file's spill directory), extensions
are neither installed nor loaded on demand, Python variables are not scanned as tables, and the
configuration is locked, so that no later SET, RESET or PRAGMA undoes any of it.

Measured with DuckDB 1.5.5: embedded (read-only and read-write, WAL replay, spilling into <file>.tmp/),
DuckLake on SQLite and on PostgreSQL (read, insert into Parquet under the data path) all work locked; an
s3:// data path is honoured by `allowed_directories` (a path under it is attempted, any other refused).
What the lock does not stop, the statement check does (collector/store/guard.py): the sqlite and postgres
scanners of a DuckLake connection open files and network connections without asking DuckDB.
"""

from __future__ import annotations

from typing import Any

import duckdb

# given at connect (these cannot be changed once a database has started, or need not be)
CONNECT_CONFIG: dict[str, Any] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,
}


def lock_down(con: duckdb.DuckDBPyConnection, allowed_directories: list[str]) -> None:
    """External access off except under `allowed_directories` (each ending in "/"), then the configuration
    locked. Call it after everything the store needs is attached and loaded."""
    listed = ", ".join("'" + d.replace("'", "''") + "'" for d in allowed_directories)
    con.execute(f"SET allowed_directories = [{listed}]")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
