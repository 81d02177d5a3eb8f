"""The judge's configuration: data/gate.yaml (documented defaults), optionally overlaid with a user's file.
Validated once, here; an invalid value is named by file and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gate.classify import Direction

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "data" / "gate.yaml"


class GateConfigError(ValueError):
    """A judge configuration that cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueMetric(_Strict):
    group: str
    direction: Direction
    allowed: float = Field(ge=0)
    critical: float | None = Field(default=None, gt=0)
    must_have_data: bool = True

    @model_validator(mode="after")
    def _critical_beyond_allowed(self) -> ValueMetric:
        if self.critical is not None and self.critical < self.allowed:
            raise ValueError(f"critical ({self.critical}) must not be below allowed ({self.allowed})")
        return self


class EvalMetric(_Strict):
    group: str = "quality"
    margin: float = Field(default=0.02, gt=0, lt=1)
    critical: bool = True
    must_have_data: bool = True
    suite: str | None = None  # only runs of this suite; default: the latest run of any suite


class DriftMetric(_Strict):
    group: str = "drift"
    critical_metrics: tuple[str, ...] = ("greedy_hard_mismatch", "unexpected_chars")
    must_have_data: bool = True


class Metrics(_Strict):
    ttft: ValueMetric | None = None
    tpot: ValueMetric | None = None
    e2e: ValueMetric | None = None
    error_rate: ValueMetric | None = None
    goodput: ValueMetric | None = None
    cost_per_mtok: ValueMetric | None = None
    cache_hit_ratio: ValueMetric | None = None
    eval_accuracy: EvalMetric | None = None
    drift: DriftMetric | None = None


class ScoreThresholds(_Strict):
    pass_: float = Field(alias="pass", ge=0, le=100)
    marginal: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> ScoreThresholds:
        if self.marginal > self.pass_:
            raise ValueError(f"marginal ({self.marginal}) must not be above pass ({self.pass_})")
        return self


class LikeForLike(_Strict):
    """How far apart two pools' work may be for their cost per token to be compared (gate/work.py)."""

    mix: float = Field(default=0.10, ge=0)  # tokens per request, relative
    load: float = Field(default=0.25, ge=0)  # requests per second, relative


class GateConfig(_Strict):
    alpha: float = Field(gt=0, lt=0.5)
    min_samples: int = Field(ge=2)
    max_samples: int = Field(ge=100)
    thresholds: ScoreThresholds
    groups: dict[str, float]
    metrics: Metrics
    like_for_like: LikeForLike = LikeForLike()

    @model_validator(mode="after")
    def _groups_exist(self) -> GateConfig:
        for name, metric in self.metrics:
            if metric is not None and metric.group not in self.groups:
                known = ", ".join(self.groups)
                raise ValueError(f"metrics.{name}.group: no group {metric.group!r}; groups are {known}")
        if any(w < 0 for w in self.groups.values()) or not any(w > 0 for w in self.groups.values()):
            raise ValueError("groups: weights must be >= 0 and at least one > 0")
        return self


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _overlay(base[key], value) if nested else value
    return merged


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise GateConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise GateConfigError(f"{path}: not YAML ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GateConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def load_gate_config(path: Path | None = None, default: Path = DEFAULT_CONFIG) -> GateConfig:
    """The defaults, with `path` laid over them. A metric set to null in `path` is switched off."""
    raw = _read(default)
    source = default
    if path is not None:
        raw, source = _overlay(raw, _read(path)), path
    try:
        return GateConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"] if p not in ("function-after",)) or "(top level)"
        given = f" (got {err['input']!r})" if not isinstance(err["input"], dict) else ""
        raise GateConfigError(f"{source}: field {field}: {err['msg']}{given}") from None
