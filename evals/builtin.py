"""The built-in suites, generated deterministically (`python -m evals.builtin`) and committed under data/evals/.

- arith-v1: 1,000 distinct addition problems with 1-3 digit operands, all from the held-out side of the
  tiny model's training split (engine/arith.py), scored exactly, greedy.
- format-v1: the shape of the answers rather than their value: the output stays in the digits (charset), is
  one number without leading zeros (regex), is within 10 of the sum (numeric), contains the sum (contains),
  and the same questions over the chat API (exact). A pool that slips rare tokens into its outputs fails here
  even when its sums are right.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.arith import ANSWER_ALPHABET, Problem, unique_held_out_problems
from evals.suites import EVALS_DIR, load_suite_file

ARITH_ITEMS = 1000
ANSWER_TOKENS = 6  # "1998" and EOS, with room for one stray token


def arith_items() -> list[dict[str, Any]]:
    return [
        {"id": f"arith-v1-{i:04d}", "prompt": p.prompt, "expected": p.answer, "scorer": "exact",
         "max_tokens": ANSWER_TOKENS}
        for i, p in enumerate(unique_held_out_problems(ARITH_ITEMS, seed=20261122))
    ]  # fmt: skip


def _format_item(kind: str, i: int, problem: Problem) -> dict[str, Any]:
    item: dict[str, Any] = {"id": f"format-v1-{kind}-{i:03d}", "prompt": problem.prompt, "max_tokens": 8}
    if kind == "charset":
        return {**item, "expected": ANSWER_ALPHABET, "scorer": "charset"}
    if kind == "number":
        return {**item, "expected": "0|[1-9][0-9]{0,3}", "scorer": "regex"}
    if kind == "near":
        return {**item, "expected": problem.answer, "scorer": "numeric", "tolerance": 10}
    if kind == "contains":
        return {**item, "expected": problem.answer, "scorer": "contains"}
    del item["prompt"]
    return {**item, "messages": [{"role": "user", "content": problem.prompt}], "expected": problem.answer,
            "scorer": "exact"}  # fmt: skip


FORMAT_KINDS = {"charset": 150, "number": 100, "near": 100, "contains": 50, "chat": 50}


def format_items() -> list[dict[str, Any]]:
    problems = iter(unique_held_out_problems(sum(FORMAT_KINDS.values()), seed=7))
    return [_format_item(kind, i, next(problems)) for kind, count in FORMAT_KINDS.items() for i in range(count)]


def write_suite(path: Path, items: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    load_suite_file(path)  # what we write must load


def main(directory: Path = EVALS_DIR) -> None:
    write_suite(directory / "arith-v1.jsonl", arith_items())
    write_suite(directory / "format-v1.jsonl", format_items())
    print(f"wrote arith-v1 and format-v1 under {directory}", file=sys.stderr)


if __name__ == "__main__":
    main()
