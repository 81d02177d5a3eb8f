"""Per-item scoring: pure functions from (what the suite expects, what the pool answered) to a Score.

Every scorer strips surrounding whitespace from the output first (a trailing newline is not a wrong answer).
- exact: the output equals `expected`.
- numeric: the first number in the output is within `tolerance` (absolute) of `expected`.
- regex: `expected` is a Python regular expression that must match the whole output (re.fullmatch).
- contains: `expected` occurs in the output.
- charset: every character of the output is one of the characters of `expected` (an empty output passes);
  the score is the share of characters inside the alphabet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Scorer(StrEnum):
    exact = "exact"
    numeric = "numeric"
    regex = "regex"
    contains = "contains"
    charset = "charset"


@dataclass(frozen=True)
class Score:
    correct: bool
    score: float  # 1.0 or 0.0, except charset: the share of characters inside the alphabet


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def first_number(text: str) -> float | None:
    found = _NUMBER.search(text)
    return float(found.group()) if found else None


def _binary(correct: bool) -> Score:
    return Score(correct, 1.0 if correct else 0.0)


def score(scorer: Scorer, expected: str, output: str, tolerance: float = 0.0) -> Score:
    text = output.strip()
    if scorer is Scorer.exact:
        return _binary(text == expected)
    if scorer is Scorer.numeric:
        number = first_number(text)
        return _binary(number is not None and abs(number - float(expected)) <= tolerance)
    if scorer is Scorer.regex:
        return _binary(re.fullmatch(expected, text) is not None)
    if scorer is Scorer.contains:
        return _binary(expected in text)
    inside = sum(ch in expected for ch in text)
    return Score(inside == len(text), inside / len(text) if text else 1.0)
