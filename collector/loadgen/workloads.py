"""Seeded prompt sets for the load generator, in the tiny model's vocabulary (one character = one token).

- `random`: random strings with input/output lengths drawn around a mean, like `vllm bench serve
  --dataset-name random --random-range-ratio`;
- `prefix`: a shared prefix repeated across requests plus a random suffix, so later requests hit the prefix
  cache (the CPU KV cache block is 128 tokens and only full blocks are reused: use prefixes of >= 256);
- `arith`: addition problems with the expected answer kept, so a caller can grade what came back.

Lengths are counted as the server counts them: the tokenizer prepends BOS, so a prompt of n characters is
n + 1 prompt tokens (vllm bench's random dataset subtracts the same special token from its input length).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.arith import CHARACTERS, MAX_OPERAND_DIGITS, sample_problems

MAX_MODEL_LEN = 512  # the tiny model's pools (data/pools.yaml): prompt tokens + max_tokens must fit
PROMPT_SPECIAL_TOKENS = 1  # BOS, prepended by the tokenizer (engine/tiny_model.py)
ALPHABET = np.array(list(CHARACTERS))  # every character is one token of VOCAB


@dataclass(frozen=True)
class WorkItem:
    prompt: str
    max_tokens: int
    prompt_tokens: int  # as the server counts them, BOS included
    expected: str | None = None  # the right answer, where there is one


def _length_range(mean: int, range_ratio: float) -> tuple[int, int]:
    """vllm bench's integer range [floor(mean (1 - r)), ceil(mean (1 + r))], at least 1."""
    return max(1, math.floor(mean * (1 - range_ratio))), max(1, math.ceil(mean * (1 + range_ratio)))


def _check_fits(longest_prompt_tokens: int, longest_output: int, max_model_len: int) -> None:
    if longest_prompt_tokens + longest_output > max_model_len:
        raise ValueError(
            f"prompts of up to {longest_prompt_tokens} tokens plus max_tokens up to {longest_output} exceed "
            f"max_model_len {max_model_len}: lower the input/prefix length, output_len or range_ratio"
        )


def _random_text(rng: np.random.Generator, length: int) -> str:
    return "".join(ALPHABET[rng.integers(0, ALPHABET.size, size=length)])


def random_workload(
    count: int,
    *,
    input_len: int,
    output_len: int,
    range_ratio: float = 0.0,
    seed: int = 0,
    max_model_len: int = MAX_MODEL_LEN,
) -> list[WorkItem]:
    """Prompts of `input_len` tokens (BOS included) and `output_len` max_tokens, each drawn uniformly
    from mean * [1 - range_ratio, 1 + range_ratio]."""
    if not 0 <= range_ratio < 1:
        raise ValueError(f"range_ratio must be in [0, 1), got {range_ratio}")
    if input_len < PROMPT_SPECIAL_TOKENS + 1:
        raise ValueError(f"input_len must be >= {PROMPT_SPECIAL_TOKENS + 1} (BOS and a character), got {input_len}")
    if output_len < 1:
        raise ValueError(f"output_len must be >= 1, got {output_len}")
    chars_low, chars_high = _length_range(input_len - PROMPT_SPECIAL_TOKENS, range_ratio)
    out_low, out_high = _length_range(output_len, range_ratio)
    _check_fits(chars_high + PROMPT_SPECIAL_TOKENS, out_high, max_model_len)
    rng = np.random.default_rng(seed)
    chars = rng.integers(chars_low, chars_high + 1, size=count)
    outputs = rng.integers(out_low, out_high + 1, size=count)
    return [
        WorkItem(_random_text(rng, int(n)), int(out), int(n) + PROMPT_SPECIAL_TOKENS)
        for n, out in zip(chars, outputs, strict=True)
    ]


def prefix_workload(
    count: int,
    *,
    prefix_len: int = 256,
    suffix_len: int = 16,
    output_len: int = 8,
    num_prefixes: int = 1,
    seed: int = 0,
    max_model_len: int = MAX_MODEL_LEN,
) -> list[WorkItem]:
    """Request i is prefix[i % num_prefixes] (`prefix_len` characters) + a fresh random suffix."""
    if prefix_len < 1 or suffix_len < 1 or output_len < 1 or num_prefixes < 1:
        raise ValueError("prefix_len, suffix_len, output_len and num_prefixes must all be >= 1")
    prompt_tokens = PROMPT_SPECIAL_TOKENS + prefix_len + suffix_len
    _check_fits(prompt_tokens, output_len, max_model_len)
    rng = np.random.default_rng(seed)
    prefixes = [_random_text(rng, prefix_len) for _ in range(num_prefixes)]
    return [
        WorkItem(prefixes[i % num_prefixes] + _random_text(rng, suffix_len), output_len, prompt_tokens)
        for i in range(count)
    ]


def arith_workload(
    count: int, *, seed: int = 0, held_out: bool = True, max_tokens: int | None = None
) -> list[WorkItem]:
    """Addition problems "a+b=" (held-out ones by default) with their answers; by default max_tokens leaves
    room for the longest answer plus EOS, so the model stops by itself."""
    room = MAX_OPERAND_DIGITS + 2  # 999+999=1998: one more digit than an operand, then EOS
    return [
        WorkItem(p.prompt, max_tokens or room, len(p.prompt) + PROMPT_SPECIAL_TOKENS, expected=p.answer)
        for p in sample_problems(count, seed, held_out=held_out)
    ]
