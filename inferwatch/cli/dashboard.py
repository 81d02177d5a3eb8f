"""`inferwatch dashboard`: the Streamlit dashboard on the store (read-only; through the collector while it runs)."""

from __future__ import annotations

import argparse

from inferwatch.cli.options import EXPOSE, HOME, STORE, settings
from inferwatch.settings import SettingsError


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dashboard = commands.add_parser(
        "dashboard", parents=[HOME, STORE, EXPOSE], help="the Streamlit dashboard on the store (read-only)"
    )
    dashboard.add_argument("--port", dest="dashboard_port", type=int, default=8501, help="HTTP port (default 8501)")
    dashboard.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dashboards.launch import check_bind, exec_streamlit
    from engine.ports import port_is_free

    current = settings(args)
    check_bind(current.host, current.insecure_bind)  # Streamlit has no authentication
    if not port_is_free(current.host, args.dashboard_port):
        raise SettingsError(f"--port: port {args.dashboard_port} on {current.host} is already in use")
    print(f"dashboard at http://{current.host}:{args.dashboard_port} on {current.store_url} (read-only; "
          "through the collector while it runs); Ctrl-C stops it", flush=True)  # fmt: skip
    exec_streamlit(
        current.host,
        args.dashboard_port,
        current.store_url,
        current.collector_state,
        insecure_bind=current.insecure_bind,
    )
    return 0  # not reached: exec_streamlit replaces this process
