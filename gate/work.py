"""Like-for-like work (pure): a pool's cost per token depends on what it served (a long prompt costs less per
token than a long answer) and on how loaded it was (busy time is shared among the requests in flight), so the
gate compares two pools' $/1M tokens only when they served alike work in the window: the same request rate and
the same tokens per request, each within a tolerance (data/gate.yaml `like_for_like`). A rollout's judged
requests (the eval requests both pools got alike) pass by construction."""

from __future__ import annotations

from dataclasses import dataclass

from collector.fleet.figures import Figures


@dataclass(frozen=True)
class Work:
    """What a pool served in a window: the load (requests per second) and the mix (tokens per ok request)."""

    requests: int
    ok: int
    prompt_tokens: int
    completion_tokens: int
    span_s: float

    @classmethod
    def of(cls, f: Figures) -> Work:
        return cls(f.counts.requests, f.counts.ok, f.tokens.prompt, f.tokens.completion, f.span_s)

    @property
    def rate(self) -> float | None:
        return self.requests / self.span_s if self.span_s > 0 else None

    def per_ok(self, tokens: int) -> float | None:
        return tokens / self.ok if self.ok else None


def _apart(baseline: float | None, candidate: float | None, tolerance: float) -> bool:
    if baseline is None or candidate is None:
        return baseline is not candidate
    high = max(abs(baseline), abs(candidate))
    return high > 0 and abs(candidate - baseline) / high > tolerance


def unlike_work(baseline: Work, candidate: Work, *, mix: float, load: float) -> str | None:
    """Why the two pools' work is not alike (None when it is): request rate apart by more than `load`, or prompt
    or completion tokens per ok request by more than `mix` (relative to the larger)."""
    found = []
    if _apart(baseline.rate, candidate.rate, load):
        found.append(f"load {_num(baseline.rate)} vs {_num(candidate.rate)} requests/s (more than {load:.0%} apart)")
    for name, b, c in (
        ("prompt", baseline.per_ok(baseline.prompt_tokens), candidate.per_ok(candidate.prompt_tokens)),
        ("completion", baseline.per_ok(baseline.completion_tokens), candidate.per_ok(candidate.completion_tokens)),
    ):
        if _apart(b, c, mix):
            found.append(f"{name} tokens per request {_num(b)} vs {_num(c)} (more than {mix:.0%} apart)")
    if not found:
        return None
    return (
        "the pools served unlike work in the window (baseline vs candidate: " + "; ".join(found) + "): "
        "compare cost over the same items under the same load, e.g. a rollout (its eval requests) or a load run "
        "sent to both pools alike"
    )


def _num(x: float | None) -> str:
    return "none" if x is None else f"{x:.3g}"
