"""The canary's collection as Ray tasks: one task per pool (and one for the reference's A/A replay).

Where: the cluster at RAY_ADDRESS if set, else the engine's own Ray cluster (the one `inferwatch engine up`
started or joined), else a local Ray started for the run. On a real fleet the tasks then run inside the
cluster, next to the pools, and only the answers travel back. Tasks ask for no CPU (`num_cpus=0`): the
pools hold the cluster's CPUs, and a probe task spends its time waiting on HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from canary.analysis import PoolAnswers
from canary.probes import Probe
from canary.runner import CanaryConfig, CollectAll, CollectJob, collect_one

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def ray_collector(engine_ray_address: str | None) -> CollectAll:
    address = os.environ.get("RAY_ADDRESS") or engine_ray_address or None

    def collect_all(jobs: Sequence[CollectJob], probes: Sequence[Probe], config: CanaryConfig) -> list[PoolAnswers]:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(
                address=address, namespace="inferwatch-canary", logging_level="ERROR", log_to_driver=False,
                runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}},
            )  # fmt: skip
        try:
            task = ray.remote(num_cpus=0, max_retries=1)(collect_one)
            probes_ref = ray.put(list(probes))
            answers: list[PoolAnswers] = ray.get([task.remote(job, probes_ref, config) for job in jobs])
            return answers
        finally:
            if started_here:
                ray.shutdown()

    return collect_all
