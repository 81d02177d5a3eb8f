"""The Fleet page's figures per pool and revision, their change against the previous window, and how they read.
Pure: PoolReports in (collector/fleet/report.py), numbers and strings out."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from collector.fleet.report import PoolReport


class Better(Enum):
    lower = "lower"
    higher = "higher"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str  # how a value and a change read: "ms", "%", "$", "/s"
    better: Better


FIGURES: tuple[Figure, ...] = (
    Figure("req_per_s", "req/s", "/s", Better.higher),
    Figure("ttft_p50_ms", "TTFT p50", "ms", Better.lower),
    Figure("ttft_p99_ms", "TTFT p99", "ms", Better.lower),
    Figure("queue_p50_ms", "queue p50", "ms", Better.lower),
    Figure("tpot_p50_ms", "TPOT p50", "ms", Better.lower),
    Figure("tpot_p99_ms", "TPOT p99", "ms", Better.lower),
    Figure("error_rate", "error rate", "%", Better.lower),
    Figure("usd_per_m_tokens", "$/1M tokens", "$", Better.lower),
    Figure("cache_hit_ratio", "cache hit", "%", Better.higher),
    Figure("goodput", "goodput", "%", Better.higher),
)

Key = tuple[str, str | None]  # pool, revision


@dataclass(frozen=True)
class PoolFigures:
    pool: str
    revision: str | None
    hardware: str | None
    requests: int
    values: dict[str, float | None]  # FIGURES key -> value (None: no data, e.g. no ok request)

    @property
    def key(self) -> Key:
        return self.pool, self.revision


def _ms(values: Sequence[float] | None, i: int) -> float | None:
    return values[i] * 1e3 if values else None


def pool_figures(report: PoolReport) -> PoolFigures:
    """req/s over the window (every request, failed ones too); latency percentiles of the ok requests (p50
    and p99: indexes 0 and 2 of collector.fleet.report.PERCENTILES; TPOT the judged one); the request-side
    prefix-cache hit ratio; goodput against the SLO the page was read with (collector/fleet/figures.py)."""
    s = report.stats
    values: dict[str, float | None] = {
        "req_per_s": s.requests / report.window_s if report.window_s > 0 else None,
        "ttft_p50_ms": _ms(s.ttft_s, 0),
        "ttft_p99_ms": _ms(s.ttft_s, 2),
        "queue_p50_ms": _ms((q,), 0)
        if report.figures and (q := report.figures.value("queue_p50")) is not None
        else None,
        "tpot_p50_ms": _ms(s.tpot_s, 0),
        "tpot_p99_ms": _ms(s.tpot_s, 2),
        "error_rate": report.error_rate,
        "usd_per_m_tokens": report.usd_per_m_total_tokens,
        "cache_hit_ratio": report.request_cache_hit_ratio,
        "goodput": report.figures.value("goodput") if report.figures else None,
    }
    return PoolFigures(s.pool, s.revision, s.hardware, s.requests, values)


def select(
    figures: Sequence[PoolFigures], pools: Collection[str] | None, revisions: Collection[str | None] | None
) -> list[PoolFigures]:
    """Those of the chosen pools and revisions (None: no filter)."""
    return [f for f in figures if (pools is None or f.pool in pools) and (revisions is None or f.revision in revisions)]


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def changes(now: Sequence[PoolFigures], before: Sequence[PoolFigures]) -> dict[Key, dict[str, float | None]]:
    """Per pool and revision of `now`: each figure minus the previous window's (None where either has none)."""
    previous = {f.key: f for f in before}
    out: dict[Key, dict[str, float | None]] = {}
    for f in now:
        old = previous.get(f.key)
        out[f.key] = {key: _minus(value, old.values[key] if old else None) for key, value in f.values.items()}
    return out


def _number(x: float) -> str:
    """Three significant digits, no exponent: 0.0123, 1.23, 123, 1,234."""
    if x == 0 or abs(x) >= 99.95:
        return f"{x:,.0f}"
    x = float(f"{x:.3g}")
    return f"{x:.{max(2 - math.floor(math.log10(abs(x))), 0)}f}"


_VALUE: dict[str, Callable[[float], str]] = {
    "ms": lambda x: f"{_number(x)} ms",
    "%": lambda x: f"{100 * x:.1f}%",
    "$": lambda x: f"${_number(x)}",
    "/s": _number,
}
_CHANGE: dict[str, Callable[[float], str]] = {
    "ms": lambda x: f"{'+' if x >= 0 else '-'}{_number(abs(x))} ms",
    "%": lambda x: f"{100 * x:+.1f} pts",
    "$": lambda x: f"{'+' if x >= 0 else '-'}${_number(abs(x))}",
    "/s": lambda x: f"{'+' if x >= 0 else '-'}{_number(abs(x))}",
}


def show(figure: Figure, value: float | None) -> str:
    return "–" if value is None else _VALUE[figure.unit](value)


def show_change(figure: Figure, change: float | None) -> str | None:
    """st.metric's delta; None shows none."""
    return None if change is None else _CHANGE[figure.unit](change)


def change_colour(figure: Figure, change: float | None) -> Literal["normal", "inverse", "off"]:
    """st.metric's delta_color: red for a change for the worse, green for the better, grey for none."""
    if not change:
        return "off"
    return "inverse" if figure.better is Better.lower else "normal"


def table(figures: Sequence[PoolFigures]) -> list[dict[str, object]]:
    """One row per pool and revision, every figure as it reads on the page."""
    return [
        {"pool": f.pool, "revision": f.revision, "hardware": f.hardware, "requests": f.requests,
         **{g.label: show(g, f.values[g.key]) for g in FIGURES}}
        for f in figures
    ]  # fmt: skip
