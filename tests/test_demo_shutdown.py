"""The demo's last step as a user meets it: it waits on the dashboard, and Ctrl-C stops the dashboard (and
whatever collector and pools its state directory records; none here, so nothing else is touched)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = """
import subprocess, sys
from pathlib import Path
from engine.state import EngineConfig
from inferwatch.demo import Demo, interrupt_on_sigterm, serve_until_interrupted
from inferwatch.settings import Settings

interrupt_on_sigterm()
if sys.argv[2] == "ray":  # as the demo: its canary and evals connect to Ray, whose own SIGTERM handler aborts
    import ray
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
home = Path(sys.argv[1])
settings = Settings.from_env({}, home=home)
dashboard = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
(home / "dashboard.pid").write_text(str(dashboard.pid))
cfg = EngineConfig(state_path=settings.engine_state, models_dir=settings.models_dir)
sys.exit(serve_until_interrupted(Demo(0, dashboard, "http://127.0.0.1:1"), settings, cfg, log=print))
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited
        return stat.read().split()[2] != "Z"


@pytest.mark.parametrize(("signum", "ray"), [(signal.SIGINT, ""), (signal.SIGTERM, ""), (signal.SIGTERM, "ray")])
def test_ctrl_c_or_sigterm_stops_the_dashboard_and_exits_cleanly(tmp_path: Path, signum: int, ray: str) -> None:
    # RAY_AUTH_MODE=disabled: a new local ray.init() otherwise writes ~/.ray/auth_token, and with that file on
    # the machine every later `ray start --head` of the engine fails (InvalidAuthToken)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path), ray], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as demo:  # fmt: skip
        pid_file = tmp_path / "dashboard.pid"
        for _ in range(1200):  # up to a minute (Ray takes a while to start)
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.05)
        dashboard = int(pid_file.read_text())
        time.sleep(0.5)  # waiting on the dashboard now
        assert alive(dashboard)
        demo.send_signal(signum)
        out, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, out
    assert "Ctrl-C stops the dashboard, the collector and the pools" in out
    assert "stopping the dashboard, the collector and the pools" in out
    assert not alive(dashboard)


def test_a_dashboard_of_another_demo_is_left_alone(tmp_path: Path) -> None:
    from engine.state import EngineConfig
    from inferwatch.demo import Demo, serve_until_interrupted
    from inferwatch.settings import Settings

    settings = Settings.from_env({}, home=tmp_path)
    cfg = EngineConfig(state_path=settings.engine_state, models_dir=settings.models_dir)
    said: list[str] = []
    assert serve_until_interrupted(Demo(0, None, "http://127.0.0.1:8501"), settings, cfg, log=said.append) == 0
    assert said == ["dashboard: http://127.0.0.1:8501 (the demo that started it stops everything on Ctrl-C)"]
