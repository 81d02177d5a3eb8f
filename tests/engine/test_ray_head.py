"""Our own Ray head against what other Ray users leave on the machine (a real `ray start`, ~15 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.ray_head import CURRENT_CLUSTER_FILE, forget_current_cluster, start_local_ray, stop_local_ray
from engine.state import EngineConfig
from tests.conftest import free_port

CONNECT = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(ray.get(ray.remote(lambda: 2).remote()))
"""


# the head outlives the Popen that started it on purpose (`engine up` returns, the pools stay)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_token_left_by_another_ray_user_does_not_lock_us_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # any local `ray.init()` writes ~/.ray/auth_token; with RAY_AUTH_MODE unset, `ray start --head` then turned
    # token auth on while our clients (explicit address) did not: InvalidAuthToken on every connection
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("f" * 64)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = free_port()
    cfg = EngineConfig(tmp_path / "engine.json", tmp_path, ray_port=port, metrics_port=free_port(), ray_num_cpus=1)
    address, pid = start_local_ray(cfg, lambda _: None)
    try:
        done = subprocess.run([sys.executable, "-c", CONNECT, address], capture_output=True, text=True, timeout=180)
        assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr[-3000:]
    finally:
        stop_local_ray(pid)
    # stopped by signal, not `ray stop`: the record of the current cluster must not point at the dead head
    recorded = CURRENT_CLUSTER_FILE.read_text().strip() if CURRENT_CLUSTER_FILE.exists() else ""
    assert not recorded.endswith(f":{port}")


def test_forget_current_cluster_removes_only_the_record_of_our_head(tmp_path: Path) -> None:
    record = tmp_path / "ray_current_cluster"
    record.write_text("192.0.2.2:46379")
    forget_current_cluster("6379", record)
    assert record.read_text() == "192.0.2.2:46379"  # another head: kept
    forget_current_cluster("46379", record)
    assert not record.exists()
    forget_current_cluster("46379", record)  # nothing to remove: no error
