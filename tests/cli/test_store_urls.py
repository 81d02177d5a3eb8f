"""The CLI on store URLs it cannot use: a reader (`fleet`) and a writer (`collector up`) each exit 3 with a message
that names the URL and says what to do, and start nothing."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pytest

from collector.store.api import Store
from collector.store.schema import SCHEMA_VERSION
from tests.conftest import ROOT, free_port, inferwatch

COMMANDS = [("fleet",), ("collector", "up")]  # a reader, a writer
FORMS = "ducklake:postgres://USER@HOST:PORT/DB?data=DIR"
PASSWORD = "s3cret-pw"


def run(command: tuple[str, ...], home: Path, url: str) -> str:
    """The command on `url`: asserts exit 3, an error on stderr and nothing started; returns stderr."""
    done = inferwatch(*command, "--home", str(home), "--store", url, timeout=120)
    assert done.returncode == 3, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.stderr.startswith("error: "), done.stderr
    assert not (home / "collector.json").exists()
    return done.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ducklake:nonsense", ["store URL 'ducklake:nonsense'", "needs a postgres:// or sqlite: catalog", FORMS]),
        (
            "ducklake:postgres://u@h:notaport/db?data=/x",
            ["store URL 'ducklake:postgres://u@h:notaport/db?data=/x'", "the port is not a number", FORMS],
        ),
    ],
)
def test_a_malformed_url_is_named_with_the_forms_to_give(
    tmp_path: Path, command: tuple[str, ...], url: str, expected: list[str]
) -> None:
    err = run(command, tmp_path, url)
    for words in expected:
        assert words in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_password_in_the_url_is_refused_and_not_echoed(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"ducklake:postgres://u:{PASSWORD}@127.0.0.1:5432/db?data={tmp_path}/lake"
    done = inferwatch(*command, "--home", str(tmp_path), "--store", url, timeout=120)
    assert done.returncode == 3
    assert PASSWORD not in done.stderr and PASSWORD not in done.stdout
    assert f"store URL 'ducklake:postgres://u:***@127.0.0.1:5432/db?data={tmp_path}/lake'" in done.stderr
    assert "put the password in PGPASSWORD or ~/.pgpass, not in the URL" in done.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unreachable_catalog_is_named_with_what_to_check(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"ducklake:postgres://u@127.0.0.1:{free_port()}/db?data={tmp_path}/lake"  # nothing listens there
    err = run(command, tmp_path, url)
    assert err.startswith(f"error: {url}: cannot attach the DuckLake (")
    assert "Connection refused" in err
    assert "is PostgreSQL up and the database created (createdb)?" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_of_a_newer_schema_says_upgrade(tmp_path: Path, command: tuple[str, ...]) -> None:
    path = tmp_path / "newer.duckdb"
    Store(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (?, now())", [SCHEMA_VERSION + 1])
    con.close()
    err = run(command, tmp_path, str(path))
    assert f"error: {path}: store schema version {SCHEMA_VERSION + 1} is newer than this inferwatch knows" in err
    assert "upgrade inferwatch" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_written_by_a_newer_duckdb_says_how_to_move_it(tmp_path: Path, command: tuple[str, ...]) -> None:
    path = tmp_path / "new.duckdb"
    packed = ROOT / "tests" / "collector" / "store" / "written-by-duckdb-2.0.0.duckdb.gz"
    path.write_bytes(gzip.decompress(packed.read_bytes()))
    err = run(command, tmp_path, str(path))
    assert f"error: {path}: written by a newer DuckDB than this inferwatch's ({duckdb.__version__})" in err
    assert "EXPORT DATABASE" in err and "IMPORT DATABASE" in err and "--store" in err
