"""The tenant the authentication layer put in the ASGI scope (scope["inferwatch.tenant"]) is stored in the
request's row (requests.tenant, migration 7); without one the column is null. Streams, whole answers and
requests the pool refused alike."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.collector.faulty_upstream import FaultyUpstream
from tests.collector.gateway.served import ServedGateway, serve_gateway


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedGateway]:
    with FaultyUpstream() as upstream, serve_gateway(upstream, tmp_path_factory.mktemp("gw")) as gateway:
        yield gateway


@pytest.mark.parametrize(
    ("model", "stream", "tenant"),
    [
        ("arith@ok", True, "acme"),
        ("arith@ok", False, "globex"),
        ("arith@garbage", True, "acme"),
        ("arith@ok", True, None),
    ],
)
def test_the_row_carries_the_tenant_of_the_scope(
    served: ServedGateway, model: str, stream: bool, tenant: str | None
) -> None:
    request_id = f"tenant-{model}-{stream}-{tenant}"
    headers = {"x-request-id": request_id, **({"x-test-tenant": tenant} if tenant else {})}
    body = {"model": model, "prompt": "1", "stream": stream}
    httpx.post(f"{served.url}/v1/completions", json=body, headers=headers, timeout=30)
    row = served.row(request_id)
    assert (row["tenant"], row["pool"]) == (tenant, model.split("@")[1])
