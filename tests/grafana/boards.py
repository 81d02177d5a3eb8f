"""The Grafana boards as their panels' queries, with Grafana's variables substituted the way Grafana would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
BOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# $__rate_interval is at least four scrape intervals; $__interval the step; $__range the time range shown
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "10m"}


@dataclass(frozen=True)
class Query:
    board: str
    panel: str
    expr: str  # variables substituted


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def substitute(expr: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):  # $__rate_interval before $__range
        expr = expr.replace(name, variables[name])
    return expr


def queries(pool: str) -> Iterator[Query]:
    """Every target of every board; $pool is `pool` on single-pool boards and the All value (".*" regex)
    where the variable is multi-valued, as each board opens by default."""
    for path in BOARDS:
        board = load(path)
        variable = next(v for v in board["templating"]["list"] if v["name"] == "pool")
        value = variable.get("allValue", ".*") if variable["multi"] else pool
        for panel in board["panels"]:
            for target in panel["targets"]:
                expr = substitute(target["expr"], {**BUILTINS, "$pool": value})
                yield Query(path.stem, panel["title"], expr)
