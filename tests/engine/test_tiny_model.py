"""The committed artifact loads in transformers and does arithmetic (vLLM is checked in test_engine_live)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.arith import sample_problems
from engine.tiny_model import greedy_accuracy

MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "arith"


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(MODEL).eval()


def test_tokenizer_is_character_level_with_bos() -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODEL)
    ids = tok("347+85=").input_ids
    assert ids == [1, 7, 8, 11, 14, 12, 9, 15]  # <s> 3 4 7 + 8 5 =
    assert tok.decode(ids, skip_special_tokens=True) == "347+85="
    assert tok.decode([tok.convert_tokens_to_ids(c) for c in "hi #"]) == "hi #"


def test_artifact_is_small_and_was_trained_to_the_target() -> None:
    report = json.loads((MODEL / "training.json").read_text())
    assert report["held_out_exact_match_hf"] >= 0.95
    assert report["train_seconds"] <= 15 * 60
    assert (MODEL / "model.safetensors").stat().st_size < 8 * 2**20


def test_transformers_greedy_accuracy_on_held_out(model) -> None:  # type: ignore[no-untyped-def]
    assert greedy_accuracy(model, sample_problems(200, seed=99, held_out=True)) >= 0.95
