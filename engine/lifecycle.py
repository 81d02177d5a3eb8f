"""`engine up | status | down`: deploy the pools of a spec on Ray Serve and take them away again.

A local Ray head is started with `ray start` (so the pools outlive the CLI) unless RAY_ADDRESS
names an existing cluster. What `up` started is written to a state file, which `status` and
`down` read; `down` stops only what `up` started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from engine.serve_app import APP_NAME, build_app, deployment_name, model_sources
from engine.specs import PoolSet

Log = Callable[[str], None]


class EngineError(RuntimeError):
    """The engine could not be brought up, queried or stopped; the message says why."""


@dataclass(frozen=True)
class EngineConfig:
    state_path: Path
    models_dir: Path
    host: str = "127.0.0.1"
    serve_port: int = 8000
    ray_port: int = 6379
    metrics_port: int = 8079
    ray_num_cpus: int = 16
    timeout_s: float = 900.0


@dataclass(frozen=True)
class PoolEndpoint:
    name: str
    model_id: str
    base_url: str  # OpenAI base URL, ending in /v1
    deployed: bool


@dataclass(frozen=True)
class EngineState:
    spec: str
    ray_address: str
    ray_head_pid: int | None
    serve_url: str
    metrics_url: str | None
    pools: list[PoolEndpoint] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EngineState:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise EngineError(f"{path}: no engine state; run `inferwatch engine up` first") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise EngineError(f"{path}: unreadable engine state ({exc}); run `inferwatch engine down`") from None
        pools = [PoolEndpoint(**p) for p in raw.pop("pools", [])]
        return cls(**raw, pools=pools)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ray_cli() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def start_local_ray(cfg: EngineConfig, log: Log) -> tuple[str, int]:
    """A Ray head of our own, in its own process group, so that `down` stops exactly it.

    `ray start --block` keeps the head's processes tied to one parent that we can signal,
    instead of `ray stop`, which would stop every Ray on the machine.
    """
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
    env["RAY_AUTH_MODE"] = ray_auth_mode()
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


def ray_auth_mode() -> str:
    """The head's token authentication, always explicit: RAY_AUTH_MODE if the user set it, else disabled.

    Left unset, `ray start --head` turns token auth on whenever ~/.ray/auth_token exists (any local
    `ray.init()` writes one), while a client given an explicit address never does: every later connection
    to the head would fail with InvalidAuthToken. With the mode explicit, the head and the clients that
    inherit this environment agree; `RAY_AUTH_MODE=token` works end to end as Ray documents it.
    """
    return os.environ.get("RAY_AUTH_MODE") or "disabled"


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


def _deployment_statuses() -> dict[str, tuple[str, str]]:
    """Serve deployment name -> (status, message) for our application."""
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None:
        return {}
    return {name: (str(d.status.value), d.message) for name, d in app.deployments.items()}


def _app_status() -> tuple[str, str]:
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    return (str(app.status.value), app.message) if app else ("NOT_STARTED", "")


def _first_failure(pools: PoolSet) -> str | None:
    statuses = _deployment_statuses()
    for pool in pools.deployed:
        status, message = statuses.get(deployment_name(pool.model_id), ("", ""))
        if status in ("DEPLOY_FAILED", "UNHEALTHY"):
            return f"pool {pool.name!r} ({pool.model_id}) failed to deploy: {_short(message)}"
    app_status, app_message = _app_status()
    if app_status == "DEPLOY_FAILED":
        return f"the Serve application failed to deploy: {_short(app_message)}"
    return None


def _short(message: str, lines: int = 12) -> str:
    kept = [line for line in message.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:]) if kept else "(no message from Ray Serve)"


def probe_pool(base_url: str, model_id: str, timeout_s: float = 30.0) -> str:
    """One tiny completion; returns the text or raises EngineError naming the pool."""
    try:
        response = httpx.post(
            f"{base_url}/completions",
            json={"model": model_id, "prompt": "1+1=", "max_tokens": 2, "temperature": 0},
            timeout=timeout_s,
        )
    except httpx.HTTPError as exc:
        raise EngineError(f"{model_id}: no answer from {base_url} ({exc})") from None
    if response.status_code != 200:
        raise EngineError(f"{model_id}: HTTP {response.status_code} from {base_url}: {response.text[:300]}")
    return str(response.json()["choices"][0]["text"])


def serve_host(ray_address: str, local_host: str) -> str:
    """Where Serve's HTTP proxy answers: our own host, or the head of the cluster RAY_ADDRESS names."""
    if not ray_address or ray_address == "auto":
        return local_host
    host = urlparse(ray_address if "://" in ray_address else f"ray://{ray_address}").hostname
    return host or local_host


def openai_base(url: str) -> str:
    """`http://h:8000`, `http://h:8000/` and `http://h:8000/v1` all mean the API at `http://h:8000/v1`."""
    return url.rstrip("/").removesuffix("/v1") + "/v1"


