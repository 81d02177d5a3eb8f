"""Where the running collector is: its state file (`<home>/collector.json`) and its /healthz answer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from engine.state import save_json


class CollectorError(RuntimeError):
    """The collector could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class CollectorState:
    pid: int
    url: str
    store: str
    log: str

    def save(self, path: Path) -> None:
        save_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> CollectorState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise CollectorError(f"{path}: unreadable collector state ({exc}); delete it") from None


def health(url: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The collector's /healthz answer, or None when nothing answers at `url`."""
    try:
        response = httpx.get(f"{url}/healthz", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None
