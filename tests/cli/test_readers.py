"""Read-only commands open the store read-only when no collector runs: the file is never migrated, flushed or
held (it stays byte-identical, even one schema version behind) and a missing one is never created."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from collector.store.embedded import Store
from collector.store.schema import MIGRATIONS
from inferwatch.cli import main


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store file one schema version behind (all migrations but the last), so that a writer's open would
    migrate it and change it, with three requests of pool `ref` in the last minute."""
    path = tmp_path / "store" / "s.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
        for version, sql in enumerate(MIGRATIONS[:-1], start=1):
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
        con.executemany(
            "INSERT INTO requests (id, pool, source, started_at, status, ttft_s, tpot_s, e2e_s, prompt_tokens, "
            "completion_tokens, cached_tokens, cost_usd) VALUES (?, 'ref', 'load', ?, 'ok', 0.05, 0.01, 0.1, 10, 5, "
            "0, 1e-6)",
            [[f"r{i}", datetime.now(UTC) - timedelta(seconds=30 + i)] for i in range(3)],
        )
    return path


def test_the_fixture_is_a_store_a_writer_would_change(store: Path) -> None:
    before = digest(store.parent)
    Store(store).close()
    assert digest(store.parent) != before


def test_fleet_reads_a_closed_store_and_leaves_it_byte_identical(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = digest(store.parent)
    assert main(["fleet", "--store", str(store), "--home", str(tmp_path / "home")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"│ ref\s+│ -\s+│ -\s+│\s+3 │\s+0 │", out), out  # pool, revision, hardware, 3 requests, 0 errors
    assert digest(store.parent) == before  # no WAL, no migration, no flush: the same bytes, the same files


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
