"""`inferwatch dashboard`: `streamlit run dashboards/app.py` on a store, headless, without usage statistics.

The caller names the store and the collector's state file; this passes both to the app in the environment of
the Streamlit process (STORE_VAR, COLLECTOR_STATE_VAR), where dashboards/data.py reads them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from subprocess import STDOUT, Popen, TimeoutExpired

APP = Path(__file__).resolve().parent / "app.py"
ROOT = APP.parent.parent
STORE_VAR = "INFERWATCH_DASHBOARD_STORE"  # the DuckDB store the pages read
COLLECTOR_STATE_VAR = "INFERWATCH_DASHBOARD_COLLECTOR_STATE"  # collector.json: read through it while it runs


class DashboardError(RuntimeError):
    """The dashboard did not start; the message names its log."""


def check_bind(host: str, insecure_bind: bool) -> None:
    """Streamlit has no authentication: the dashboard listens beyond loopback only when `insecure_bind` says so
    (DashboardError otherwise; a warning on every start when it does)."""
    from collector.auth import ExposedBind
    from collector.auth import check_bind as check

    try:
        check(host, "the dashboard", "INFERWATCH_HOST", secured=False, insecure=insecure_bind)
    except ExposedBind as exc:
        raise DashboardError(f"{exc}; or reach it through an SSH tunnel (ssh -L 8501:127.0.0.1:8501 HOST)") from None


def command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def environment(store: str, collector_state: Path, base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus where the app reads, with this checkout first on the import path (the app's pages import
    `dashboards`, and `streamlit run` puts only the script's own folder there)."""
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    return {**base, STORE_VAR: str(store), COLLECTOR_STATE_VAR: str(collector_state), "PYTHONPATH": path}


def exec_streamlit(host: str, port: int, store: str, collector_state: Path, insecure_bind: bool = False) -> None:
    """Replace this process with Streamlit's server (Ctrl-C and signals reach it directly)."""
    check_bind(host, insecure_bind)
    args = command(host, port)
    os.execve(args[0], args, environment(store, collector_state, os.environ))


def start_streamlit(
    host: str,
    port: int,
    store: str,
    collector_state: Path,
    log_path: Path,
    timeout_s: float = 60.0,
    insecure_bind: bool = False,
) -> Popen[bytes]:
    """Streamlit's server as a child process (its output in `log_path`), once it answers its health check.
    DashboardError naming the log if it does not within `timeout_s` (or naming the host: check_bind)."""
    import httpx

    check_bind(host, insecure_bind)
    args = command(host, port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        process = Popen(args, stdout=out, stderr=STDOUT, env=environment(store, collector_state, os.environ),
                        start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://{host}:{port}/_stcore/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(process)
    raise DashboardError(f"the dashboard did not start on {host}:{port}; see {log_path}")


def stop(process: Popen[bytes], grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except TimeoutExpired:
            process.kill()
            process.wait()
