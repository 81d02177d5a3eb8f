"""The canary's collection as Ray tasks (engine/ray_tasks.py): one task per pool, and one for the
reference's A/A replay."""

from __future__ import annotations

from collections.abc import Sequence

from canary.analysis import PoolAnswers
from canary.probes import Probe
from canary.runner import CanaryConfig, CollectAll, CollectJob, collect_one
from engine.ray_tasks import RayTasks, ray_session


def ray_collector(engine_ray_address: str | None) -> CollectAll:
    def collect_all(jobs: Sequence[CollectJob], probes: Sequence[Probe], config: CanaryConfig) -> list[PoolAnswers]:
        import ray

        with ray_session(engine_ray_address, "inferwatch-canary"):
            tasks = RayTasks(collect_one)
            probes_ref = ray.put(list(probes))
            answers: list[PoolAnswers] = ray.get([tasks.submit(job, probes_ref, config) for job in jobs])
            return answers

    return collect_all
