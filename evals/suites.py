"""Eval suites: JSONL files under data/evals/, one item per line.

    {"id": "arith-v1-0001", "prompt": "347+85=", "expected": "432", "scorer": "exact", "max_tokens": 6}
    {"id": "chat-0001", "messages": [{"role": "user", "content": "12+34="}], "expected": "46", "scorer": "exact"}

- `id`: unique in the file and stable across versions (a changed item gets a new id); pools are compared
  item by item on it.
- `prompt` (the completions API) or `messages` (the chat completions API): exactly one of the two.
- `expected` and `scorer` (evals/scorers.py): exact | numeric (with `tolerance`, absolute) | regex (a pattern
  the whole output must match) | contains | charset (`expected` is the alphabet the output must stay in).
- sampling: `max_tokens` (default 16), `temperature` (default 0: greedy), `seed`, `stop`.

A malformed line is an error naming the file, the line and the field (engine/datafiles.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.datafiles import read_jsonl, resolve
from evals.scorers import Scorer

EVALS_DIR = Path(__file__).resolve().parent.parent / "data" / "evals"


class SuiteError(ValueError):
    """A suite that cannot be used; the message names the file, line and field."""


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    prompt: str | None = Field(default=None, min_length=1)
    messages: tuple[Message, ...] | None = Field(default=None, min_length=1)
    expected: str
    scorer: Scorer
    tolerance: float = Field(default=0.0, ge=0.0)
    max_tokens: int = Field(default=16, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = None
    stop: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> Item:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt (completions) or messages (chat)")
        if self.scorer is Scorer.numeric:
            try:
                float(self.expected)
            except ValueError:
                raise ValueError(f"expected must be a number for the numeric scorer, got {self.expected!r}") from None
        if self.scorer is Scorer.regex:
            try:
                re.compile(self.expected)
            except re.error as exc:
                raise ValueError(f"expected is not a regular expression ({exc})") from None
        if self.scorer is Scorer.charset and not self.expected:
            raise ValueError("expected (the alphabet) must not be empty for the charset scorer")
        return self

    @property
    def operation(self) -> str:
        return "completions" if self.prompt is not None else "chat/completions"

    def request_body(self, model: str) -> dict[str, Any]:
        """The OpenAI request for this item (the runner adds stream and stream_options)."""
        body: dict[str, Any] = {"model": model, "max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.prompt is not None:
            body["prompt"] = self.prompt
        else:
            body["messages"] = [m.model_dump() for m in self.messages or ()]
        if self.seed is not None:
            body["seed"] = self.seed
        if self.stop:
            body["stop"] = list(self.stop)
        return body


class Suite(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # the file's stem, e.g. arith-v1
    items: tuple[Item, ...]


def load_suite_file(path: Path) -> Suite:
    return Suite(name=path.stem, items=tuple(read_jsonl(path, Item, SuiteError, "items")))


def load_suite(name: str, directory: Path = EVALS_DIR) -> Suite:
    """A built-in suite by name (e.g. arith-v1), or a path to a .jsonl file of your own."""
    return load_suite_file(resolve(name, directory, SuiteError, "suite"))
