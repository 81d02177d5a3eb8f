"""Asking one pool the items of a suite, through the gateway (requests land with source `eval` and the run id),
and scoring each answer. The only module of the evals that talks HTTP. Answers are asked for streamed, so the
gateway records TTFT and TPOT of eval requests (the rollout judges latency on them), and scored whole. Each
request names its item (ITEM_HEADER, stored as requests.item_id), so two pools' rows of one run pair up item by
item.

A chunk of items runs in its own event loop with at most `concurrency` requests in flight (what one Ray task
does, evals/job.py). Transient failures are retried (collector/client/completions.py) and every attempt is
counted. When a pool fails `breaker` items in a row it is taken as down: the chunk's remaining items are not
sent and are recorded with that error, and the next chunk starts with one probing request, so a pool that
went away costs seconds, not a timeout per item, and a pool that comes back is asked again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from collector.client.completions import RequestFailed, post_json
from collector.client.targets import PoolTarget
from collector.vocabulary import ITEM_HEADER, REQUEST_ID_HEADER, RUN_HEADER, SOURCE_HEADER, Source
from evals.scorers import score
from evals.suites import Item


@dataclass(frozen=True)
class AskConfig:
    concurrency: int = 8
    retries: int = 2
    backoff_s: float = 0.2
    timeout_s: float = 60.0
    breaker: int = 5  # consecutive failed items after which the pool counts as down for the chunk


@dataclass(frozen=True)
class ItemResult:
    item_id: str
    correct: bool | None  # None: the item was not scored (error)
    score: float | None
    output: str | None
    error: str | None
    attempts: int  # requests sent for the item (0 when the breaker kept it back)


@dataclass(frozen=True)
class ChunkResult:
    pool: str
    results: tuple[ItemResult, ...]
    failing_streak: int  # consecutive failed items at the end of the chunk (carried into the next one)


def answer_text(item: Item, answer: dict[str, Any]) -> str:
    """The generated text of a completions or chat completions answer; ValueError when it has none."""
    try:
        choice = answer["choices"][0]
        text = choice["text"] if item.prompt is not None else choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        where = "choices[0].text" if item.prompt is not None else "choices[0].message.content"
        raise ValueError(f"the answer has no {where} ({exc!r})") from None
    if not isinstance(text, str):
        raise ValueError(f"the answer's text is {type(text).__name__}, not a string")
    return text


class PoolAsker:
    def __init__(self, target: PoolTarget, http: httpx.AsyncClient, config: AskConfig) -> None:
        self.target = target
        self.http = http
        self.config = config

    async def ask(self, item: Item) -> ItemResult:
        headers = {
            SOURCE_HEADER: Source.eval.value, RUN_HEADER: self.target.run_id,
            REQUEST_ID_HEADER: f"eval-{self.target.run_id}-{self.target.pool}-{item.id}", ITEM_HEADER: item.id,
        }  # fmt: skip
        url = f"{self.target.base_url}/{item.operation}"
        try:
            answer, attempts = await post_json(
                self.http, url, item.request_body(self.target.model), headers,
                retries=self.config.retries, backoff_s=self.config.backoff_s, stream=True,
            )  # fmt: skip
        except RequestFailed as exc:
            return ItemResult(item.id, None, None, None, str(exc), exc.attempts)
        try:
            text = answer_text(item, answer)
        except ValueError as exc:
            return ItemResult(item.id, None, None, None, f"malformed answer: {exc}", attempts)
        scored = score(item.scorer, item.expected, text, item.tolerance)
        return ItemResult(item.id, scored.correct, scored.score, text, None, attempts)


async def ask_chunk(asker: PoolAsker, items: Sequence[Item], failing_streak: int = 0) -> ChunkResult:
    """Every item of the chunk, in order of the items; see the module docstring for the breaker."""
    config = asker.config
    slots = asyncio.Semaphore(config.concurrency)
    streak = failing_streak
    last_error = ""
    probe_first = streak >= config.breaker  # the pool was down at the end of the last chunk: ask once first

    async def one(item: Item) -> ItemResult:
        nonlocal streak, last_error
        async with slots:
            if streak >= config.breaker:
                return ItemResult(item.id, None, None, None, f"not sent: pool {asker.target.pool} failed "
                                  f"{streak} items in a row (last: {last_error})", 0)  # fmt: skip
            result = await asker.ask(item)
        if result.error is None:
            streak = 0
        else:
            streak, last_error = streak + 1, result.error
        return result

    results: list[ItemResult] = []
    rest = list(items)
    if probe_first and rest:
        first = await asker.ask(rest.pop(0))
        results.append(first)
        streak, last_error = (0, "") if first.error is None else (config.breaker, first.error)
    results += await asyncio.gather(*(one(item) for item in rest))
    return ChunkResult(asker.target.pool, tuple(results), streak)


async def _ask_chunk(target: PoolTarget, items: Sequence[Item], config: AskConfig, streak: int) -> ChunkResult:
    limits = httpx.Limits(max_connections=config.concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(config.timeout_s), limits=limits) as http:
        return await ask_chunk(PoolAsker(target, http, config), items, streak)


def run_chunk(target: PoolTarget, items: Sequence[Item], config: AskConfig, failing_streak: int = 0) -> ChunkResult:
    """One chunk to completion in its own event loop (what a Ray task or a worker thread runs)."""
    return asyncio.run(_ask_chunk(target, items, config, failing_streak))
