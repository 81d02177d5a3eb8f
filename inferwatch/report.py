"""Readable terminal output: tables of rows (dicts with the same keys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from evals.compare import PoolSummary


def print_table(rows: Sequence[Mapping[str, object]], title: str = "", console: Console | None = None) -> None:
    if console is None:
        plain = Console()
        # piped or captured output (CI logs, `make demo | tee`): wide enough that cells are not cut
        console = plain if plain.is_terminal else Console(width=160)
    if not rows:
        console.print(f"{title}: (no rows)")
        return
    table = Table(title=title or None, title_justify="left")
    for key in rows[0]:
        numeric = all(isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool) for r in rows)
        table.add_column(str(key), justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key in rows[0]))
    console.print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_eval(run_id: str, suite: str, reference: str, summaries: Sequence[PoolSummary]) -> None:
    """An eval run's table, then why each pool got its verdict (too long for a cell)."""
    from evals.results import reason_lines, table_rows

    print_table(table_rows(summaries), title=f"eval {run_id}: {suite}, each pool against {reference}")
    print("\n".join(reason_lines(summaries)))
