"""`engine up | status | down`: deploy the pools of a spec on Ray Serve and take them away again.

A local Ray head is started (engine/ray_head.py) so the pools outlive the CLI, unless RAY_ADDRESS
names an existing cluster. What `up` started is written to the state file (engine/state.py), which
`status` and `down` read; `down` stops only what `up` started.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx

from engine.ports import port_is_free
from engine.ray_head import Log, connect_ray, is_loopback, start_local_ray, stop_local_ray, use_ray_auth
from engine.serve_app import APP_NAME, build_app, deployment_name, model_sources
from engine.specs import PoolSet
from engine.state import EngineConfig, EngineError, EngineState, PoolEndpoint


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


def check_proxy_bind(host: str, insecure_bind: bool, log: Log) -> None:
    """Serve's HTTP proxy has no authentication: beyond loopback it refuses to start unless `insecure_bind`."""
    if is_loopback(host):
        return
    if not insecure_bind:
        raise EngineError(
            f"refusing to open the engine's HTTP proxy on {host} (INFERWATCH_HOST): it has no authentication, so "
            "anyone who can reach it could use every pool. Bind 127.0.0.1 and put the collector (with "
            "INFERWATCH_ADMIN_TOKEN and an API keys file) in front, or accept the risk with INFERWATCH_INSECURE_BIND=1"
        )
    log(f"INSECURE: the engine's HTTP proxy listens on {host} without authentication (INFERWATCH_INSECURE_BIND)")


def up(pools: PoolSet, cfg: EngineConfig, log: Log = print, insecure_bind: bool = False) -> EngineState:
    """Deploy every pool and wait until each answers; on failure stop what was started. Refuses a host beyond
    loopback (check_proxy_bind) unless `insecure_bind`."""
    if pools.deployed:
        check_proxy_bind(cfg.host, insecure_bind, log)
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
        address, head_pid = start_local_ray(cfg, log, insecure_bind)
        use_ray_auth(cfg)  # this process is a client of the head with the head's auth settings
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
        if state.ray_head_pid:
            use_ray_auth(cfg)
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
            if state.ray_head_pid:
                use_ray_auth(cfg)
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
