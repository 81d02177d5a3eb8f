"""Store files that are wrong: each gives a StoreError subclass naming the file and what to do, through the
door functions (reader and writer) and through the real CLI (a reader, `fleet`; a writer, `collector up`:
exit 3, `error: ...` on stderr, no traceback, nothing started), and the file is left as it was.

Before this change: a SQLite file made DuckDB try to download the sqlite extension from the network, a
DuckDB file of someone else's tables was migrated into a store by any writer (and a SQLite file of other
tables turned into a DuckLake catalog), and every other case was one StoreError("cannot open the store
(IO Error: ...)") with DuckDB's words and no class or advice."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from collector.fleet.slo import DEFAULT_SLO_PATH
from collector.store.door import open_reader, open_store
from collector.store.errors import NotAStore, StoreCorrupt, StoreError, StoreFormatError
from tests.conftest import ROOT, inferwatch

NEW_STORE = "move it aside and give a new --store (a writer, `inferwatch collector up`, creates it)"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def real_store(path: Path, rows: int = 2000) -> bytes:
    with open_store(path) as store:
        store.append("requests", [
            {"id": f"r{i}", "pool": "ref", "source": "load", "status": "ok", "started_at": T0, "error": "x" * 200}
            for i in range(rows)
        ])  # fmt: skip
    return path.read_bytes()


def make(kind: str, folder: Path) -> Path:
    """A file of `kind` where a store should be."""
    path = folder / "s.duckdb"
    if kind == "random":
        path.write_bytes(bytes((i * 7919 + 13) % 256 for i in range(100_000)))
    elif kind == "truncated":
        data = real_store(folder / "real.duckdb")
        path.write_bytes(data[: len(data) // 3])
    elif kind == "header-only":
        path.write_bytes(real_store(folder / "real.duckdb")[:5000])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "sqlite":
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (a)")
    elif kind == "parquet":
        duckdb.connect().execute(f"COPY (SELECT 1 AS a) TO '{path}' (FORMAT parquet)")
    elif kind == "text":
        path.write_text("pools:\n  - name: ref\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "foreign":
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE TABLE customers (id INTEGER, name VARCHAR)")
            con.execute("INSERT INTO customers VALUES (1, 'a')")
    return path


CASES = {
    "random": (StoreFormatError, ["holds unknown bytes, not a DuckDB store", NEW_STORE]),
    "truncated": (StoreCorrupt, ["is a damaged DuckDB file (IO Error: Could not read enough bytes", NEW_STORE]),
    "header-only": (StoreCorrupt, ["is a damaged DuckDB file", "restore it from a backup, or " + NEW_STORE]),
    "empty": (StoreCorrupt, ["is empty (0 bytes; a creation cut short or a failed copy)", NEW_STORE]),
    "sqlite": (StoreFormatError, ["holds a SQLite database, not a DuckDB store", NEW_STORE]),
    "parquet": (StoreFormatError, ["holds a Parquet file, not a DuckDB store", NEW_STORE]),
    "text": (StoreFormatError, ["holds text, not a DuckDB store", NEW_STORE]),
    "directory": (StoreFormatError, ["is a directory, not a DuckDB store file; give the file's path"]),
    "foreign": (NotAStore, ["a database with tables of its own (customers) and no schema_migrations: not an "
                            "inferwatch store, and inferwatch will not add its tables to it"]),
}  # fmt: skip


def snapshot(path: Path) -> str:
    if path.is_dir():
        return "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != "real.duckdb")


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("door", [open_reader, open_store], ids=["reader", "writer"])
def test_a_wrong_store_file_is_named_with_what_to_do_and_left_as_it_was(
    kind: str, door: object, tmp_path: Path
) -> None:
    path = make(kind, tmp_path)
    before, files = snapshot(path), siblings(path)
    error, parts = CASES[kind]
    with pytest.raises(error) as caught:
        door(path)  # type: ignore[operator]
    text = str(caught.value)
    assert text.startswith(f"{path}: "), text
    for part in parts:
        assert part in text, text
    assert "Failed to download extension" not in text
    assert snapshot(path) == before and siblings(path) == files  # nothing migrated, no WAL, nothing created


@pytest.mark.parametrize("kind", ["truncated", "sqlite", "directory", "foreign", "empty"])
@pytest.mark.parametrize("command", [("fleet",), ("collector", "up")], ids=["fleet", "collector-up"])
def test_the_cli_names_a_wrong_store_file_without_a_traceback(
    kind: str, command: tuple[str, ...], tmp_path: Path
) -> None:
    path = make(kind, tmp_path)
    before = snapshot(path)
    done = inferwatch(*command, "--home", str(tmp_path / "home"), "--store", str(path), timeout=120)
    assert done.returncode == 3, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.stderr.startswith(f"error: {path}: "), done.stderr
    assert all(part in done.stderr for part in CASES[kind][1]), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "collector.json").exists()
    assert snapshot(path) == before


def test_a_store_damaged_under_a_reader_is_named_corrupt_at_query_time(tmp_path: Path) -> None:
    # a store that opens (its header and catalog are whole) but whose table data is cut off
    path = tmp_path / "s.duckdb"
    data = real_store(path, rows=200_000)
    with open_reader(path) as reader:
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(StoreError) as caught:  # StoreCorrupt, checked below
            reader.query("SELECT count(*), max(error) FROM requests")
    assert isinstance(caught.value, StoreCorrupt), caught.value
    text = str(caught.value)
    assert text.startswith(f"{path}: {path} is a damaged DuckDB file (IO Error: Could not read enough bytes"), text
    assert text.endswith("restore it from a backup, or " + NEW_STORE), text


DROP_TO_NOBODY = """
import os, sys
import collector.fleet.report, collector.store.door, inferwatch.cli, inferwatch.cli.fleet, inferwatch.report  # before
os.setgid(65534)
os.setuid(65534)
sys.exit(inferwatch.cli.main(sys.argv[1:]))
"""


def test_a_file_this_user_cannot_read_is_named(tmp_path: Path) -> None:
    # root reads any file whatever its mode: as root, the CLI imports what it needs, then drops to the uid of
    # `nobody` (65534) before it opens a file only root may read
    folder = Path("/tmp") / f"inferwatch-unreadable-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    folder.chmod(0o755)
    try:
        path = folder / "s.duckdb"
        real_store(path, rows=1)
        path.chmod(0o600 if os.geteuid() == 0 else 0o000)
        home = folder / "home"
        home.mkdir()
        home.chmod(0o777)
        # the SLO file too, where `nobody` can read it: a checkout in a folder only root may enter (mktemp -d)
        slo = folder / "slo.yaml"
        shutil.copyfile(DEFAULT_SLO_PATH, slo)
        slo.chmod(0o644)
        argv = ["fleet", "--home", str(home), "--store", str(path), "--slo", str(slo)]
        if os.geteuid() == 0:
            cmd = [sys.executable, "-c", DROP_TO_NOBODY, *argv]
        else:
            cmd = [sys.executable, "-m", "inferwatch.cli", *argv]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 3, done.stderr
        user = 65534 if os.geteuid() == 0 else os.geteuid()
        assert (
            done.stderr == f"error: {path}: this user ({user}) cannot read {path}; fix its permissions (chmod, chown)\n"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def lake(tmp_path: Path) -> tuple[str, Path]:
    catalog = tmp_path / "cat.sqlite"
    return f"ducklake:sqlite:{catalog}?data={tmp_path}/lake", catalog


@pytest.mark.parametrize("door", [open_reader, open_store], ids=["reader", "writer"])
def test_a_ducklake_catalog_of_random_bytes_is_named_corrupt(door: object, tmp_path: Path) -> None:
    url, catalog = lake(tmp_path)
    catalog.write_bytes(bytes((i * 31 + 7) % 256 for i in range(8192)))
    before = snapshot(catalog)
    with pytest.raises(StoreCorrupt) as caught:
        door(url)  # type: ignore[operator]
    assert str(caught.value) == (
        f"{url}: the catalog {catalog} is not a SQLite database (binary); restore it from a backup, or {NEW_STORE}"
    )
    assert snapshot(catalog) == before


@pytest.mark.parametrize("door", [open_reader, open_store], ids=["reader", "writer"])
def test_a_damaged_ducklake_catalog_is_named_corrupt(door: object, tmp_path: Path) -> None:
    url, catalog = lake(tmp_path)
    with open_store(url) as store:
        store.append("requests", [{"id": "r1", "pool": "ref", "source": "load", "status": "ok", "started_at": T0}])
    data = catalog.read_bytes()
    catalog.write_bytes(data[:100] + bytes(4096) + data[4196:])  # the schema page overwritten
    with pytest.raises(StoreCorrupt) as caught:
        door(url)  # type: ignore[operator]
    text = str(caught.value)
    assert text.startswith(f"{url}: the catalog {catalog} is a damaged SQLite database (") or text.startswith(
        f"{url}: the DuckLake catalog {catalog} is damaged ("
    ), text
    assert "restore it from a backup" in text


@pytest.mark.parametrize("door", [open_reader, open_store], ids=["reader", "writer"])
def test_a_sqlite_file_of_other_tables_is_not_taken_for_a_catalog(door: object, tmp_path: Path) -> None:
    url, catalog = lake(tmp_path)
    with sqlite3.connect(catalog) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    before = snapshot(catalog)
    with pytest.raises(NotAStore) as caught:
        door(url)  # type: ignore[operator]
    assert str(caught.value) == (
        f"{url}: the catalog {catalog} is a SQLite database of other tables (invoices), not a DuckLake catalog; "
        "give another catalog file"
    )
    assert snapshot(catalog) == before
