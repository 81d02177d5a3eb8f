"""The local Ray head that `engine up` starts (unless RAY_ADDRESS names a cluster) and `down` stops.

The head runs as `ray start --head --block` in its own process group, so it outlives the CLI and `down`
stops exactly it; its token authentication is always explicit (on whenever it binds beyond loopback); stopping
it by signal also forgets it in /tmp/ray/ray_current_cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

from engine.ports import port_is_free
from engine.state import EngineConfig, EngineError

Log = Callable[[str], None]


def is_loopback(host: str) -> bool:
    """Whether an address to bind is reachable from this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _ray_cli() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def start_local_ray(cfg: EngineConfig, log: Log, insecure_bind: bool = False) -> tuple[str, int]:
    """A Ray head of our own, in its own process group, so that `down` stops exactly it.

    `ray start --block` keeps the head's processes tied to one parent that we can signal,
    instead of `ray stop`, which would stop every Ray on the machine. Beyond loopback it runs with token auth
    (ray_auth_env); with RAY_AUTH_MODE=disabled there it refuses to start unless `insecure_bind`.
    """
    auth = ray_auth_env(cfg)
    if auth["RAY_AUTH_MODE"] != "token" and not is_loopback(cfg.host) and not insecure_bind:
        raise EngineError(
            f"refusing to start a Ray head on {cfg.host} (INFERWATCH_HOST) with RAY_AUTH_MODE="
            f"{auth['RAY_AUTH_MODE']}: anyone who can reach it could run code on this machine. Unset "
            "RAY_AUTH_MODE (token auth is then on), bind 127.0.0.1, or accept the risk with INFERWATCH_INSECURE_BIND=1"
        )
    for what, port in (("Ray GCS", cfg.ray_port), ("Ray metrics export", cfg.metrics_port)):
        if not port_is_free(cfg.host, port):
            raise EngineError(
                f"port {port} ({what}) is already in use on {cfg.host}; stop what holds it, choose another "
                f"port (--ray-port / --metrics-port), or set RAY_ADDRESS to use a running Ray cluster"
            )
    log(f"starting a local Ray head on port {cfg.ray_port} ({cfg.ray_num_cpus} logical CPUs)")
    command = [
        _ray_cli(), "start", "--head", "--block",
        f"--port={cfg.ray_port}",
        f"--num-cpus={cfg.ray_num_cpus}",
        f"--metrics-export-port={cfg.metrics_port}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--node-ip-address={cfg.host}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    env.update(auth)
    if auth["RAY_AUTH_MODE"] == "token":
        log(f"Ray token authentication on; its token: {auth.get('RAY_AUTH_TOKEN_PATH', '(RAY_AUTH_TOKEN)')}")
    log_path = cfg.state_path.parent / "ray-head.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if head.poll() is not None:
            tail = "\n".join(log_path.read_text().strip().splitlines()[-15:])
            raise EngineError(f"Ray did not start (exit {head.returncode}); {log_path}:\n{tail}")
        if "Ray runtime started" in log_path.read_text():
            return f"{cfg.host}:{cfg.ray_port}", head.pid
        time.sleep(0.5)
    stop_local_ray(head.pid)
    raise EngineError(f"Ray did not start within 180s; see {log_path}")


def ray_auth_mode(host: str = "127.0.0.1", environ: Mapping[str, str] | None = None) -> str:
    """The head's token authentication, always explicit: RAY_AUTH_MODE if the user set it, else `token` for a
    head beyond loopback and `disabled` on loopback.

    Left unset, `ray start --head` turns token auth on whenever ~/.ray/auth_token exists (any local
    `ray.init()` writes one), while a client given an explicit address never does: every later connection
    to the head would fail with InvalidAuthToken. With the mode explicit, the head and the clients that
    inherit this environment agree; `RAY_AUTH_MODE=token` works end to end as Ray documents it.
    """
    env = os.environ if environ is None else environ
    return env.get("RAY_AUTH_MODE") or ("disabled" if is_loopback(host) else "token")


def ray_token_path(cfg: EngineConfig) -> Path:
    """Where our head's token is kept when the user gives none (RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)."""
    return cfg.state_path.parent / "ray-auth-token"


def ray_auth_env(cfg: EngineConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Ray auth variables of our head and of every client of it (the same ones: they must agree). In token
    mode without a token of the user's, one is made once (0600, beside the state file) and named by
    RAY_AUTH_TOKEN_PATH; the user's RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH is used as it is."""
    env = os.environ if environ is None else environ
    mode = ray_auth_mode(cfg.host, env)
    if mode != "token" or env.get("RAY_AUTH_TOKEN") or env.get("RAY_AUTH_TOKEN_PATH"):
        return {"RAY_AUTH_MODE": mode}
    path = ray_token_path(cfg)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": mode, "RAY_AUTH_TOKEN_PATH": str(path)}


def use_ray_auth(cfg: EngineConfig, environ: MutableMapping[str, str] | None = None) -> None:
    """Make this process a client of our head with the head's auth settings (before connect_ray)."""
    env = os.environ if environ is None else environ
    env.update(ray_auth_env(cfg, env))


def stop_local_ray(pid: int, grace_s: float = 60.0) -> None:
    """SIGTERM the head (it drains and stops its node's processes), SIGKILL what remains of its group.

    Only the head gets SIGTERM: signalled together, the raylet and GCS die under it and the head hangs.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        group = os.getpgid(pid)
    except (FileNotFoundError, ProcessLookupError):
        return  # already gone
    if b"ray" not in cmdline or b"start" not in cmdline:
        return  # the pid was reused by an unrelated process: not ours to signal
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped here when this process started it (tests, the demo)
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    port = next((arg[7:] for arg in cmdline.decode().split("\0") if arg.startswith("--port=")), None)
    if port:
        forget_current_cluster(port)


CURRENT_CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")


def forget_current_cluster(port: str, path: Path = CURRENT_CLUSTER_FILE) -> None:
    """`ray start` records its head in /tmp/ray/ray_current_cluster and `ray stop` removes it; we stop our head
    by signal, so we remove the record ourselves when it names our head. Left behind, a later plain
    `ray.init()` on this machine tries to join the stopped head and fails instead of starting its own."""
    with contextlib.suppress(OSError):
        if path.read_text().strip().rpartition(":")[2] == port:
            path.unlink()


def connect_ray(address: str) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        ray.init(address=address, namespace="inferwatch", logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot connect to Ray at {address}: {exc}") from None
