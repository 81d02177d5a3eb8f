"""Where a request goes: the pool a client names (model id `<model>@<pool>` or header X-Inferwatch-Pool),
and, for canary rollouts, a weighted split that sends a share of one pool's traffic to a candidate pool.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.lifecycle import EngineState
from engine.specs import PoolSet


class RouteError(LookupError):
    """No pool for a request; the message names what was asked and what exists."""


class SplitError(ValueError):
    """A split that does not parse or names a pool that does not exist."""


@dataclass(frozen=True)
class Route:
    pool: str
    model_id: str  # what the upstream serves, e.g. arith@ref
    upstream: str  # OpenAI base URL of the pool, ending in /v1
    revision: str
    hardware: str
    accelerator: str
    price_per_hour: float  # USD per replica-hour
    replicas: int


@dataclass(frozen=True)
class Split:
    """Send `weight` (0..1) of the requests addressed to `baseline` to `candidate` instead."""

    baseline: str
    candidate: str
    weight: float

    @classmethod
    def parse(cls, text: str) -> Split:
        """`baseline=candidate:weight`, e.g. `ref=bf16:0.1`."""
        try:
            baseline, rest = text.split("=", 1)
            candidate, weight = rest.rsplit(":", 1)
            split = cls(baseline.strip(), candidate.strip(), float(weight))
        except ValueError:
            raise SplitError(f"split {text!r}: write it as baseline=candidate:weight, e.g. ref=bf16:0.1") from None
        if not 0.0 <= split.weight <= 1.0:
            raise SplitError(f"split {text!r}: the weight is the candidate's share, between 0 and 1")
        return split


def routes_from(pools: PoolSet, state: EngineState) -> list[Route]:
    """A route per pool the engine runs, with the spec's revision, hardware and price."""
    routes = []
    for endpoint in state.pools:
        spec = pools.get(endpoint.name)
        routes.append(
            Route(
                pool=spec.name,
                model_id=endpoint.model_id,
                upstream=endpoint.base_url,
                revision=spec.revision,
                hardware=str(spec.hardware),
                accelerator=spec.accelerator,
                price_per_hour=spec.price_per_hour or 0.0,
                replicas=spec.replicas,
            )
        )
    return routes


class Router:
    def __init__(self, routes: Iterable[Route], splits: Sequence[Split] = (), seed: int | None = None) -> None:
        self.routes = {r.pool: r for r in routes}
        self._by_model = {r.model_id: r for r in self.routes.values()}
        self.splits = {s.baseline: s for s in splits}
        for split in splits:
            for pool in (split.baseline, split.candidate):
                if pool not in self.routes:
                    raise SplitError(f"split {split.baseline}={split.candidate}: {self._unknown(pool)}")
        self._random = random.Random(seed)

    def _unknown(self, pool: str) -> str:
        return f"no pool {pool!r}; pools are {', '.join(self.routes)}"

    def resolve(self, model: object, pool_header: str | None) -> Route:
        """The pool named by the header, else by the model id; then the split, if that pool has one."""
        if pool_header:
            route = self.routes.get(pool_header.strip())
            if route is None:
                raise RouteError(f"header X-Inferwatch-Pool: {self._unknown(pool_header.strip())}")
        elif isinstance(model, str) and model in self._by_model:
            route = self._by_model[model]
        elif isinstance(model, str) and "@" in model:
            pool = model.rsplit("@", 1)[1]
            route = self.routes.get(pool)
            if route is None:
                raise RouteError(f"model {model!r}: {self._unknown(pool)}")
        else:
            models = ", ".join(self._by_model)
            raise RouteError(f"model {model!r}: name a pool as <model>@<pool> ({models}) or set X-Inferwatch-Pool")
        split = self.splits.get(route.pool)
        if split is not None and self._random.random() < split.weight:
            return self.routes[split.candidate]
        return route
