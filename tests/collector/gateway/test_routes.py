from __future__ import annotations

import pytest

from collector.gateway.routes import Route, RouteError, Router, Split


def route(pool: str) -> Route:
    return Route(pool, f"arith@{pool}", f"http://h/{pool}/v1", "r1", "cpu", "cpu", 0.0893, 1)


ROUTER = Router([route("ref"), route("bf16")])


def test_model_id_and_header_pick_the_pool() -> None:
    assert ROUTER.resolve("arith@bf16", None).pool == "bf16"
    assert ROUTER.resolve("other@ref", None).pool == "ref"  # the part after @ names the pool
    assert ROUTER.resolve("anything", "bf16").pool == "bf16"  # the header wins over the model


@pytest.mark.parametrize(
    ("model", "header", "message"),
    [
        ("arith@gpu", None, "model 'arith@gpu': no pool 'gpu'; pools are ref, bf16"),
        ("arith@ref", "tpu", "header X-Inferwatch-Pool: no pool 'tpu'; pools are ref, bf16"),
        ("arith", None, "name a pool as <model>@<pool> (arith@ref, arith@bf16) or set X-Inferwatch-Pool"),
        (None, None, "model None"),
    ],
)
def test_unknown_pools_are_named_with_the_ones_that_exist(model: object, header: str | None, message: str) -> None:
    with pytest.raises(RouteError) as info:
        ROUTER.resolve(model, header)
    assert message in str(info.value)


def test_weighted_split_sends_the_candidate_its_share() -> None:
    router = Router([route("ref"), route("bf16")], [Split.parse("ref=bf16:0.25")], seed=7)
    served = [router.resolve("arith@ref", None).pool for _ in range(4000)]
    # binomial(4000, 0.25): sd = sqrt(4000 * 0.25 * 0.75) = 27.4; allow 4 sd
    assert abs(served.count("bf16") - 1000) < 110
    assert {router.resolve("arith@bf16", None).pool for _ in range(50)} == {"bf16"}  # no split on bf16


@pytest.mark.parametrize(
    ("text", "message"),
    [("ref:bf16", "write it as baseline=candidate:weight"), ("ref=bf16:1.5", "between 0 and 1")],
)
def test_bad_splits_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Split.parse(text)


def test_a_split_naming_an_unknown_pool_is_refused() -> None:
    with pytest.raises(ValueError, match=r"split ref=gpu:0\.1: no pool 'gpu'; pools are ref, bf16"):
        Router([route("ref"), route("bf16")], [Split.parse("ref=gpu:0.1")])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_splits_change_at_run_time_and_a_leased_one_lapses() -> None:
    clock = Clock()
    router = Router([route("ref"), route("bf16")], seed=1, clock=clock)
    router.set_split(Split("ref", "bf16", 1.0), ttl_s=30)
    assert router.resolve("arith@ref", None).pool == "bf16"
    assert router.splits["ref"].expires_at == 130.0
    clock.now = 129.9
    assert router.resolve("arith@ref", None).pool == "bf16"
    clock.now = 130.0  # not renewed in time: traffic is back on the baseline
    assert router.resolve("arith@ref", None).pool == "ref"
    assert router.splits == {}
    router.set_split(Split("ref", "bf16", 1.0))  # no lease: it stays
    clock.now = 1e9
    assert router.resolve("arith@ref", None).pool == "bf16"
    assert router.clear_split("ref") == Split("ref", "bf16", 1.0)
    assert router.resolve("arith@ref", None).pool == "ref"
    assert router.clear_split("ref") is None


def test_measurement_requests_are_never_split() -> None:
    router = Router([route("ref"), route("bf16")], [Split("ref", "bf16", 1.0)])
    assert router.resolve("arith@ref", None, split=False).pool == "ref"
    assert router.resolve("arith@ref", None).pool == "bf16"


@pytest.mark.parametrize(
    ("split", "ttl", "message"),
    [
        (Split("ref", "ref", 0.5), None, "the candidate must be another pool than the baseline"),
        (Split("ref", "bf16", -0.1), None, "between 0 and 1"),
        (Split("ref", "tpu", 0.1), None, "no pool 'tpu'"),
        (Split("ref", "bf16", 0.1), 0.0, "ttl_s must be > 0"),
    ],
)
def test_bad_run_time_splits_are_refused_and_change_nothing(split: Split, ttl: float | None, message: str) -> None:
    router = Router([route("ref"), route("bf16")], [Split("ref", "bf16", 0.3)])
    with pytest.raises(ValueError, match=message):
        router.set_split(split, ttl)
    assert router.splits == {"ref": Split("ref", "bf16", 0.3)}
