"""What the engine is configured with and what `engine up` recorded: the engine.json state file.

`up` writes the record as soon as it has started something, so `status` and `down` (and the collector,
canary, evals and gate, which find the pools through it) read the same file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def save_json(path: Path, record: dict[str, Any]) -> None:
    """Write a state record so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


class EngineError(RuntimeError):
    """The engine could not be brought up, queried or stopped; the message says why."""


@dataclass(frozen=True)
class EngineConfig:
    state_path: Path
    models_dir: Path
    host: str = "127.0.0.1"
    serve_port: int = 8000
    ray_port: int = 6379
    metrics_port: int = 8079
    ray_num_cpus: int = 16
    timeout_s: float = 900.0


@dataclass(frozen=True)
class PoolEndpoint:
    name: str
    model_id: str
    base_url: str  # OpenAI base URL, ending in /v1
    deployed: bool


@dataclass(frozen=True)
class EngineState:
    spec: str
    ray_address: str
    ray_head_pid: int | None
    serve_url: str
    metrics_url: str | None
    pools: list[PoolEndpoint] = field(default_factory=list)

    def save(self, path: Path) -> None:
        save_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> EngineState:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineError(f"{path}: no engine state; run `inferwatch engine up` first") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineError(f"{path}: unreadable engine state ({exc}); run `inferwatch engine down`") from None
        pools = [PoolEndpoint(**p) for p in raw.pop("pools", [])]
        return cls(**raw, pools=pools)