def up(pools: PoolSet, cfg: EngineConfig, log: Log = print) -> EngineState:
    """Deploy every pool and wait until each answers; on failure stop what was started."""
    if cfg.state_path.exists():
        raise EngineError(
            f"{cfg.state_path}: an engine is already recorded as up; run `inferwatch engine status` "
            "to check it or `inferwatch engine down` to stop it"
        )
    address = os.environ.get("RAY_ADDRESS", "")
    serve_url = f"http://{serve_host(address, cfg.host)}:{cfg.serve_port}"
    if pools.deployed and not address and not port_is_free(cfg.host, cfg.serve_port):
        raise EngineError(
            f"port {cfg.serve_port} (engine HTTP) is already in use on {cfg.host}; "
            "stop what holds it or choose another with --port"
        )
    endpoints = [
        PoolEndpoint(p.name, p.model_id, openai_base(p.endpoint or serve_url), p.endpoint is None) for p in pools.pools
    ]
    if not pools.deployed:
        state = EngineState(str(pools.source), "", None, serve_url, None, endpoints)
        state.save(cfg.state_path)
        return state

    log("preparing models (numeric-fault copies are made once, under the models dir)")
    sources = model_sources(pools, cfg.models_dir)
    head_pid = None
    if not address:
        address, head_pid = start_local_ray(cfg, log)
    state = EngineState(
        spec=str(pools.source),
        ray_address=address,
        ray_head_pid=head_pid,
        serve_url=serve_url,
        metrics_url=f"http://{cfg.host}:{cfg.metrics_port}/metrics" if head_pid else None,
        pools=endpoints,
    )
    state.save(cfg.state_path)  # from here on, `down` can clean up even if we crash
    try:
        connect_ray(address)
        _deploy(pools, sources, cfg, log)
        _wait_until_answering(pools, state, cfg, log)
    except BaseException:
        log("bringing down what was started")
        down(cfg, log=lambda _: None)
        raise
    return state


def _deploy(pools: PoolSet, sources: dict[str, str], cfg: EngineConfig, log: Log) -> None:
    from ray import serve

    for name in ("ray", "ray.serve", "ray.llm", "httpx"):  # Serve prints every deployment's options at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    serve.start(http_options={"host": cfg.host, "port": cfg.serve_port})
    app = build_app(pools, sources)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app, name=APP_NAME, route_prefix="/")
        except BaseException as exc:  # reported by the waiting loop below
            errors.append(exc)

    thread = threading.Thread(target=run, name="serve-run", daemon=True)
    thread.start()
    started = time.monotonic()
    last = ""
    while thread.is_alive():
        thread.join(timeout=2.0)
        failure = _first_failure(pools)
        if failure:
            raise EngineError(failure)
        statuses = _deployment_statuses()
        ready = sum(1 for p in pools.deployed if statuses.get(deployment_name(p.model_id), ("",))[0] == "HEALTHY")
        others = sorted(
            name for name, (st, _) in statuses.items() if st != "HEALTHY" and not name.startswith("LLMServer:")
        )
        line = f"deploying pools: {ready}/{len(pools.deployed)} healthy"
        if ready == len(pools.deployed) and others:
            line += f", waiting for {', '.join(others)}"
        if line != last:
            log(f"{line} ({time.monotonic() - started:.0f}s)")
            last = line
        if time.monotonic() - started > cfg.timeout_s:
            stuck = [f"{name}: {status} {_short(message, 3)}" for name, (status, message) in statuses.items()
                     if status != "HEALTHY"]  # fmt: skip
            raise EngineError(f"pools not ready after {cfg.timeout_s:.0f}s; {line}\n" + "\n".join(stuck))
    if errors:
        failure = _first_failure(pools)
        raise EngineError(failure or f"Ray Serve could not run the app: {_short(str(errors[0]))}")


def _wait_until_answering(pools: PoolSet, state: EngineState, cfg: EngineConfig, log: Log) -> None:
    deadline = time.monotonic() + 120
    for endpoint in state.pools:
        while True:
            try:
                text = probe_pool(endpoint.base_url, endpoint.model_id)
                log(f"  {endpoint.model_id:<16} answers at {endpoint.base_url}  ('1+1=' -> {text!r})")
                break
            except EngineError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)


@dataclass(frozen=True)
class PoolStatus:
    endpoint: PoolEndpoint
    deployment: str
    answering: bool
    detail: str


def status(cfg: EngineConfig) -> tuple[EngineState, list[PoolStatus]]:
    state = EngineState.load(cfg.state_path)
    statuses: dict[str, tuple[str, str]] = {}
    if any(p.deployed for p in state.pools):
        connect_ray(state.ray_address)
        statuses = _deployment_statuses()
    rows = []
    for endpoint in state.pools:
        deployment = "external"
        if endpoint.deployed:
            deployment = statuses.get(deployment_name(endpoint.model_id), ("MISSING", ""))[0]
        try:
            text = probe_pool(endpoint.base_url, endpoint.model_id, timeout_s=10)
            rows.append(PoolStatus(endpoint, deployment, True, f"'1+1=' -> {text!r}"))
        except EngineError as exc:
            rows.append(PoolStatus(endpoint, deployment, False, str(exc)))
    return state, rows


def down(cfg: EngineConfig, log: Log = print) -> bool:
    """Stop what `up` started. Returns False when nothing was recorded as up."""
    try:
        state = EngineState.load(cfg.state_path)
    except EngineError:
        return False
    if any(p.deployed for p in state.pools):
        try:
            connect_ray(state.ray_address)
            from ray import serve

            serve.shutdown()
            log("Ray Serve application removed")
        except Exception as exc:  # the cluster may already be gone; stopping must still finish
            log(f"could not shut down Ray Serve cleanly ({exc}); continuing")
        finally:
            import ray

            ray.shutdown()
        if state.ray_head_pid:
            stop_local_ray(state.ray_head_pid)
            log("local Ray stopped")
    cfg.state_path.unlink(missing_ok=True)
    return True


def as_rows(state: EngineState) -> list[dict[str, Any]]:
    return [{"pool": p.name, "model": p.model_id, "url": p.base_url, "deployed": p.deployed} for p in state.pools]
