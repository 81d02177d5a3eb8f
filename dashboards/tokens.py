"""How a token reads: the canary keys tokens by id ("token_id:17"); a local model's tokenizer.json says what
each id is. File I/O only at `vocabulary`; `label` is pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

PREFIX = "token_id:"


def vocabulary(model: str) -> dict[str, str]:
    """ "token_id:N" -> the token's text, from `<model>/tokenizer.json` (word-level or BPE vocabularies and the
    added tokens); empty when the model is not a local directory with one or the file cannot be read."""
    path = Path(model) / "tokenizer.json"
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    vocab = spec.get("model", {}).get("vocab")
    found = {f"{PREFIX}{i}": str(t) for t, i in vocab.items()} if isinstance(vocab, dict) else {}
    found.update({f"{PREFIX}{t['id']}": str(t["content"]) for t in spec.get("added_tokens", []) if "id" in t})
    return found


def label(token: str | None, vocab: Mapping[str, str]) -> str:
    """`'3' (7)` for "token_id:7" when the vocabulary knows it, else the token as stored; "∅" past the end."""
    if token is None:
        return "∅"
    text = vocab.get(token)
    if text is None:
        return token
    return f"{text!r} ({token.removeprefix(PREFIX)})"
