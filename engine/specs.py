"""Pool specs: the typed description of every serving pool, validated once at load.

A spec file is YAML with a top-level `pools:` list (see data/pools.yaml). Every error names
the file, the pool and the field, and says what to do.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_PRICES = Path(__file__).resolve().parent.parent / "data" / "prices.yaml"
_POOL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
MAX_DEPTH = 32  # nesting of a spec or price document (data/pools.yaml: 5)
_SHOWN = 200  # characters of a refused value shown in an error
# an embedded pool's stream batching interval unless its spec says otherwise: 0 has Ray's batcher forward each
# token as it comes (TTFT without a batching delay); the HTTP chain behind it still groups some tokens, so TPOT is
# judged on the engine's figure where a stream arrives coalesced (BENCHMARKS.md "Stream batching")
DEFAULT_STREAM_BATCH_MS = 0.0


class SpecError(ValueError):
    """A spec or price file that cannot be used; the message says where and why."""


class Hardware(StrEnum):
    gpu = "gpu"
    tpu = "tpu"
    trainium = "trainium"
    cpu = "cpu"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogitsProcessorFault(_Strict):
    """A vLLM v1 logits processor, by import path, with its arguments."""

    logits_processor: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    args: dict[str, Any] = Field(default_factory=dict)


class WeightNoise(_Strict):
    layer: int = Field(ge=0)
    relative: float = Field(gt=0, le=1)
    seed: int = 0


class WeightNoiseFault(_Strict):
    """A copy of the model with multiplicative noise in one decoder layer (a miscompiled kernel)."""

    weight_noise: WeightNoise


def _fault_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next((key for key in ("logits_processor", "weight_noise") if key in value), None)
    return type(value).__name__ if isinstance(value, LogitsProcessorFault | WeightNoiseFault) else None


Fault = Annotated[
    Annotated[LogitsProcessorFault, Tag("logits_processor")]
    | Annotated[LogitsProcessorFault, Tag("LogitsProcessorFault")]
    | Annotated[WeightNoiseFault, Tag("weight_noise")]
    | Annotated[WeightNoiseFault, Tag("WeightNoiseFault")],
    Discriminator(
        _fault_kind,
        custom_error_type="fault_kind",
        custom_error_message="a fault is either `logits_processor: module:Class` (with `args`) or `weight_noise`",
    ),
]
_FAULT_TAGS = {"logits_processor", "weight_noise", "LogitsProcessorFault", "WeightNoiseFault"}


class PoolSpec(_Strict):
    name: str
    hardware: Hardware
    accelerator: str = Field(min_length=1)
    model: str = Field(min_length=1)
    model_name: str | None = None
    revision: str = Field(min_length=1)
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "auto"
    replicas: int = Field(default=1, ge=1)
    price_per_hour: float | None = Field(default=None, ge=0)
    engine_args: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    fault: Fault | None = None
    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    # Ray Serve LLM sends a stream's tokens in batches of this many ms (its own default is 50: a short answer
    # then arrives in one chunk and client TPOT/ITL measure nothing). None: DEFAULT_STREAM_BATCH_MS
    stream_batch_ms: float | None = Field(default=None, ge=0, le=1000)

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not _POOL_NAME.match(value):
            raise ValueError("must be 1-32 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
        return value

    @model_validator(mode="after")
    def _endpoint_pools_are_not_deployed(self) -> PoolSpec:
        if self.endpoint and self.fault:
            raise ValueError("a pool with `endpoint` is only observed; it cannot carry a `fault`")
        if self.endpoint and self.stream_batch_ms is not None:
            raise ValueError("a pool with `endpoint` is only observed; its stream batching is the server's own: "
                             "remove `stream_batch_ms`")  # fmt: skip
        for key, spoils in (("enable_per_request_metrics", False), ("disable_log_stats", True)):
            if self.engine_args.get(key) is spoils:
                raise ValueError(f"engine_args.{key}: {str(spoils).lower()} turns off vLLM's per-request timings, "
                                 "which inferwatch stores for every request (docs/METRICS.md): remove it")  # fmt: skip
        return self

    @property
    def stream_batch_interval_ms(self) -> float | None:
        """The stream batching interval the pool runs with; None for an endpoint pool (unknown)."""
        if self.endpoint:
            return None
        return DEFAULT_STREAM_BATCH_MS if self.stream_batch_ms is None else self.stream_batch_ms

    @property
    def served_name(self) -> str:
        return self.model_name or Path(self.model.rstrip("/")).name

    @property
    def model_id(self) -> str:
        """The OpenAI model id that routes to this pool, e.g. `arith@ref`."""
        return f"{self.served_name}@{self.name}"

    @property
    def is_local_model(self) -> bool:
        return Path(self.model).is_absolute()


class PoolSet(_Strict):
    source: Path
    pools: tuple[PoolSpec, ...]

    def get(self, name: str) -> PoolSpec:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise SpecError(f"{self.source}: no pool named {name!r}; pools are {', '.join(self.names)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.pools)

    @property
    def deployed(self) -> tuple[PoolSpec, ...]:
        return tuple(p for p in self.pools if p.endpoint is None)


def _read_yaml(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{path}: invalid YAML{at}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)") from None
    except (ValueError, TypeError, OverflowError) as exc:  # PyYAML's own constructors: `2026-13-45` as a date
        raise SpecError(f"{path}: invalid YAML: a value that cannot be read ({exc})") from None
    problem = _shape_problem(raw)
    if problem:
        raise SpecError(f"{path}: {problem}")
    return raw


def _shape_problem(raw: Any) -> str | None:
    """A document nested deeper than MAX_DEPTH, or with an alias inside its own anchor (a cycle), is refused."""
    stack: list[tuple[Any, int, frozenset[int]]] = [(raw, 0, frozenset())]
    while stack:
        value, depth, ancestors = stack.pop()
        if not isinstance(value, dict | list):
            continue
        if id(value) in ancestors:
            return "a YAML alias (*name) inside the anchor (&name) it refers to: the document would be endless"
        if depth >= MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        inner = ancestors | {id(value)}
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1, inner) for child in children)
    return None


def load_prices(path: Path = DEFAULT_PRICES) -> dict[str, float]:
    """USD per accelerator-hour by accelerator name (case-insensitive keys, stored lower-case)."""
    raw = _read_yaml(path)
    table = raw.get("accelerators") if isinstance(raw, dict) else None
    if not isinstance(table, dict) or not table:
        raise SpecError(f"{path}: expected a mapping `accelerators:` of name -> USD per hour")
    prices: dict[str, float] = {}
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise SpecError(f"{path}: accelerators.{name}: price must be a number >= 0, got {value!r}")
        prices[str(name).lower()] = float(value)
    return prices


def _field_path(loc: tuple[Any, ...]) -> str:
    """'fault.weight_noise.layer', not pydantic's 'fault.weight_noise.weight_noise.layer' (union tag)."""
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "fault" and p in _FAULT_TAGS)]
    return ".".join(parts)


