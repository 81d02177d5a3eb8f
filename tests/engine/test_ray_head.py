"""Our own Ray head against what other Ray users leave on the machine (a real `ray start`, ~15 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.ray_head import (
    CURRENT_CLUSTER_FILE,
    forget_current_cluster,
    ray_auth_env,
    start_local_ray,
    stop_local_ray,
)
from engine.state import EngineConfig, EngineError
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


def test_a_head_beyond_loopback_gets_a_token_of_its_own(tmp_path: Path) -> None:
    cfg = EngineConfig(tmp_path / "engine.json", tmp_path, host="0.0.0.0")
    auth = ray_auth_env(cfg, {})
    assert auth == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "ray-auth-token")}
    token = (tmp_path / "ray-auth-token").read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert (tmp_path / "ray-auth-token").stat().st_mode & 0o777 == 0o600
    assert ray_auth_env(cfg, {}) == auth and (tmp_path / "ray-auth-token").read_text() == token  # made once
    assert ray_auth_env(cfg, {"RAY_AUTH_TOKEN": "t" * 32}) == {"RAY_AUTH_MODE": "token"}  # the user's own token
    loopback = EngineConfig(tmp_path / "engine.json", tmp_path)
    assert ray_auth_env(loopback, {}) == {"RAY_AUTH_MODE": "disabled"}
    assert ray_auth_env(loopback, {"RAY_AUTH_MODE": "token"})["RAY_AUTH_MODE"] == "token"


def test_a_head_beyond_loopback_with_auth_disabled_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cfg = EngineConfig(tmp_path / "engine.json", tmp_path, host="0.0.0.0", ray_port=free_port())
    with pytest.raises(EngineError, match=r"refusing to start a Ray head on 0\.0\.0\.0 \(INFERWATCH_HOST\) with "
                       "RAY_AUTH_MODE=disabled"):  # fmt: skip
        start_local_ray(cfg, lambda _: None)
    assert not (tmp_path / "ray-head.log").exists()  # nothing was started


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_head_with_token_auth_lets_in_only_clients_with_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # token mode as a head beyond loopback gets it (here forced on loopback: a test must not listen on the network)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ray/auth_token of anyone's
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    cfg = EngineConfig(tmp_path / "engine.json", tmp_path, ray_port=free_port(), metrics_port=free_port(),
                       ray_num_cpus=1)  # fmt: skip
    address, pid = start_local_ray(cfg, lambda _: None)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    try:
        ours = {**base, **ray_auth_env(cfg)}
        done = subprocess.run([sys.executable, "-c", CONNECT, address], capture_output=True, text=True, timeout=180,
                              env=ours)  # fmt: skip
        assert (done.returncode, done.stdout.strip()) == (0, "2"), done.stderr[-3000:]
        stranger = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
        refused = subprocess.run([sys.executable, "-c", CONNECT, address], capture_output=True, text=True,
                                 timeout=180, env=stranger)  # fmt: skip
        assert refused.returncode != 0 and refused.stdout.strip() != "2"
        assert "auth" in refused.stderr.lower() or "token" in refused.stderr.lower(), refused.stderr[-3000:]
    finally:
        stop_local_ray(pid)
