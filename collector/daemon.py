"""`inferwatch collector up|down|status`: the collector as a background process, and how others reach its store.

`up` starts `python -m collector.service` in its own session (so `down` signals exactly it), waits until
/healthz answers, and records pid, URL and store in `<home>/collector.json`. `down` sends SIGTERM (the
collector finishes requests in flight and flushes the store) and waits for the process to exit.
`open_store` gives readers and writers the right door: the running collector's store service when the
collector holds the file, else the file itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from collector.alerts.rules import load_alert_config
from collector.service import CollectorConfig, load_fleet
from collector.store import Store
from collector.store_client import RemoteStore
from collector.store_reader import ReadOnlyStore
from engine.lifecycle import port_is_free

Log = Callable[[str], None]
_STARTED: dict[int, subprocess.Popen[bytes]] = {}  # collectors this process started, reaped by `down`


class CollectorError(RuntimeError):
    """The collector could not be started, reached or stopped; the message says why."""


@dataclass(frozen=True)
class CollectorState:
    pid: int
    url: str
    store: str
    log: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

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


def _is_ours(pid: int) -> bool:
    try:
        return b"collector.service" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def up(config: CollectorConfig, state_path: Path, log: Log = print, timeout_s: float = 90.0) -> CollectorState:
    current = CollectorState.load(state_path)
    if current is not None and _is_ours(current.pid) and health(current.url):
        log(f"the collector is already up at {current.url}")
        return current
    router, _ = load_fleet(config)  # a bad split or spec fails here, before anything starts
    if config.alert_rules is not None:
        load_alert_config(Path(config.alert_rules))  # and so do bad alert rules (AlertConfigError)
    if not port_is_free(config.host, config.port):
        raise CollectorError(
            f"port {config.port} on {config.host} is already in use; stop what holds it or choose "
            "another port (--collector-port or INFERWATCH_COLLECTOR_PORT)"
        )
    log(f"collector: {len(router.routes)} pools, store {config.store_path}")
    log_path = state_path.parent / "collector.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "collector.service", config.to_json()],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    _STARTED[process.pid] = process
    url = f"http://{config.host}:{config.port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _STARTED.pop(process.pid, None)
            raise CollectorError(
                f"the collector exited at start ({process.returncode}); {log_path}:\n{_tail(log_path)}"
            )
        if health(url, timeout_s=1.0):
            state = CollectorState(pid=process.pid, url=url, store=config.store_path, log=str(log_path))
            state.save(state_path)
            return state
        time.sleep(0.2)
    process.kill()
    process.wait()
    _STARTED.pop(process.pid, None)
    raise CollectorError(f"the collector did not answer within {timeout_s:.0f}s; {log_path}:\n{_tail(log_path)}")


def down(state_path: Path, log: Log = print, grace_s: float = 60.0) -> bool:
    """Stop the recorded collector (SIGTERM: it flushes). Returns False when none was recorded."""
    state = CollectorState.load(state_path)
    if state is None:
        return False
    if _is_ours(state.pid):
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        child = _STARTED.pop(state.pid, None)  # our own child: wait() reaps it
        while _is_ours(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _is_ours(state.pid):
            log(f"the collector did not stop within {grace_s:.0f}s; killing it (rows not yet flushed are lost)")
            os.kill(state.pid, signal.SIGKILL)
        if child is not None:
            child.wait(timeout=10)
    state_path.unlink(missing_ok=True)
    return True


def status(state_path: Path) -> tuple[CollectorState, dict[str, Any] | None]:
    state = CollectorState.load(state_path)
    if state is None:
        raise CollectorError(f"{state_path}: no collector recorded; start it with `inferwatch collector up`")
    return state, health(state.url) if _is_ours(state.pid) else None


def open_store(store_path: Path, state_path: Path) -> Store | RemoteStore:
    """The running collector's store service when it holds `store_path`, else the file itself."""
    return _served(store_path, state_path) or Store(store_path)


def open_reader(store_path: Path, state_path: Path) -> ReadOnlyStore | RemoteStore:
    """For readers that must not hold the file (the dashboard): the collector's store service when it holds
    `store_path`, else the file opened read-only for each query (collector/store_reader.py)."""
    return _served(store_path, state_path) or ReadOnlyStore(store_path)


def _served(store_path: Path, state_path: Path) -> RemoteStore | None:
    state = CollectorState.load(state_path)
    if state is not None and Path(state.store).resolve() == store_path.resolve() and health(state.url):
        return RemoteStore(state.url)
    return None
