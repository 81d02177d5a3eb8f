"""Pool specs -> one Ray Serve LLM application (vLLM engines), model id `<model>@<pool>` per pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.specs import Hardware, LogitsProcessorFault, PoolSet, PoolSpec, WeightNoiseFault

APP_NAME = "inferwatch"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAULT_CONFIG_KEY = "inferwatch_fault"  # read by engine.faults.FaultProcessor
# Ray's own accelerator names (ray.llm AcceleratorType) for the accelerators a spec commonly names.
_RAY_ACCELERATORS = {"h100": "H100", "h200": "H200", "a100": "A100", "l4": "L4", "a10g": "A10G", "l40s": "L40S"}


def deployment_name(model_id: str) -> str:
    """The Serve deployment Ray LLM creates for a pool (LLMServer:<model id>)."""
    return "LLMServer:" + model_id.replace("/", "--").replace(".", "_")


def engine_kwargs(pool: PoolSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "dtype": pool.dtype,
        # per-request cached-token counts in usage.prompt_tokens_details.cached_tokens
        "enable_prompt_tokens_details": True,
        **pool.engine_args,
        # vLLM's per-request timings (queue, prefill, decode, mean ITL) as `metrics` on the usage chunk and the
        # whole answer: the gateway stores them beside its own (requests.engine_*); always on, whatever engine_args say
        "enable_per_request_metrics": True,
    }
    if isinstance(pool.fault, LogitsProcessorFault):
        kwargs["logits_processors"] = [*kwargs.get("logits_processors", []), pool.fault.logits_processor]
        kwargs["additional_config"] = {
            **kwargs.get("additional_config", {}),
            FAULT_CONFIG_KEY: dict(pool.fault.args),
        }
    return kwargs


def llm_config(pool: PoolSpec, model_source: str) -> dict[str, Any]:
    """The ray.serve.llm LLMConfig (as a dict) that deploys one pool."""
    env = {"PYTHONPATH": str(PROJECT_ROOT), "VLLM_CPU_KVCACHE_SPACE": "1", **pool.env}
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": pool.model_id, "model_source": model_source},
        "engine_kwargs": engine_kwargs(pool),
        "deployment_config": {"num_replicas": pool.replicas},
        "runtime_env": {"env_vars": env},
        "log_engine_metrics": True,
        # per deployment, read by Ray's LLMServer (its env default RAYLLM_MODEL_RESPONSE_BATCH_TIMEOUT_MS is 50)
        "experimental_configs": {"stream_batching_interval_ms": pool.stream_batch_interval_ms},
    }
    if pool.hardware is Hardware.cpu:
        # one logical CPU per engine; start Ray with more logical CPUs than cores (DESIGN.md)
        config["placement_group_config"] = {"bundles": [{"CPU": 1}]}
    elif pool.hardware is Hardware.gpu:
        ray_name = _RAY_ACCELERATORS.get(pool.accelerator.lower())
        if ray_name:
            config["accelerator_type"] = ray_name
    return config


def model_sources(pools: PoolSet, models_dir: Path) -> dict[str, str]:
    """Where each deployed pool loads its weights from; numeric-fault pools get their noisy copy."""
    sources: dict[str, str] = {}
    for pool in pools.deployed:
        if isinstance(pool.fault, WeightNoiseFault):
            from engine.faults import noisy_copy

            noise = pool.fault.weight_noise
            copy = noisy_copy(Path(pool.model), models_dir, noise.layer, noise.relative, noise.seed)
            sources[pool.name] = str(copy)
        else:
            sources[pool.name] = pool.model
    return sources


def build_app(pools: PoolSet, sources: dict[str, str]) -> Any:
    from ray.serve.llm import build_openai_app

    configs = [llm_config(pool, sources[pool.name]) for pool in pools.deployed]
    return build_openai_app({"llm_configs": configs})
