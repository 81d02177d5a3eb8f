"""`inferwatch dashboard`: `streamlit run dashboards/app.py` on a store, headless, without usage statistics.

The app finds the store through the same settings as every command (INFERWATCH_STORE, INFERWATCH_HOME),
which this sets for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
ROOT = APP.parent.parent


def command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip


def environment(store: Path, home: Path, base: Mapping[str, str]) -> dict[str, str]:
    """`base` plus the store's settings, with this checkout first on the import path (the app's pages import
    `dashboards`, and `streamlit run` puts only the script's own folder there)."""
    path = os.pathsep.join(p for p in (str(ROOT), base.get("PYTHONPATH", "")) if p)
    return {**base, "INFERWATCH_STORE": str(store), "INFERWATCH_HOME": str(home), "PYTHONPATH": path}


def exec_streamlit(host: str, port: int, store: Path, home: Path) -> None:
    """Replace this process with Streamlit's server (Ctrl-C and signals reach it directly)."""
    args = command(host, port)
    os.execve(args[0], args, environment(store, home, os.environ))
