"""Which SQL the store's query API runs: one SELECT over the store's tables, nothing that reaches outside.

The connection is locked down as well (collector/store/lockdown.py: external access off, configuration
locked), but a DuckLake connection has the sqlite/postgres scanners loaded for its catalog, and their
functions (sqlite_scan, postgres_scan, postgres_execute, ATTACH ... TYPE sqlite) open files and network
connections of their own that `enable_external_access=false` does not stop. So every query is parsed first
(DuckDB's own parser, in a connection of its own that holds nothing): it must be exactly one SELECT
statement, call no function that reads files, runs SQL text, shows configuration or secrets, or comes from
an extension, and read no table of the DuckLake's catalog database. A refusal is a QueryRefused naming what
was refused.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import duckdb

from collector.store.errors import QueryRefused

RULE = "the store's queries are one SELECT over its tables, with no file, network, extension or configuration access"

# core DuckDB functions that read files (also refused by the locked connection, except under an allowed
# directory such as a DuckLake's data path), run SQL given as text (which the parse below would not see),
# or show or change the configuration, secrets, logs and checkpoints
_FILES = {
    "glob", "sniff_csv", "read_blob", "read_text", "read_duckdb", "parquet_scan", "import_database",
    "copy_database", "duckdb_temporary_files", "duckdb_external_file_cache", "add_parquet_key",
}  # fmt: skip
_SQL_TEXT = {"query", "query_table", "json_execute_serialized_sql", "json_deserialize_sql"}
_CONFIG = {
    "getenv", "current_setting", "duckdb_settings", "duckdb_secrets", "which_secret", "duckdb_secret_types",
    "duckdb_extensions", "extension_versions", "enable_logging", "disable_logging", "truncate_duckdb_logs",
    "write_log", "duckdb_logs", "duckdb_logs_parsed", "duckdb_log_contexts", "enable_profile", "disable_profile",
    "checkpoint", "force_checkpoint", "enable_checkpoint_on_shutdown", "disable_checkpoint_on_shutdown",
}  # fmt: skip
_FILE_PREFIXES = ("read_", "parquet_")
# the functions the store's extensions add (collector/store/extensions.py); a test checks that this covers
# every function loading them adds
EXTENSION_PREFIXES = ("ducklake_", "postgres_", "sqlite_", "read_postgres", "pg_clear_cache", "murmur3")
CATALOG_PREFIX = "__ducklake_metadata_"
# FROM 'file.csv' (a replacement scan): a table name that is a path, a URL or a data file's name
_PATH_MARKS = ("/", "\\", ":", "*", "?")
_FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson", ".parquet", ".gz", ".zst", ".duckdb", ".db",
                  ".sqlite", ".arrow", ".xlsx")  # fmt: skip  # DuckLake attaches its catalog database under this name

_PARSER_LOCK = threading.Lock()
_PARSER: duckdb.DuckDBPyConnection | None = None


def check_query(sql: str) -> None:
    """QueryRefused unless `sql` is one SELECT that stays inside the store."""
    reason = refusal(sql)
    if reason is not None:
        raise QueryRefused(f"store query refused: {reason}; {RULE}")


@lru_cache(maxsize=1024)
def refusal(sql: str) -> str | None:
    """Why the store does not run `sql`, or None when it does (the queries are constants: cached by text)."""
    with _PARSER_LOCK:
        parser = _parser()
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as exc:
            return f"it does not parse ({_first_line(exc)})"
        if len(statements) != 1:
            return f"{len(statements)} statements (one SELECT is allowed)"
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            return f"a {kind.name} statement (only SELECT is allowed)"
        row = parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True, "error_message": "no parse"}
    if tree.get("error"):
        return f"it does not parse as a plain SELECT ({tree.get('error_message')})"
    for node in _nodes(tree):
        name = node.get("function_name")
        if isinstance(name, str) and (why := _function_refusal(name.lower())):
            return f"function {name}() {why}"
        if node.get("type") == "BASE_TABLE":
            parts = [str(node.get(k) or "") for k in ("catalog_name", "schema_name", "table_name")]
            table = parts[2]
            if any(part.startswith(CATALOG_PREFIX) for part in parts[:2]):
                return f"table {'.'.join(p for p in parts if p)} is in the DuckLake's catalog database"
            if any(mark in table for mark in _PATH_MARKS) or table.lower().endswith(_FILE_SUFFIXES):
                return f"FROM {table!r} names a file or URL, not a table of the store"
    return None


def _function_refusal(name: str) -> str | None:
    if name in _FILES or name.startswith(_FILE_PREFIXES):
        return "reads files"
    if name in _SQL_TEXT:
        return "runs SQL given as text"
    if name in _CONFIG:
        return "reads or changes the configuration, secrets or logs"
    if name.startswith(EXTENSION_PREFIXES):
        return "comes from an extension (files, network or the catalog)"
    return None


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _parser() -> duckdb.DuckDBPyConnection:
    """A connection that only parses: in memory, nothing attached, nothing loaded, locked."""
    global _PARSER
    if _PARSER is None:
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        _PARSER = con
    return _PARSER


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
