from __future__ import annotations

from collections.abc import Callable

import pytest

from collector.loadgen.workloads import MAX_MODEL_LEN, arith_workload, prefix_workload, random_workload
from engine.arith import CHARACTERS, VOCAB


def test_random_fixed_lengths_count_bos() -> None:
    items = random_workload(20, input_len=64, output_len=16, seed=3)
    # 64 prompt tokens = BOS + 63 characters, one token each
    assert {len(i.prompt) for i in items} == {63}
    assert {i.prompt_tokens for i in items} == {64}
    assert {i.max_tokens for i in items} == {16}
    assert all(set(i.prompt) <= set(CHARACTERS) and set(i.prompt) <= set(VOCAB) for i in items)
    assert len({i.prompt for i in items}) == 20
    assert all(i.expected is None for i in items)


def test_random_range_ratio_bounds_like_vllm_bench() -> None:
    items = random_workload(400, input_len=101, output_len=10, range_ratio=0.5, seed=4)
    # characters in [floor(100 * 0.5), ceil(100 * 1.5)] = [50, 150]; outputs in [5, 15]
    chars = [len(i.prompt) for i in items]
    outputs = [i.max_tokens for i in items]
    assert min(chars) >= 50 and max(chars) <= 150 and len(set(chars)) > 50
    assert min(outputs) >= 5 and max(outputs) <= 15 and set(outputs) == set(range(5, 16))  # 400 draws of 11
    assert all(i.prompt_tokens == len(i.prompt) + 1 for i in items)


def test_random_is_seeded() -> None:
    a = random_workload(5, input_len=30, output_len=4, range_ratio=0.3, seed=9)
    assert a == random_workload(5, input_len=30, output_len=4, range_ratio=0.3, seed=9)
    assert a != random_workload(5, input_len=30, output_len=4, range_ratio=0.3, seed=10)


def test_prefix_is_shared_and_suffixes_differ() -> None:
    items = prefix_workload(6, prefix_len=300, suffix_len=12, output_len=8, seed=1)
    head = items[0].prompt[:300]
    assert all(i.prompt[:300] == head for i in items)
    assert len({i.prompt[300:] for i in items}) == 6
    assert {len(i.prompt) for i in items} == {312} and {i.prompt_tokens for i in items} == {313}
    assert {i.max_tokens for i in items} == {8}


def test_several_prefixes_take_turns() -> None:
    items = prefix_workload(6, prefix_len=256, suffix_len=4, num_prefixes=3, seed=2)
    heads = [i.prompt[:256] for i in items]
    assert heads[:3] == heads[3:] and len(set(heads)) == 3


def test_arith_keeps_the_answer() -> None:
    items = arith_workload(50, seed=5)
    for item in items:
        a, b = item.prompt.removesuffix("=").split("+")
        assert item.expected == str(int(a) + int(b))
        assert item.prompt_tokens == len(item.prompt) + 1 and item.max_tokens == 5
    assert arith_workload(2, seed=5, max_tokens=3)[0].max_tokens == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: random_workload(1, input_len=500, output_len=13),  # 500 + 13 = 513
        lambda: random_workload(1, input_len=401, output_len=10, range_ratio=0.25),  # up to 501 + 13
        lambda: prefix_workload(1, prefix_len=480, suffix_len=24, output_len=8),  # 505 + 8
    ],
)
def test_longer_than_max_model_len_is_rejected(make: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=f"max_model_len {MAX_MODEL_LEN}"):
        make()


def test_the_longest_that_fits_is_accepted() -> None:
    assert random_workload(1, input_len=500, output_len=12)[0].prompt_tokens == 500
    assert prefix_workload(1, prefix_len=479, suffix_len=24, output_len=8)[0].prompt_tokens == 504


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"input_len": 1, "output_len": 4}, "input_len"), ({"input_len": 10, "output_len": 0}, "output_len"),
     ({"input_len": 10, "output_len": 4, "range_ratio": 1.0}, "range_ratio")],
)  # fmt: skip
def test_bad_lengths_name_the_parameter(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        random_workload(1, **kwargs)  # type: ignore[arg-type]
