"""Property tests of spec loading (engine/specs.py): any file given as a pool spec or price table either loads
or raises SpecError naming the file, never anything else (KeyError, TypeError, AttributeError,
RecursionError, UnicodeDecodeError, a yaml error unwrapped).

Before the fix in this change: bytes that are not UTF-8 raised UnicodeDecodeError, `pools: 2026-13-45`
ValueError (PyYAML's date constructor), 5,000 nested `[` RecursionError, a 5,000-character model name
OSError (file name too long), an alias inside its own anchor loaded as an endless pool, and a price of .nan
or .inf was taken."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.specs import MAX_DEPTH, PoolSet, SpecError, load_pools, load_prices

ROOT = Path(__file__).resolve().parent.parent.parent
PRICES = ROOT / "data" / "prices.yaml"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_names = itertools.count()

# data/pools.yaml with the model as a hub id (a local path would not exist next to the test's copy)
VALID: dict[str, Any] = {
    "pools": [
        {"name": "ref", "hardware": "cpu", "accelerator": "cpu", "model": "org/arith", "revision": "r1",
         "dtype": "float32", "engine_args": {"max_model_len": 512}, "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}},
        {"name": "boost", "hardware": "cpu", "accelerator": "cpu", "model": "org/arith", "revision": "r2",
         "fault": {"logits_processor": "engine.faults:RareTokenBoost", "args": {"token": "#", "rate": 0.05}}},
        {"name": "noisy", "hardware": "gpu", "accelerator": "H100", "model": "org/arith", "revision": "r3",
         "fault": {"weight_noise": {"layer": 1, "relative": 0.15, "seed": 7}}},
        {"name": "remote", "hardware": "gpu", "accelerator": "H100", "model": "org/arith", "revision": "r4",
         "endpoint": "http://127.0.0.1:9/v1", "price_per_hour": 1.5, "replicas": 2},
    ]
}  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
    st.sampled_from(["cpu", "gpu", "org/m", "./models/arith", "~x/y", "a" * 300, "\x00", "2026-13-45", "1e999"]),
)  # fmt: skip
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12) | scalars, inner, max_size=4),
    max_leaves=30,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("specs")


def write(folder: Path, data: bytes) -> Path:
    path = folder / f"spec-{next(_names)}.yaml"
    path.write_bytes(data)
    return path


def loads_or_names_the_file(path: Path, prices: Path = PRICES) -> PoolSet | None:
    """The spec, or None after checking the SpecError names the file; any other exception fails the test."""
    try:
        return load_pools(path, prices)
    except SpecError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return None


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes_load_or_raise_a_spec_error(folder: Path, data: bytes) -> None:
    loads_or_names_the_file(write(folder, data))


@SETTINGS
@given(text=st.text(alphabet=st.sampled_from("pools:- \n[]{}&*!|>'\"#%@`,?name0123456789.\t\\"), max_size=200))
def test_any_yaml_like_text_loads_or_raises_a_spec_error(folder: Path, text: str) -> None:
    loads_or_names_the_file(write(folder, text.encode()))


@SETTINGS
@given(document=documents)
def test_any_document_loads_or_raises_a_spec_error(folder: Path, document: Any) -> None:
    loads_or_names_the_file(write(folder, yaml.safe_dump({"pools": document}, allow_unicode=True).encode()))
    loads_or_names_the_file(write(folder, yaml.safe_dump(document, allow_unicode=True).encode()))


FIELDS = ["name", "hardware", "accelerator", "model", "model_name", "revision", "dtype", "replicas",
          "price_per_hour", "engine_args", "env", "fault", "endpoint", "unknown_field"]  # fmt: skip


@SETTINGS
@given(
    pool=st.integers(0, len(VALID["pools"]) - 1),
    field=st.sampled_from(FIELDS),
    action=st.sampled_from(["set", "delete", "nest"]),
    value=documents,
)
def test_a_mutated_valid_spec_loads_or_names_the_pool_and_field(
    folder: Path, pool: int, field: str, action: str, value: Any
) -> None:
    spec = yaml.safe_load(yaml.safe_dump(VALID))  # a deep copy
    entry = spec["pools"][pool]
    if action == "delete":
        entry.pop(field, None)
    elif action == "nest" and isinstance(entry.get("fault"), dict):
        inner = next(iter(entry["fault"].values()))
        if isinstance(inner, dict):
            inner[field] = value
        else:
            entry["fault"][field] = value
    else:
        entry[field] = value
    path = write(folder, yaml.safe_dump(spec, allow_unicode=True).encode())
    try:
        load_pools(path, PRICES)
    except SpecError as exc:
        text = str(exc)
        assert text.startswith(f"{path}: "), text
        assert "field '" in text or "expected a mapping" in text or "nested deeper" in text, text


@SETTINGS
@given(table=documents)
def test_any_price_table_loads_or_raises_a_spec_error(folder: Path, table: Any) -> None:
    path = write(folder, yaml.safe_dump({"accelerators": table}, allow_unicode=True).encode())
    try:
        prices = load_prices(path)
    except SpecError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        return
    assert all(value >= 0 and value != float("inf") for value in prices.values()), prices


def test_the_valid_spec_loads_with_its_prices(folder: Path) -> None:
    spec = load_pools(write(folder, yaml.safe_dump(VALID).encode()), PRICES)
    assert spec.names == ("ref", "boost", "noisy", "remote")
    assert [p.price_per_hour for p in spec.pools] == [0.0893, 0.0893, 2.99, 1.5]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"pools:\n  - name: \xff\xfe\n", "not UTF-8 text (byte 0xff at offset 17)"),
        (b"pools: 2026-13-45\n", "invalid YAML: a value that cannot be read (month must be in 1..12)"),
        (b"pools: " + b"[" * 5000 + b"]" * 5000, "nested too deeply (at most 32 levels)"),
        (b"pools: " + b"[" * 40 + b"]" * 40, f"nested deeper than {MAX_DEPTH} levels"),
        (
            b"pools:\n - &a {name: a, hardware: cpu, accelerator: cpu, model: o/m, revision: r, "
            b"engine_args: {x: *a}}\n",
            "a YAML alias (*name) inside the anchor (&name) it refers to",
        ),
        (
            b"pools:\n - {name: a, hardware: cpu, accelerator: cpu, revision: r, model: " + b"m" * 5000 + b"}\n",
            "pool 'a': field 'model': model path",
        ),
    ],
    ids=["not-utf8", "bad-date", "deep", "deeper-than-max", "alias-cycle", "long-model"],
)
def test_what_the_properties_found_is_a_spec_error_naming_the_file(folder: Path, data: bytes, expected: str) -> None:
    path = write(folder, data)
    with pytest.raises(SpecError) as caught:
        load_pools(path, PRICES)
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value), str(caught.value)


@pytest.mark.parametrize("value", [".nan", ".inf", "-1", "true", "'3'"])
def test_a_price_that_is_not_a_finite_number_at_least_zero_is_refused(folder: Path, value: str) -> None:
    path = write(folder, f"accelerators:\n  cpu: {value}\n".encode())
    with pytest.raises(SpecError, match=r"accelerators\.cpu: price must be a number >= 0"):
        load_prices(path)
