"""`inferwatch collector up|down|status`: the collector as a background process, and how others reach its store.

`up` starts `python -m collector.service` in its own session (so `down` signals exactly it), waits until
/healthz answers, and records pid, URL and store in `<home>/collector.json`. A collector that exits at start
is reported by the error it ended with (a corrupt store: the store's message, which names the file and what to
do), not by its traceback; one that answers but is not healthy is started, and its faults are logged.
`down` sends SIGTERM (the collector finishes requests in flight and flushes the store) and waits for the
process to exit.
Readers and writers reach the store through collector/store/door.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collector.alerts.rules import load_alert_config
from collector.service import CollectorConfig, load_fleet
from collector.state import CollectorError, CollectorState, faults_in, health
from engine.ports import port_is_free

Log = Callable[[str], None]
_STARTED: dict[int, subprocess.Popen[bytes]] = {}  # collectors this process started, reaped by `down`


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


# the last line of a Python traceback: "package.module.Error: message" (or a bare class name)
_RAISED = re.compile(r"^(?P<kind>[A-Za-z_][\w.]*(?:Error|Exception|Busy|Exit|Interrupt))(?:: (?P<message>.*))?$")


def start_error(log_text: str) -> str | None:
    """What a collector that exited at start died of, from its log: the message of the last exception its
    traceback ends with (the lines of the message that follow it too), without the traceback; None when the log
    holds no traceback."""
    lines = log_text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):")]
    if not starts:
        return None
    for i in range(len(lines) - 1, starts[-1], -1):
        found = _RAISED.match(lines[i])
        if found is not None and not lines[i].startswith(" "):
            message = "\n".join([found.group("message") or "", *lines[i + 1 :]]).strip()
            return message or found.group("kind")
    return None


def state_file(primary: Path, replica: int) -> Path:
    """Where gateway number `replica` of a home is recorded: collector.json for the first, collector.N.json after."""
    return primary if replica == 0 else primary.with_name(f"{primary.stem}.{replica + 1}{primary.suffix}")


def state_files(primary: Path) -> list[Path]:
    """Every gateway recorded beside `primary` (the first one first)."""
    others = sorted(primary.parent.glob(f"{primary.stem}.*{primary.suffix}"), key=lambda p: int(p.suffixes[0][1:]))
    return ([primary] if primary.exists() else []) + [p for p in others if p.suffixes[0][1:].isdigit()]


def running(primary: Path) -> list[CollectorState]:
    """Every gateway recorded beside `primary` (state_files) that answers /healthz, the first first."""
    states = [state for path in state_files(primary) if (state := CollectorState.load(path)) is not None]
    return [state for state in states if health(state.url) is not None]


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
    log(f"collector: {len(router.routes)} pools, store {config.store_url}")
    log_path = state_path.with_suffix(".log")
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
            raise CollectorError(exited_at_start(process.returncode, log_path))
        if (answer := health(url, timeout_s=1.0)) is not None:
            if not answer["ok"]:
                log(f"the collector at {url} is up but not healthy:\n{faults_in(answer)}")
            state = CollectorState(pid=process.pid, url=url, store=config.store_url, log=str(log_path))
            state.save(state_path)
            return state
        time.sleep(0.2)
    process.kill()
    process.wait()
    _STARTED.pop(process.pid, None)
    raise CollectorError(f"the collector did not answer within {timeout_s:.0f}s; {log_path}:\n{_tail(log_path)}")


def exited_at_start(returncode: int, log_path: Path) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        text = ""
    error = start_error(text)
    if error is None:
        return f"the collector exited at start ({returncode}); {log_path}:\n{_tail(log_path)}"
    return f"the collector exited at start ({returncode}): {error}\n(its log: {log_path})"


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
            log(f"the collector did not stop within {grace_s:.0f}s; killing it (its journal replays at the next start)")
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
