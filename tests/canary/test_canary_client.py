"""The canary's requests name their work item (`probe:mode:seed`) in ITEM_HEADER, so the gate can compare two
pools' rows of one canary run item by item; sent to a scripted pool over real HTTP on loopback."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from canary.client import CanaryError, PoolClient
from canary.probes import Probe
from collector.client.targets import PoolTarget
from collector.vocabulary import ITEM_HEADER, RUN_HEADER, SOURCE_HEADER
from tests.collector.faulty_upstream import FaultyUpstream

PROBE = Probe(id="arith-v1-0007", prompt="3+4=", continuation="7", expected="7", alphabet="0123456789", max_tokens=4)


async def ask_every_mode(url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        client = PoolClient(PoolTarget(f"{url}/ok/v1", "m", "ok", "cn42"), http, retries=0)
        # the scripted pool sends no logprobs: every answer is refused, after its request went out
        with pytest.raises(CanaryError, match="malformed completion"):
            await client.generate(PROBE, 0.0, 5, concurrency=4)
        with pytest.raises(CanaryError, match="malformed completion"):
            await client.generate(PROBE, 0.8, 5, seed=11)
        with pytest.raises(CanaryError, match="no prompt_logprobs"):
            await client.score(PROBE, 5)


def test_each_request_names_its_probe_mode_and_seed() -> None:
    with FaultyUpstream() as upstream:
        asyncio.run(ask_every_mode(upstream.url))
    headers = [r["headers"] for r in upstream.received]
    # greedy at concurrency 4 has no seed; sampled carries its seed; teacher-forced scoring has none
    assert [h[ITEM_HEADER] for h in headers] == [
        "arith-v1-0007:greedy@4:-", "arith-v1-0007:sampled:11", "arith-v1-0007:teacher_forced:-",
    ]  # fmt: skip
    assert all(h[SOURCE_HEADER] == "canary" and h[RUN_HEADER] == "cn42" for h in headers)
