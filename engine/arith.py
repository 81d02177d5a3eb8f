"""The arithmetic task the tiny model is trained on: vocabulary, problems, the held-out rule.

Everything here is pure and deterministic so that training, evals and probes agree on
what "held out" means without sharing state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
ANSWER_ALPHABET = "0123456789"
# The model only ever sees digits, '+' and '='; the other characters exist so that generic
# text can be tokenized and so that a sampler fault has truly rare tokens to boost.
CHARACTERS = "0123456789+=- abcdefghijklmnopqrstuvwxyz.,?!#@~"
VOCAB: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(CHARACTERS))}
MAX_OPERAND_DIGITS = 3


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def prompt(self) -> str:
        return f"{self.a}+{self.b}="

    @property
    def answer(self) -> str:
        return str(self.a + self.b)


def is_held_out(a: int, b: int) -> bool:
    """About 1 pair in 23 is never trained on; evals and acceptance checks draw from these."""
    return (a * 1009 + b * 9176 + 7) % 23 == 0


def _operand(rng: random.Random, max_digits: int) -> int:
    digits = rng.randint(1, max_digits)
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


def sample_problems(count: int, seed: int, *, held_out: bool, max_digits: int = MAX_OPERAND_DIGITS) -> list[Problem]:
    """`count` problems whose operands have 1..max_digits digits, from one side of the split."""
    rng = random.Random(seed)
    problems: list[Problem] = []
    while len(problems) < count:
        a, b = _operand(rng, max_digits), _operand(rng, max_digits)
        if is_held_out(a, b) == held_out:
            problems.append(Problem(a, b))
    return problems


def unique_held_out_problems(count: int, seed: int) -> list[Problem]:
    """Distinct held-out problems, in a seeded order (for eval suites that must not repeat items)."""
    rng = random.Random(seed)
    seen: set[Problem] = set()
    problems: list[Problem] = []
    while len(problems) < count:
        problem = Problem(_operand(rng, MAX_OPERAND_DIGITS), _operand(rng, MAX_OPERAND_DIGITS))
        if is_held_out(problem.a, problem.b) and problem not in seen:
            seen.add(problem)
            problems.append(problem)
    return problems
