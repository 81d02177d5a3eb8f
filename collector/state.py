"""Where the running collector is: its state file (`<home>/collector.json`) and its /healthz answer."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from collector.client.credentials import client_headers
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
    """The collector's /healthz answer, or None when no collector answers at `url`. A collector that answers but
    is not healthy (503: "ok" false, with its `faults` and `problem`) is there: its answer is returned."""
    try:
        response = httpx.get(f"{url}/healthz", headers=client_headers("read"), timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code not in (200, 503):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and "ok" in body else None


def faults_in(answer: dict[str, Any]) -> str:
    """A /healthz answer's faults and problem, one per line, in words."""
    lines = [f"{f.get('part')}: {f.get('reason')}" for f in answer.get("faults") or []]
    if answer.get("problem"):
        lines.append(str(answer["problem"]))
    return "\n".join(lines) or "not ok, without a reason"
