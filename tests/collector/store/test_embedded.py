from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from collector.store.embedded import Store, StoreError
from collector.store.schema import SCHEMA_VERSION

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def request(i: int, **over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": f"r{i}", "pool": "ref", "source": "load", "started_at": T0, "status": "ok",
        "ttft_s": 0.05 + i / 1000, "completion_tokens": i, "cost_usd": 0.001,
    }  # fmt: skip
    row.update(over)
    return row


def test_new_store_has_every_table_at_the_current_version(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        assert store.version == SCHEMA_VERSION == 5
        assert store.tables() == [
            "alert_outbox", "alerts", "drift", "eval_items", "eval_runs", "gates", "pool_samples", "pools", "probes",
            "requests", "rollouts",
        ]  # fmt: skip
    # reopening applies nothing twice
    with Store(tmp_path / "s.duckdb") as store:
        versions = store.query("SELECT version FROM schema_migrations").column("version").to_pylist()
        assert versions == [1, 2, 3, 4, 5]


def test_rows_are_durable_after_flush_and_read_back_exactly(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb", flush_interval_s=3600) as store:
        assert store.append("requests", [request(i) for i in range(3)]) == 3
        assert store.pending_rows() == 3
        assert store.query("SELECT count(*) AS n FROM requests").column("n").to_pylist() == [0]
        assert store.flush() == 3
        got = store.query("SELECT id, completion_tokens, ttft_s FROM requests ORDER BY id").to_pylist()
    # doubles come back bit for bit as given (0.05 + 1/1000 is 0.051000000000000004 in binary)
    assert got == [{"id": f"r{i}", "completion_tokens": i, "ttft_s": 0.05 + i / 1000} for i in range(3)]
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM requests").fetchone() == (3,)
    con.close()


def test_background_flush_and_close_flush(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb", flush_interval_s=0.05)
    store.append("requests", [request(1)])
    deadline = time.monotonic() + 5
    while store.pending_rows() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.pending_rows() == 0
    store.append("requests", [request(2)])
    store.close()  # flushes what is left
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM requests").fetchone() == (2,)
    con.close()


@pytest.mark.parametrize(
    ("table", "row", "message"),
    [
        ("nope", request(1), "no table 'nope' in the store; tables are alert_outbox, alerts, drift"),
        ("requests", request(1, colour="red"), "requests row 0: unknown column(s) colour"),
        ("requests", request(1, pool=None), "requests row 0: column(s) pool must not be empty"),
        ("requests", request(1, ttft_s="fast"), "requests row 0: column ttft_s must be a number, got 'fast'"),
        ("requests", request(1, completion_tokens=2**31), "column completion_tokens must be an integer between"),
        ("requests", request(1, started_at="2026-11-22"), "column started_at must be a datetime"),
    ],
)
def test_bad_rows_are_refused_at_append_and_nothing_is_lost(
    tmp_path: Path, table: str, row: dict[str, object], message: str
) -> None:
    with Store(tmp_path / "s.duckdb", flush_interval_s=3600) as store:
        store.append("requests", [request(0)])
        with pytest.raises(StoreError) as info:
            store.append(table, [row])
        assert message in str(info.value)
        assert store.flush() == 1  # the good row before the bad one is still written


def test_a_store_from_a_newer_inferwatch_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "s.duckdb").close()
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("INSERT INTO schema_migrations VALUES (99, now())")
    con.close()
    with pytest.raises(StoreError, match=r"schema version 99 is newer than this inferwatch knows \(5\)"):
        Store(tmp_path / "s.duckdb")


def test_a_locked_store_names_the_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s.duckdb"
    script = f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)"
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match=f"{path}: cannot open the store"):
            Store(path)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
