"""The shared labels keep the spellings the store holds, agree with what the docs promise, and are stored as
plain strings that the collector's SQL finds again."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import pytest

from collector import vocabulary
from collector.fleet.report import Window, fleet_report
from collector.store.api import Store
from collector.store.rows import RequestRecord
from collector.vocabulary import (
    DriftVerdict,
    ErrorType,
    EvalVerdict,
    GateVerdict,
    Operation,
    Source,
    Status,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# written out by hand: rows already in stores hold exactly these strings
STORED: list[tuple[type[StrEnum], dict[str, str]]] = [
    (Status, {"ok": "ok", "error": "error", "cancelled": "cancelled"}),
    (ErrorType, {"upstream_unreachable": "upstream_unreachable", "upstream_timeout": "upstream_timeout",
                 "upstream_4xx": "upstream_4xx",
                 "upstream_5xx": "upstream_5xx", "upstream_error_event": "upstream_error_event",
                 "malformed_stream": "malformed_stream", "stream_cut": "stream_cut", "cancelled": "cancelled"}),
    (Operation, {"text_completion": "text_completion", "chat": "chat"}),
    (Source, {"traffic": "traffic", "load": "load", "canary": "canary", "eval": "eval"}),
    (DriftVerdict, {"ok": "ok", "drift": "drift", "nodata": "nodata"}),
    (EvalVerdict, {"reference": "reference", "passed": "pass", "regressed": "regressed", "improved": "improved",
                   "inconclusive": "inconclusive", "nodata": "nodata"}),
    (GateVerdict, {"passed": "pass", "marginal": "marginal", "fail": "fail", "nodata": "nodata"}),
]  # fmt: skip


@pytest.mark.parametrize(("enum", "spelling"), STORED, ids=[e.__name__ for e, _ in STORED])
def test_every_label_keeps_its_stored_spelling(enum: type[StrEnum], spelling: dict[str, str]) -> None:
    assert {m.name: m.value for m in enum} == spelling
    assert [f"{m}" for m in enum] == list(spelling.values())  # f-strings (the SQL) write the value


def test_header_names_are_pinned() -> None:
    assert (vocabulary.POOL_HEADER, vocabulary.SOURCE_HEADER, vocabulary.RUN_HEADER, vocabulary.REQUEST_ID_HEADER) == (
        "x-inferwatch-pool", "x-inferwatch-source", "x-inferwatch-run", "x-request-id",
    )  # fmt: skip


def _backticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _metrics_row(column: str) -> list[str]:
    """The backticked words of the description of the `requests` column row that starts with `column`."""
    rows = [line for line in (DOCS / "METRICS.md").read_text().splitlines() if line.startswith(f"| `{column}`")]
    assert len(rows) == 1, f"docs/METRICS.md has {len(rows)} table rows for {column}"
    return _backticked(rows[0].split("|")[2])


LABEL_COLUMNS: dict[tuple[str, str], type[StrEnum]] = {
    ("requests", "status"): Status, ("requests", "error_type"): ErrorType, ("requests", "operation"): Operation,
    ("requests", "source"): Source, ("drift", "verdict"): DriftVerdict, ("eval_runs", "verdict"): EvalVerdict,
    ("gates", "verdict"): GateVerdict,
}  # fmt: skip


def test_the_schema_label_columns_hold_strings_and_check_no_other_values(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        types = store.query("SELECT table_name, column_name, data_type FROM information_schema.columns").to_pylist()
        checks = store.query(
            "SELECT table_name, constraint_column_names AS columns, expression FROM duckdb_constraints() "
            "WHERE constraint_type = 'CHECK'"
        ).to_pylist()
    column_types = {(r["table_name"], r["column_name"]): r["data_type"] for r in types}
    assert {key: column_types.get(key) for key in LABEL_COLUMNS} == dict.fromkeys(LABEL_COLUMNS, "VARCHAR")
    for check in checks:  # none today; a CHECK on a label column must allow exactly the enum's values
        for column in check["columns"]:
            if (enum := LABEL_COLUMNS.get((check["table_name"], column))) is not None:
                assert sorted(re.findall(r"'([^']*)'", check["expression"])) == sorted(enum), check


def test_documented_request_labels_are_the_enums() -> None:
    status = _metrics_row("status")
    assert set(status) == {*Status, *ErrorType}  # `cancelled` is both a status and its error class
    assert len(status) == len(set(status))
    source = _metrics_row("source")
    assert [s for s in source if not s.startswith("X-")] == list(Source)
    assert [s.lower() for s in source if s.startswith("X-")] == [vocabulary.SOURCE_HEADER, vocabulary.RUN_HEADER]


def test_documented_eval_verdicts_are_the_enum() -> None:
    text = (DOCS / "EVALS.md").read_text()
    start = text.index("Verdicts (closed set):")
    documented = _backticked(text[start : text.index("Exit codes", start)])
    assert sorted(documented) == sorted(EvalVerdict)


def _record(i: int, status: Status, error_type: ErrorType | None = None) -> dict[str, object]:
    return RequestRecord(id=f"r{i}", pool="ref", source=Source.load, started_at=T0, status=status,
                         operation=Operation.chat, error_type=error_type, ttft_s=0.1 * (i + 1)).as_row()  # fmt: skip


def test_members_are_stored_as_their_strings_and_the_fleet_sql_counts_them(tmp_path: Path) -> None:
    rows = [_record(0, Status.ok), _record(1, Status.ok), _record(2, Status.error, ErrorType.upstream_5xx),
            _record(3, Status.cancelled, ErrorType.cancelled)]  # fmt: skip
    with Store(tmp_path / "s.duckdb") as store:
        store.append("requests", rows)
        got = store.query("SELECT status, source, operation, error_type FROM requests ORDER BY id").to_pylist()
        (report,) = fleet_report(store, Window())
    stats = report.stats
    assert [tuple(r.values()) for r in got] == [
        ("ok", "load", "chat", None), ("ok", "load", "chat", None), ("error", "load", "chat", "upstream_5xx"),
        ("cancelled", "load", "chat", "cancelled"),
    ]  # fmt: skip
    assert (stats.requests, stats.errors, stats.cancelled) == (4, 1, 1)
    assert stats.ttft_s is not None and stats.ttft_s[0] == pytest.approx(0.15)  # median of the ok 0.1 and 0.2
