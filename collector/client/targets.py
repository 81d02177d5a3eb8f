"""Where a client's request goes: a pool's model id behind an OpenAI base URL (usually the gateway's), and the
run the request belongs to. The canary's probes and the evals' items are both sent to one of these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolTarget:
    base_url: str  # OpenAI base URL, ending in /v1
    model: str  # model id, e.g. arith@bf16
    pool: str
    run_id: str
