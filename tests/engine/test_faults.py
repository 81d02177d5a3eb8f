from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from engine.faults import RareTokenBoost, WrongTop1, boost_token, drop_top1, noisy_copy
from engine.serve_app import FAULT_CONFIG_KEY

MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "arith"


def config(**args: object) -> SimpleNamespace:
    """The two attributes of a VllmConfig the fault processors read."""
    return SimpleNamespace(
        additional_config={FAULT_CONFIG_KEY: args},
        model_config=SimpleNamespace(tokenizer=str(MODEL)),
    )


def test_boost_token_makes_it_the_argmax_only_in_selected_rows() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])
    out = boost_token(logits.clone(), torch.tensor([True, False]), token=2)
    assert out[0].tolist() == [1.0, 5.0, 15.0]  # max 5 + 10
    assert out[1].tolist() == [3.0, 0.0, 1.0]


def test_drop_top1_removes_the_argmax_so_the_runner_up_wins() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])
    out = drop_top1(logits.clone(), torch.tensor([True, True]))
    assert out.argmax(dim=-1).tolist() == [2, 2]
    assert out[0, 1] == float("-inf") and out[1, 0] == float("-inf")


def test_rare_token_boost_resolves_its_token_and_rate() -> None:
    proc = RareTokenBoost(config(token="#", rate=0.05, seed=3), torch.device("cpu"), False)
    from engine.arith import VOCAB

    assert proc.boosted == VOCAB["#"]
    assert not proc.is_argmax_invariant()
    hits = 0
    for _ in range(200):  # 200 steps x 50 rows = 10,000 positions at rate 0.05: 500 expected, sd ~21.8
        logits = torch.zeros(50, len(VOCAB))
        logits[:, 5] = 1.0
        hits += int((proc.apply(logits).argmax(dim=-1) == VOCAB["#"]).sum())
    assert 400 < hits < 600


def test_unknown_fault_token_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="fault token 'Z' is not in the model's vocabulary"):
        RareTokenBoost(config(token="Z"), torch.device("cpu"), False)


def test_wrong_top1_only_when_batch_is_larger_than_n() -> None:
    proc = WrongTop1(config(batch_larger_than=4), torch.device("cpu"), False)
    small = torch.tensor([[0.0, 2.0, 1.0]] * 4)
    large = torch.tensor([[0.0, 2.0, 1.0]] * 5)
    assert proc.apply(small.clone()).argmax(dim=-1).tolist() == [1] * 4
    assert proc.apply(large.clone()).argmax(dim=-1).tolist() == [2] * 5


def test_noisy_copy_perturbs_one_layer_by_the_given_relative_noise(tmp_path: Path) -> None:
    target = noisy_copy(MODEL, tmp_path, layer=1, relative=0.08, seed=7)
    original = load_file(str(MODEL / "model.safetensors"))
    noisy = load_file(str(target / "model.safetensors"))
    changed = sorted(n for n in original if not torch.equal(original[n], noisy[n]))
    assert changed and all(n.startswith("model.layers.1.") for n in changed)
    weight = "model.layers.1.mlp.up_proj.weight"
    ratio = noisy[weight] / original[weight]
    assert abs(float(ratio.mean()) - 1.0) < 0.005  # 65,536 draws: sd of the mean 0.08/256
    assert abs(float(ratio.std()) - 0.08) < 0.004
    assert json.loads((target / "inferwatch-fault.json").read_text())["layer"] == 1
    assert (target / "tokenizer.json").exists() and (target / "config.json").exists()
    # made once: the same arguments give the same directory without rewriting it
    mtime = (target / "model.safetensors").stat().st_mtime_ns
    assert noisy_copy(MODEL, tmp_path, layer=1, relative=0.08, seed=7) == target
    assert (target / "model.safetensors").stat().st_mtime_ns == mtime
    # ...but a stale copy of the other files (an older chat template) is brought up to date
    (target / "chat_template.jinja").write_text("old")
    noisy_copy(MODEL, tmp_path, layer=1, relative=0.08, seed=7)
    assert (target / "chat_template.jinja").read_text() == (MODEL / "chat_template.jinja").read_text()


def test_noisy_copy_rejects_a_layer_the_model_does_not_have(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no decoder layer 9; the model has layers \['0', '1', '2', '3'\]"):
        noisy_copy(MODEL, tmp_path, layer=9, relative=0.1, seed=0)