def _resolve_model(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Local model paths are relative to the spec file; `org/name` is a model hub id."""
    model = raw.get("model")
    if not isinstance(model, str) or raw.get("endpoint"):
        return raw
    try:
        candidate = (base / model).expanduser()
        exists = candidate.exists()
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, ~user of no user
        candidate, exists = base / model, False
    if exists:
        return {**raw, "model": str(candidate.resolve())}
    if model.startswith((".", "/", "~")) or not _HUB_ID.match(model):
        raise SpecError(
            f"model path {candidate} does not exist; give a directory with config.json "
            "(relative to the spec file) or a model hub id like org/name"
        )
    return raw


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"... ({len(text)} characters)"


def parse_pools(raw: Any, source: Path, prices: dict[str, float]) -> PoolSet:
    if not isinstance(raw, dict) or not isinstance(raw.get("pools"), list) or not raw["pools"]:
        raise SpecError(f"{source}: expected a top-level `pools:` list with at least one pool")
    pools: list[PoolSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw["pools"]):
        label = f"pools[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            label = f"pool {entry['name']!r}"
        if not isinstance(entry, dict):
            raise SpecError(f"{source}: {label}: expected a mapping of fields, got {type(entry).__name__}")
        try:
            entry = _resolve_model(entry, source.parent)
            pool = PoolSpec.model_validate(entry)
        except SpecError as exc:
            raise SpecError(f"{source}: {label}: field 'model': {exc}") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            field = _field_path(err["loc"]) or "(pool)"
            given = f" (got {_shown(err['input'])})" if not isinstance(err["input"], dict) else ""
            raise SpecError(f"{source}: {label}: field '{field}': {err['msg']}{given}") from None
        if pool.name in seen:
            raise SpecError(f"{source}: {label}: field 'name': duplicate pool name; pool names must be unique")
        seen.add(pool.name)
        if pool.price_per_hour is None:
            price = prices.get(pool.accelerator.lower())
            if price is None:
                raise SpecError(
                    f"{source}: {label}: field 'price_per_hour': no price for accelerator "
                    f"{pool.accelerator!r} in the price table; set price_per_hour or add it to prices.yaml "
                    f"(known: {', '.join(sorted(prices))})"
                )
            pool = pool.model_copy(update={"price_per_hour": price})
        pools.append(pool)
    return PoolSet(source=source, pools=tuple(pools))


def load_pools(path: Path, prices_path: Path = DEFAULT_PRICES) -> PoolSet:
    return parse_pools(_read_yaml(path), path, load_prices(prices_path))
