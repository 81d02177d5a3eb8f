"""`inferwatch engine up|status|down`: the pools of a spec on Ray Serve (vLLM)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from inferwatch.cli.options import ENGINE, EXIT_FAILURE, EXPOSE, HOME, log, settings
from inferwatch.settings import Settings

if TYPE_CHECKING:
    from engine.state import EngineConfig


def add_to(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = commands.add_parser(
        "engine", parents=[ENGINE, HOME, EXPOSE], help="deploy the pools of a spec on Ray Serve (vLLM)"
    )
    engine.add_argument("action", choices=["up", "status", "down"])
    engine.set_defaults(func=run)


def engine_config(settings: Settings) -> EngineConfig:
    from engine.state import EngineConfig

    return EngineConfig(
        state_path=settings.engine_state,
        models_dir=settings.models_dir,
        host=settings.host,
        serve_port=settings.serve_port,
        ray_port=settings.ray_port,
        metrics_port=settings.metrics_port,
        ray_num_cpus=settings.ray_num_cpus,
        timeout_s=settings.up_timeout_s,
    )


def run(args: argparse.Namespace) -> int:
    return {"up": up, "status": status, "down": down}[args.action](settings(args))


def up(settings: Settings) -> int:
    from engine import lifecycle
    from engine.specs import load_pools
    from inferwatch.report import print_table

    cfg = engine_config(settings)
    state = lifecycle.up(load_pools(settings.spec, settings.prices), cfg, log=log, insecure_bind=settings.insecure_bind)
    print_table(lifecycle.as_rows(state), title=f"pools of {settings.spec} are up")
    if state.metrics_url:
        print(f"server metrics (vllm, serve): {state.metrics_url}")
    print(f"state: {cfg.state_path}    stop with: inferwatch engine down")
    return 0


def status(settings: Settings) -> int:
    from engine import lifecycle
    from inferwatch.report import print_table

    state, rows = lifecycle.status(engine_config(settings))
    table = [
        {"pool": r.endpoint.name, "model": r.endpoint.model_id, "deployment": r.deployment,
         "answering": "yes" if r.answering else "NO", "url": r.endpoint.base_url, "detail": r.detail}
        for r in rows
    ]  # fmt: skip
    print_table(table, title=f"engine from {state.spec}")
    return 0 if all(r.answering for r in rows) else EXIT_FAILURE


def down(settings: Settings) -> int:
    from engine import lifecycle

    cfg = engine_config(settings)
    if lifecycle.down(cfg, log=log):
        print("engine is down")
    else:
        print(f"nothing to stop ({cfg.state_path} does not exist)")
    return 0
