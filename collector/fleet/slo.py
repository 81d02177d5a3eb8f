"""Service-level objectives for goodput: the bounds a request must meet to count as good.

The file (data/slo.yaml is the default) uses the names of `vllm bench serve --goodput`: `ttft`, `tpot`, `e2el`,
in milliseconds; any may be left out (that bound is not judged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_SLO_PATH = Path(__file__).resolve().parents[2] / "data" / "slo.yaml"
KEYS = ("ttft", "tpot", "e2el")


class SloError(ValueError):
    """An SLO file that cannot be used; the message names the file, the key and what to do."""


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def bounds_s(self) -> tuple[float, float, float]:
        """(ttft, tpot, e2e) in seconds; an unset bound is infinite."""
        ttft, tpot, e2e = (
            ms / 1e3 if ms is not None else float("inf") for ms in (self.ttft_ms, self.tpot_ms, self.e2el_ms)
        )
        return ttft, tpot, e2e

    def met(self, ok: bool, ttft_s: float | None, tpot_s: float | None, e2e_s: float | None) -> bool:
        """Whether one request meets the SLO: ok and within every bound (a request without a TPOT, one token,
        is not judged on it). The per-request form of the figures' goodput (figures_sql.py _GOOD)."""
        ttft, tpot, e2e = self.bounds_s()
        return bool(
            ok and ttft_s is not None and ttft_s <= ttft and (tpot_s is None or tpot_s <= tpot)
            and e2e_s is not None and e2e_s <= e2e
        )  # fmt: skip

    def describe(self) -> str:
        bounds = zip(KEYS, (self.ttft_ms, self.tpot_ms, self.e2el_ms), strict=True)
        return ", ".join(f"{k} <= {v:g} ms" for k, v in bounds if v is not None)


def parse_slo(raw: Any, source: Path | str) -> Slo:
    if not isinstance(raw, dict):
        raise SloError(f"{source}: expected a mapping of {', '.join(KEYS)} (milliseconds), got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in KEYS)
    if unknown:
        raise SloError(f"{source}: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)} (milliseconds)")
    values: dict[str, float | None] = {}
    for key in KEYS:
        value = raw.get(key)
        if value is None:
            values[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value == float("inf"):
            raise SloError(f"{source}: {key} must be a positive number of milliseconds, got {value!r}")
        values[key] = float(value)
    return Slo(values["ttft"], values["tpot"], values["e2el"])


def load_slo(path: Path = DEFAULT_SLO_PATH) -> Slo:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SloError(f"{path}: cannot read the SLO file ({exc.strerror}); pass --slo FILE") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SloError(f"{path}: not valid YAML ({exc})") from exc
    return parse_slo(raw, path)
