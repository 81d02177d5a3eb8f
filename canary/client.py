"""What the canary asks a pool, over the OpenAI completions API (through the gateway: the requests are
recorded with source `canary`). The only module of the canary that does I/O.

- teacher-forced: the probe's prompt + continuation with `max_tokens: 1` and vLLM's `prompt_logprobs: K`:
  per position of the text after the first token, the top-K logprobs (plus the actual token with its rank).
- generation: `temperature` 0 (greedy) or a production temperature with a `seed`, `logprobs: K` and
  `return_tokens_as_token_ids`, so that tokens compare by id ("token_id:17") and not by how they decode.

Tokens are keyed by id everywhere: two tokens can decode to the same text. Each request names its work item
(ITEM_HEADER) as `probe:mode:seed` (the modes of the probes table), so two pools' rows compare item by item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from canary.probes import Probe
from collector.client.completions import RequestFailed, post_json
from collector.client.targets import PoolTarget
from collector.vocabulary import ITEM_HEADER, RUN_HEADER, SOURCE_HEADER, Source


class CanaryError(RuntimeError):
    """A pool did not answer a probe as the API promises; the message names the pool, probe and cause."""


@dataclass(frozen=True)
class Scored:
    """Teacher-forced: one distribution per scored position, keyed by token id."""

    probe_id: str
    positions: tuple[dict[str, float], ...]  # the top-K and the scored token itself, with their logprobs


@dataclass(frozen=True)
class Generated:
    probe_id: str
    text: str
    tokens: tuple[str, ...]  # "token_id:N"
    top: tuple[dict[str, float], ...]  # the pool's own top logprobs at each generated position
    finish_reason: str | None
    seed: int | None = None
    concurrency: int = 1


def item_id(probe: Probe, mode: str, seed: int | None) -> str:
    """The work item a canary request is: `probe:mode:seed` (seed `-` when there is none)."""
    return f"{probe.id}:{mode}:{'-' if seed is None else seed}"


class PoolClient:
    def __init__(self, target: PoolTarget, http: httpx.AsyncClient, retries: int = 2) -> None:
        self.target = target
        self.http = http
        self.retries = retries
        self.headers = {SOURCE_HEADER: Source.canary.value, RUN_HEADER: target.run_id}

    async def _complete(self, probe: Probe, body: dict[str, Any], mode: str) -> dict[str, Any]:
        url = f"{self.target.base_url}/completions"
        headers = {**self.headers, ITEM_HEADER: item_id(probe, mode, body.get("seed"))}
        try:
            answer, _ = await post_json(
                self.http, url, {"model": self.target.model, **body}, headers, retries=self.retries
            )
        except RequestFailed as exc:
            raise CanaryError(f"pool {self.target.pool}, probe {probe.id}: {exc}") from None
        return answer

    async def score(self, probe: Probe, top_k: int) -> Scored:
        answer = await self._complete(
            probe, {"prompt": probe.prompt + probe.continuation, "max_tokens": 1, "temperature": 0,
                    "prompt_logprobs": top_k}, "teacher_forced",
        )  # fmt: skip
        try:
            entries = answer["choices"][0]["prompt_logprobs"][1:]  # the first token has no context
            positions = tuple({tid: float(e["logprob"]) for tid, e in entry.items()} for entry in entries)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CanaryError(f"pool {self.target.pool}, probe {probe.id}: no prompt_logprobs ({exc!r})") from None
        return Scored(probe.id, positions)

    async def generate(
        self, probe: Probe, temperature: float, top_k: int, seed: int | None = None, concurrency: int = 1
    ) -> Generated:
        body: dict[str, Any] = {
            "prompt": probe.prompt, "max_tokens": probe.max_tokens, "temperature": temperature,
            "logprobs": top_k, "return_tokens_as_token_ids": True,
        }  # fmt: skip
        if seed is not None:
            body["seed"] = seed
        answer = await self._complete(probe, body, "sampled" if temperature > 0 else f"greedy@{concurrency}")
        try:
            choice = answer["choices"][0]
            logprobs = choice["logprobs"] or {}
            tokens = tuple(logprobs.get("tokens") or ())
            top = tuple({k: float(v) for k, v in (t or {}).items()} for t in logprobs.get("top_logprobs") or ())
            return Generated(probe.id, choice["text"], tokens, top, choice.get("finish_reason"), seed, concurrency)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise CanaryError(f"pool {self.target.pool}, probe {probe.id}: malformed completion ({exc!r})") from None


async def gather_bounded(coroutines: Sequence[Any], concurrency: int) -> list[Any]:
    """Run the coroutines with at most `concurrency` in flight (the pool sees batches of that size)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(coroutine: Any) -> Any:
        async with slots:
            return await coroutine

    return list(await asyncio.gather(*(one(c) for c in coroutines)))
