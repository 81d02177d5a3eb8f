"""Where a request goes: the pool a client names (model id `<model>@<pool>` or header X-Inferwatch-Pool),
and, for canary rollouts, a weighted split that sends a share of one pool's traffic to a candidate pool.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from engine.specs import PoolSet
from engine.state import EngineState


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
    root: str | None = None  # the weights' path or hub id (a tokenizer loads from it); vLLM's model card `root`
    max_model_len: int | None = None  # the spec's engine_args.max_model_len; None: not set there

    @property
    def app_root(self) -> str:
        """The pool's server root, where vLLM and Ray Serve LLM serve /tokenize and /detokenize."""
        return self.upstream.removesuffix("/").removesuffix("/v1")


@dataclass(frozen=True)
class Split:
    """Send `weight` (0..1) of the requests addressed to `baseline` to `candidate` instead."""

    baseline: str
    candidate: str
    weight: float
    expires_at: float | None = None  # time.monotonic(); a rollout's split lapses unless renewed

    def __str__(self) -> str:
        return f"{self.baseline}={self.candidate}:{self.weight:g}"

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
                root=spec.model,
                max_model_len=_max_model_len(spec.engine_args),
            )
        )
    return routes


def _max_model_len(engine_args: dict[str, object]) -> int | None:
    value = engine_args.get("max_model_len")
    return value if type(value) is int and value > 0 else None


class Router:
    """Routes requests to pools. Splits can change while the collector runs (a rollout sets, renews and clears
    them); one with `expires_at` lapses by itself, so a rollout that dies leaves traffic on its baseline."""

    def __init__(
        self, routes: Iterable[Route], splits: Sequence[Split] = (), seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.routes = {r.pool: r for r in routes}
        self._by_model = {r.model_id: r for r in self.routes.values()}
        self._splits: dict[str, Split] = {}
        self._lock = threading.Lock()
        self._clock = clock
        for split in splits:
            self.set_split(split)
        self._random = random.Random(seed)

    def set_split(self, split: Split, ttl_s: float | None = None) -> Split:
        """Add or replace the split of `split.baseline`; with `ttl_s`, it lapses unless set again in time."""
        for pool in (split.baseline, split.candidate):
            if pool not in self.routes:
                raise SplitError(f"split {split}: {self._unknown(pool)}")
        if split.baseline == split.candidate:
            raise SplitError(f"split {split}: the candidate must be another pool than the baseline")
        if not 0.0 <= split.weight <= 1.0:
            raise SplitError(f"split {split}: the weight is the candidate's share, between 0 and 1")
        if ttl_s is not None and not ttl_s > 0:
            raise SplitError(f"split {split}: ttl_s must be > 0")
        split = replace(split, expires_at=None if ttl_s is None else self._clock() + ttl_s)
        with self._lock:
            self._splits[split.baseline] = split
        return split

    def clear_split(self, baseline: str) -> Split | None:
        with self._lock:
            return self._splits.pop(baseline, None)

    @property
    def splits(self) -> dict[str, Split]:
        """The splits in force (lapsed ones are dropped)."""
        now = self._clock()
        with self._lock:
            for baseline in [b for b, s in self._splits.items() if s.expires_at is not None and s.expires_at <= now]:
                del self._splits[baseline]
            return dict(self._splits)

    def by_root(self, model: object) -> Route | None:
        """The first route whose weights are `model` (`vllm bench serve` without --model names them so)."""
        return next((r for r in self.routes.values() if r.root is not None and r.root == model), None)

    def _unknown(self, pool: str) -> str:
        return f"no pool {pool!r}; pools are {', '.join(self.routes)}"

    def resolve(self, model: object, pool_header: str | None, split: bool = True) -> Route:
        """The pool named by the header, else by the model id; then the split, if that pool has one and `split`
        (the canary and evals measure the pool they name: no split applies to them)."""
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
        chosen = self._splits.get(route.pool) if split else None
        if chosen is not None and chosen.expires_at is not None and chosen.expires_at <= self._clock():
            chosen = None
        if chosen is not None and self._random.random() < chosen.weight:
            return self.routes[chosen.candidate]
        return route
