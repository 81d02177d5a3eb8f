"""Train the tiny Llama-architecture arithmetic model that tests and the demo serve offline.

    python -m engine.tiny_model --out data/models/arith

Deterministic on CPU (fixed seeds, fixed thread count). The artifact is committed; the test
suite never retrains. See DESIGN.md "The tiny model".
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from engine.arith import BOS, EOS, PAD, UNK, VOCAB, Problem, sample_problems

SEQ_LEN = 16  # "<s>999+999=1998</s>" is 14 tokens
# The chat API tokenizes the rendered template without adding special tokens: the template itself starts
# with BOS, as the completions API's prompts do (the model never answers without it).
CHAT_TEMPLATE = "{{ bos_token }}{% for message in messages %}{{ message['content'] }}{% endfor %}"


def build_tokenizer() -> Any:
    """A character-level fast tokenizer: one token per character, BOS prepended, no spaces on decode."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=VOCAB, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, VOCAB[BOS])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=1024,
        chat_template=CHAT_TEMPLATE,
    )


def build_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        bos_token_id=VOCAB[BOS],
        eos_token_id=VOCAB[EOS],
        pad_token_id=VOCAB[PAD],
        tie_word_embeddings=False,
        torch_dtype="float32",
    )


def encode_batch(problems: list[Problem]) -> tuple[Any, Any, Any]:
    """input_ids, attention_mask and labels; loss only on the answer and EOS.

    Labels are aligned with input positions: transformers shifts them itself.
    """
    import torch

    ids = torch.full((len(problems), SEQ_LEN), VOCAB[PAD], dtype=torch.long)
    labels = torch.full_like(ids, -100)
    for row, p in enumerate(problems):
        prompt = [VOCAB[BOS]] + [VOCAB[c] for c in p.prompt]
        answer = [VOCAB[c] for c in p.answer] + [VOCAB[EOS]]
        seq = prompt + answer
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, len(prompt) : len(seq)] = torch.tensor(answer)
    return ids, (ids != VOCAB[PAD]).long(), labels


def train(out: Path, steps: int, batch_size: int, seed: int, lr: float) -> dict[str, float]:
    import torch
    from tqdm import tqdm
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    model = LlamaForCausalLM(build_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    model.train()
    started = time.perf_counter()
    loss_value = math.nan
    bar = tqdm(range(steps), desc="training arith model", unit="step")
    for step in bar:
        ids, mask, labels = encode_batch(sample_problems(batch_size, seed * 100_003 + step, held_out=False))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss_value:.4f}")
    seconds = time.perf_counter() - started

    model.eval()
    accuracy = greedy_accuracy(model, sample_problems(500, seed + 1, held_out=True))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out)
    report = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "final_loss": loss_value,
        "train_seconds": round(seconds, 1),
        "held_out_exact_match_hf": accuracy,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def greedy_accuracy(model: Any, problems: list[Problem]) -> float:
    """Exact-match of greedy answers, decoded in one batch with transformers (no vLLM needed)."""
    import torch

    prompts = [[VOCAB[BOS]] + [VOCAB[c] for c in p.prompt] for p in problems]
    width = max(len(p) for p in prompts)
    # left-pad so that every prompt ends at the same position
    ids = torch.tensor([[VOCAB[PAD]] * (width - len(p)) + p for p in prompts])
    mask = (ids != VOCAB[PAD]).long()
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=6,
            do_sample=False,
            eos_token_id=VOCAB[EOS],
            pad_token_id=VOCAB[PAD],
        )
    inverse = {i: t for t, i in VOCAB.items()}
    correct = 0
    for p, row in zip(problems, out[:, width:].tolist(), strict=True):
        text = "".join(inverse[i] for i in row).split(EOS)[0].replace(PAD, "")
        correct += text == p.answer
    return correct / len(problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/models/arith"))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    report = train(args.out, args.steps, args.batch_size, args.seed, args.lr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
