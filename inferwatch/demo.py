"""`make demo`: bring the default pools up (or reuse them) and show what each one answers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from engine import lifecycle
from engine.arith import sample_problems
from engine.lifecycle import EngineConfig, EngineError, EngineState
from engine.specs import load_pools
from inferwatch.report import print_table
from inferwatch.settings import Settings

Log = Callable[[str], None]
SHARED_PREFIX = "12+34=46 " * 40  # repeated across requests: the second one hits the prefix cache


def ensure_engine(settings: Settings, cfg: EngineConfig, log: Log) -> EngineState:
    """Reuse pools that are up and answering; otherwise (re)start them."""
    if cfg.state_path.exists():
        try:
            state, rows = lifecycle.status(cfg)
            if all(r.answering for r in rows):
                log(f"reusing the pools already up ({cfg.state_path})")
                return state
        except EngineError as exc:
            log(f"recorded engine is unusable ({exc})")
        log("stopping the recorded engine before starting again")
        lifecycle.down(cfg, log=log)
    return lifecycle.up(load_pools(settings.spec, settings.prices), cfg, log=log)


def complete(base_url: str, model: str, prompt: str, **params: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = httpx.post(
        f"{base_url}/completions",
        json={"model": model, "prompt": prompt, "max_tokens": 6, "temperature": 0, **params},
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise EngineError(f"{model}: HTTP {response.status_code}: {response.text[:300]}")
    return response.json(), elapsed


def ask_every_pool(state: EngineState, count: int = 3) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    problems = sample_problems(count, seed=2026, held_out=True)
    for pool in state.pools:
        # plain problems are graded; the long prompts (out of the model's distribution) show the prefix cache
        prompts: list[tuple[str, str | None]] = [(p.prompt, p.answer) for p in problems]
        prompts += [(SHARED_PREFIX + p.prompt, None) for p in problems[:2]]
        for prompt, expected in prompts:
            body, seconds = complete(pool.base_url, pool.model_id, prompt)
            usage = body.get("usage") or {}
            details = usage.get("prompt_tokens_details") or {}
            text = body["choices"][0]["text"]
            shown = prompt if expected else f"[{len(SHARED_PREFIX)}-char prefix]{prompt[len(SHARED_PREFIX) :]}"
            rows.append({
                "pool": pool.name,
                "prompt": shown,
                "completion": text,
                "expected": expected or "-",
                "ok": "-" if expected is None else "yes" if text.strip() == expected else "NO",
                "prompt_tok": usage.get("prompt_tokens"),
                "cached_tok": details.get("cached_tokens"),
                "ms": round(seconds * 1000, 1),
            })  # fmt: skip
    return rows


def run_demo(settings: Settings, cfg: EngineConfig, log: Log = print) -> int:
    state = ensure_engine(settings, cfg, log)
    rows = ask_every_pool(state)
    print_table(rows, title="what each pool answered (greedy, held-out problems; long prompts share a prefix)")
    print_table(lifecycle.as_rows(state), title="where")
    if state.metrics_url:
        log(f"server metrics (vllm:*, ray_serve_*): {state.metrics_url}")
    log("the pools stay up for the next steps; stop them with: .venv/bin/inferwatch engine down")
    return 0
