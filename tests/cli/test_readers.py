"""Read-only commands open the store read-only: the file is never migrated or held (it stays byte-identical),
one schema version behind is refused with what to do, and a missing one is never created."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from collector.store.api import Store
from collector.store.schema import MIGRATIONS, SCHEMA_VERSION
from inferwatch.cli import main


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def make_store(path: Path, migrations: tuple[str, ...]) -> Path:
    """A store file at the schema version of `migrations` with three requests of pool `ref` in the last minute."""
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        for version, sql in enumerate(migrations, start=1):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
        con.executemany(
            "INSERT INTO requests (id, pool, source, started_at, status, ttft_s, tpot_s, e2e_s, prompt_tokens, "
            "completion_tokens, cached_tokens, cost_usd) VALUES (?, 'ref', 'load', ?, 'ok', 0.05, 0.01, 0.1, 10, 5, "
            "0, 1e-6)",
            [[f"r{i}", datetime.now(UTC) - timedelta(seconds=30 + i)] for i in range(3)],
        )
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store at this code's schema version, closed."""
    return make_store(tmp_path / "store" / "s.duckdb", MIGRATIONS)


@pytest.fixture
def behind(tmp_path: Path) -> Path:
    """A store one schema version behind (all migrations but the last), so that a writer's open would migrate
    it and change it."""
    return make_store(tmp_path / "behind" / "s.duckdb", MIGRATIONS[:-1])


def test_the_fixture_is_a_store_a_writer_would_change(behind: Path) -> None:
    before = digest(behind.parent)
    Store(behind).close()
    assert digest(behind.parent) != before


def test_fleet_reads_a_closed_store_and_leaves_it_byte_identical(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(store.parent)
    assert main(["fleet", "--store", str(store), "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"│ ref\s+│ -\s+│ -\s+│\s+3 │\s+0 │", out), out  # pool, revision, hardware, 3 requests, 0 errors
    assert digest(store.parent) == before  # no WAL, no new file: the same bytes, the same files


def test_fleet_refuses_a_store_one_version_behind_and_leaves_it_byte_identical(
    behind: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(behind.parent)
    assert main(["fleet", "--store", str(behind), "--home", str(tmp_path / "home")]) == 3
    err = capsys.readouterr().err
    assert f"{behind}: store schema version {SCHEMA_VERSION - 1}, this inferwatch reads version {SCHEMA_VERSION}" in err
    assert "any writer migrates it (`inferwatch collector up`" in err
    assert digest(behind.parent) == before  # refused without migrating


def test_eval_report_leaves_the_store_byte_identical(store: Path, tmp_path: Path) -> None:
    before = digest(store.parent)
    assert (
        main(["eval", "report", "--store", str(store), "--home", str(tmp_path), "--run", "e1", "--reference", "r"]) == 3
    )
    assert digest(store.parent) == before


@pytest.mark.parametrize(
    "command",
    [
        ["fleet"],
        ["eval", "report", "--run", "e1", "--reference", "ref"],
        ["gate", "--baseline", "a", "--candidate", "b"],
    ],
    ids=lambda c: c[0],
)
def test_a_missing_store_is_named_and_never_created(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nowhere" / "s.duckdb"
    assert main([*command, "--store", str(path), "--home", str(tmp_path)]) == 3
    assert f"{path}: no store there yet" in capsys.readouterr().err
    assert not path.parent.exists()
