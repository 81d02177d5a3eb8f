"""Fanning a suite out over pools: the items of each pool in chunks, one chunk per pool in flight at a time,
as tasks (Ray tasks next to the pools, or threads in this process: engine/ray_tasks.py). A finished chunk
is handed to `on_chunk` at once (the job stores its rows and moves the progress bar), and the next chunk of
that pool starts with the pool's failing streak, so the breaker (evals/runner.py) spans chunks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from collector.client.targets import PoolTarget
from evals.runner import AskConfig, ChunkResult
from evals.suites import Item


class Tasks(Protocol):
    def submit(self, *args: Any) -> Any: ...

    def wait_one(self, pending: list[Any]) -> tuple[Any, Any]: ...


def chunked(items: Sequence[Item], size: int) -> list[list[Item]]:
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def fan_out(
    targets: Mapping[str, PoolTarget],
    items: Sequence[Item],
    config: AskConfig,
    tasks: Tasks,
    on_chunk: Callable[[ChunkResult], None],
    chunk_size: int = 50,
) -> None:
    """Every item to every target; returns when all chunks are done. `tasks` runs `run_chunk`."""
    chunks = chunked(items, chunk_size)
    in_flight: dict[Any, tuple[str, int]] = {}  # task handle -> (pool, index of its chunk)
    for pool, target in targets.items():
        if chunks:
            in_flight[tasks.submit(target, chunks[0], config, 0)] = (pool, 0)
    while in_flight:
        handle, result = tasks.wait_one(list(in_flight))
        pool, index = in_flight.pop(handle)
        on_chunk(result)
        if index + 1 < len(chunks):
            in_flight[tasks.submit(targets[pool], chunks[index + 1], config, result.failing_streak)] = (pool, index + 1)
