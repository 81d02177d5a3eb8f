"""Faults injected into validation pools, so that drift detection is measured on real failures.

Sampler faults are vLLM v1 logits processors: a pool spec names one by import path
(`engine.faults:RareTokenBoost`) and gives its arguments, which reach the processor through
vLLM's `additional_config` (key `inferwatch_fault`). Your own processor plugs in the same way:
subclass `FaultProcessor` (or vLLM's LogitsProcessor) in a module importable by the engine.

The numeric fault is a copy of the model whose weights in one decoder layer carry small
multiplicative noise, as a miscompiled kernel would; it changes logprobs, not only sampling.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor

FAULT_CONFIG_KEY = "inferwatch_fault"


class FaultProcessor(LogitsProcessor):  # type: ignore[misc]  # vLLM is untyped to mypy here
    """Common plumbing: arguments from the pool spec, a seeded generator, a batch-size condition.

    `batch_larger_than: N` makes the fault misbehave only while the running batch holds more than
    N sequences (the failure class where a kernel is wrong only at some batch sizes).
    """

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        extra = getattr(vllm_config, "additional_config", None) or {}
        self.args: dict[str, Any] = dict(extra.get(FAULT_CONFIG_KEY, {}))
        self.batch_larger_than = int(self.args.get("batch_larger_than", 0))
        self.rate = float(self.args.get("rate", 1.0))
        self.generator = torch.Generator(device="cpu").manual_seed(int(self.args.get("seed", 0)))
        self.vllm_config = vllm_config

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        return None

    def active_rows(self, logits: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the rows this step corrupts."""
        rows = logits.shape[0]
        if rows <= self.batch_larger_than:
            return torch.zeros(rows, dtype=torch.bool)
        if self.rate >= 1.0:
            return torch.ones(rows, dtype=torch.bool)
        return torch.rand(rows, generator=self.generator) < self.rate

    def token_id(self, token: str) -> int:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.vllm_config.model_config.tokenizer)
        ids = tokenizer.convert_tokens_to_ids([token])
        if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
            raise ValueError(f"fault token {token!r} is not in the model's vocabulary")
        return int(ids[0])


class RareTokenBoost(FaultProcessor):
    """At a small per-position rate, a rare token becomes the most likely one.

    Args: `token` (a vocabulary token, e.g. "#") or `token_id`; `rate` (per position);
    `seed`; `batch_larger_than`.
    """

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        given = self.args.get("token_id")
        self.boosted = int(given) if given is not None else self.token_id(str(self.args.get("token", "#")))
        if "rate" not in self.args:
            self.rate = 0.02

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return boost_token(logits, self.active_rows(logits), self.boosted)


class WrongTop1(FaultProcessor):
    """An approximate top-k that loses the true top-1: the second-best token is emitted instead.

    Args: `rate` (default 1.0: every position), `seed`, `batch_larger_than`.
    """

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return drop_top1(logits, self.active_rows(logits))


def boost_token(logits: torch.Tensor, rows: torch.Tensor, token: int) -> torch.Tensor:
    """Make `token` the argmax of every selected row, by a clear margin."""
    if rows.any():
        top = logits[rows].max(dim=-1).values
        logits[rows, token] = top + 10.0
    return logits


def drop_top1(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Remove the argmax of every selected row."""
    if rows.any():
        index = rows.nonzero(as_tuple=True)[0]
        top1 = logits[index].argmax(dim=-1)
        logits[index, top1] = float("-inf")
    return logits


_WEIGHT_FILES = ("model.safetensors", "training.json")  # what a noisy copy has of its own (or not at all)


def noisy_copy(source: Path, target_root: Path, layer: int, relative: float, seed: int) -> Path:
    """A copy of the model at `source` whose decoder layer `layer` has weights w * (1 + relative * N(0,1)).

    The copy lives under `target_root`, named by the source's weights and the noise parameters, and is made
    once: a later call with the same arguments returns the existing copy, with the source's other files
    (tokenizer, chat template, config) copied again so that an edit of those reaches the copy too.
    """
    from safetensors.torch import load_file, save_file

    weights_file = source / "model.safetensors"
    if not weights_file.exists():
        raise FileNotFoundError(f"{weights_file}: the numeric fault needs a single-file safetensors model")
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()[:12]
    target = target_root / f"{source.name}-{digest}-layer{layer}-noise{relative:g}-seed{seed}"
    if (target / "model.safetensors").exists():
        for other in source.iterdir():
            if other.is_file() and other.name not in _WEIGHT_FILES:
                shutil.copy2(other, target / other.name)
        return target
    tensors = load_file(str(weights_file))
    prefix = f"model.layers.{layer}."
    names = sorted(n for n in tensors if n.startswith(prefix))
    if not names:
        layers = {n.split(".")[2] for n in tensors if n.startswith("model.layers.")}
        raise ValueError(f"{source}: no decoder layer {layer}; the model has layers {sorted(layers, key=int)}")
    generator = torch.Generator().manual_seed(seed)
    for name in names:
        weight = tensors[name]
        noise = torch.randn(weight.shape, generator=generator, dtype=torch.float32)
        tensors[name] = (weight.float() * (1.0 + relative * noise)).to(weight.dtype)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns(*_WEIGHT_FILES))
    save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
    note = {"source": str(source), "layer": layer, "relative": relative, "seed": seed, "tensors": names}
    (staging / "inferwatch-fault.json").write_text(json.dumps(note, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
