"""Work fanned out as Ray tasks next to the pools (the canary's and the evals' requests).

Where: the cluster at RAY_ADDRESS if set, else the engine's own Ray cluster (the one `inferwatch engine up`
started or joined), else a local Ray started for the run. On a real fleet the tasks then run inside the
cluster, next to the pools, and only the answers travel back. Tasks ask for no CPU (`num_cpus=0`): the pools
hold the cluster's CPUs and a task spends its time waiting on HTTP, so the caller bounds how many run at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def ray_session(engine_ray_address: str | None, namespace: str) -> Iterator[None]:
    """Connected to Ray for the block; disconnects only if it connected."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=os.environ.get("RAY_ADDRESS") or engine_ray_address or None, namespace=namespace,
            logging_level="ERROR", log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}},
        )  # fmt: skip
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


class RayTasks:
    """submit/wait_one over one function as a Ray task (inside a ray_session). A task that dies with its
    worker is retried once; an exception raised by the function comes back from wait_one."""

    def __init__(self, function: Callable[..., Any]) -> None:
        import ray

        self._ray = ray
        self._remote = ray.remote(num_cpus=0, max_retries=1)(function)

    def submit(self, *args: Any) -> Any:
        return self._remote.remote(*args)

    def wait_one(self, pending: list[Any]) -> tuple[Any, Any]:
        """The first of `pending` to finish, and its result."""
        done, _ = self._ray.wait(pending, num_returns=1)
        return done[0], self._ray.get(done[0])


class ThreadTasks:
    """The same interface in this process: one thread per task (each task runs its own event loop)."""

    def __init__(self, function: Callable[..., Any], max_workers: int = 32) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._function = function
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="inferwatch-task")

    def submit(self, *args: Any) -> Any:
        return self._pool.submit(self._function, *args)

    def wait_one(self, pending: list[Any]) -> tuple[Any, Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(pending, return_when=FIRST_COMPLETED)
        first = next(f for f in pending if f in done)
        return first, first.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
