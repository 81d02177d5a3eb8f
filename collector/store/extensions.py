"""DuckDB extensions from their PyPI wheels (duckdb-extension-*), loaded by file path: nothing is downloaded at
run time. The wheels are built per DuckDB version; pyproject.toml pins DuckDB and the wheels to one version."""

from __future__ import annotations

import importlib
import shutil
from functools import cache
from pathlib import Path

import duckdb

from collector.store.errors import StoreError

# extension name as LOAD knows it -> the wheel's package; the postgres wheel ships postgres.duckdb_extension
# whose entry point is postgres_scanner, so it is loaded from a copy under that name
WHEELS = {
    "ducklake": ("duckdb_extension_ducklake", "ducklake"),
    "postgres_scanner": ("duckdb_extension_postgres", "postgres"),
    "sqlite_scanner": ("duckdb_extension_sqlite_scanner", "sqlite_scanner"),
    "httpfs": ("duckdb_extension_httpfs", "httpfs"),
}


@cache
def extension_file(name: str) -> Path:
    """The extension's file for this DuckDB version; StoreError saying which wheel to install when missing."""
    package, stem = WHEELS[name]
    hint = f"pip install {package.replace('_', '-')}=={duckdb.__version__} (or `make` reinstalls the venv)"
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise StoreError(f"DuckDB extension {name} is not installed; {hint}") from None
    path = Path(module.__file__ or "").parent / "extensions" / f"v{duckdb.__version__}" / f"{stem}.duckdb_extension"
    if not path.exists():
        raise StoreError(f"DuckDB extension {name}: no build for DuckDB {duckdb.__version__} at {path}; {hint}")
    if stem == name:
        return path
    renamed = path.with_name(f"{name}.duckdb_extension")
    if not renamed.exists():
        shutil.copyfile(path, renamed)
    return renamed


def load(con: duckdb.DuckDBPyConnection, *names: str) -> None:
    for name in names:
        con.execute(f"LOAD '{extension_file(name)}'")
