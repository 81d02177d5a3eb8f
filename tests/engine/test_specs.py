from __future__ import annotations

from pathlib import Path

import pytest

from engine.serve_app import llm_config
from engine.specs import (
    DEFAULT_PRICES,
    Hardware,
    LogitsProcessorFault,
    SpecError,
    WeightNoiseFault,
    load_pools,
    load_prices,
)
from inferwatch.cli import main

DATA = Path(__file__).resolve().parents[2] / "data"


def write(tmp_path: Path, text: str, name: str = "pools.yaml") -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(text)
    return path


POOL = """
  - name: {name}
    hardware: {hardware}
    accelerator: {accelerator}
    model: ./model
    revision: r1
"""


def pools_text(*entries: str) -> str:
    return "pools:\n" + "".join(entries)


def test_default_fleet_loads_with_prices_and_faults() -> None:
    pools = load_pools(DATA / "pools.yaml")
    assert pools.names == ("ref", "bf16", "boost", "noisy")
    ref = pools.get("ref")
    assert ref.model_id == "arith@ref"
    assert ref.hardware is Hardware.cpu
    assert ref.dtype == "float32" and pools.get("bf16").dtype == "bfloat16"
    assert ref.price_per_hour == 0.0893  # cpu row of data/prices.yaml
    assert Path(ref.model) == DATA / "models" / "arith"
    assert ref.engine_args["max_logprobs"] == 20
    assert isinstance(pools.get("boost").fault, LogitsProcessorFault)
    assert isinstance(pools.get("noisy").fault, WeightNoiseFault)
    assert len(pools.deployed) == 4


def test_extra_fault_file_loads() -> None:
    topk = load_pools(DATA / "pools-faults.yaml").get("topk")
    assert isinstance(topk.fault, LogitsProcessorFault)
    assert topk.fault.logits_processor == "engine.faults:WrongTop1"
    assert topk.fault.args == {"batch_larger_than": 4}


def test_price_table_has_the_common_accelerators() -> None:
    prices = load_prices(DEFAULT_PRICES)
    for name in ("h100", "h200", "a100", "l4", "v5e", "v6e", "trn1", "trn2", "cpu"):
        assert prices[name] > 0


def test_spec_price_overrides_table_and_lookup_is_case_insensitive(tmp_path: Path) -> None:
    text = pools_text(
        POOL.format(name="a", hardware="gpu", accelerator="h100"),
        POOL.format(name="b", hardware="gpu", accelerator="H100") + "    price_per_hour: 10.5\n",
    )
    pools = load_pools(write(tmp_path, text))
    assert pools.get("a").price_per_hour == 2.99
    assert pools.get("b").price_per_hour == 10.5


def test_endpoint_pool_is_registered_not_deployed(tmp_path: Path) -> None:
    text = pools_text(
        POOL.format(name="ext", hardware="gpu", accelerator="H100").replace("./model", "org/some-model")
        + "    endpoint: http://10.0.0.5:8000\n"
    )
    pools = load_pools(write(tmp_path, text))
    assert pools.deployed == ()
    assert pools.get("ext").model_id == "some-model@ext"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (POOL.format(name="a", hardware="fpga", accelerator="cpu"), "pool 'a': field 'hardware': Input should be"),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu") + "    price_per_hour: -1\n",
            "pool 'a': field 'price_per_hour': Input should be greater than or equal to 0 (got -1)",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu").replace("./model", "./missing"),
            "pool 'a': field 'model': model path",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu")
            + POOL.format(name="a", hardware="cpu", accelerator="cpu"),
            "pool 'a': field 'name': duplicate pool name",
        ),
        (
            POOL.format(name="a", hardware="gpu", accelerator="B300"),
            "pool 'a': field 'price_per_hour': no price for accelerator 'B300'",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu") + "    replica: 2\n",
            "pool 'a': field 'replica': Extra inputs are not permitted",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu")
            + "    fault: {weight_noise: {layer: -1, relative: 0.1}}\n",
            "pool 'a': field 'fault.weight_noise.layer'",
        ),
        (
            POOL.format(name="Bad Name", hardware="cpu", accelerator="cpu"),
            "pool 'Bad Name': field 'name': Value error, must be 1-32 characters",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu") + "    stream_batch_ms: -1\n",
            "pool 'a': field 'stream_batch_ms': Input should be greater than or equal to 0",
        ),
        (
            POOL.format(name="a", hardware="gpu", accelerator="H100").replace("./model", "org/m")
            + "    endpoint: http://10.0.0.5:8000\n    stream_batch_ms: 5\n",
            "its stream batching is the server's own: remove `stream_batch_ms`",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu")
            + "    engine_args: {enable_per_request_metrics: false}\n",
            "engine_args.enable_per_request_metrics: false turns off vLLM's per-request timings",
        ),
        (
            POOL.format(name="a", hardware="cpu", accelerator="cpu") + "    engine_args: {disable_log_stats: true}\n",
            "engine_args.disable_log_stats: true turns off vLLM's per-request timings",
        ),
    ],
)
def test_bad_pool_fields_are_named(tmp_path: Path, entry: str, expected: str) -> None:
    path = write(tmp_path, pools_text(entry))
    with pytest.raises(SpecError) as info:
        load_pools(path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pools:\n  - name: a\n    hardware: [cpu\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+, column \d+"):
        load_pools(path)


@pytest.mark.parametrize("text", ["", "pools: []\n", "- name: a\n", "pools: {a: 1}\n"])
def test_missing_pool_list(tmp_path: Path, text: str) -> None:
    with pytest.raises(SpecError, match="expected a top-level `pools:` list"):
        load_pools(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nope\.yaml: file not found"):
        load_pools(tmp_path / "nope.yaml")


def test_bad_price_table(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("accelerators:\n  H100: cheap\n")
    with pytest.raises(SpecError, match=r"accelerators.H100: price must be a number >= 0, got 'cheap'"):
        load_prices(prices)


def test_cli_exits_3_and_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, pools_text(POOL.format(name="a", hardware="quantum", accelerator="cpu")))
    code = main(["engine", "up", "--spec", str(path), "--home", str(tmp_path / "var")])
    err = capsys.readouterr().err
    assert code == 3
    assert f"error: {path}: pool 'a': field 'hardware'" in err
    assert not (tmp_path / "var" / "engine.json").exists()


def test_fault_of_unknown_kind_says_what_a_fault_is(tmp_path: Path) -> None:
    entry = POOL.format(name="a", hardware="cpu", accelerator="cpu") + "    fault: {bit_flip: 3}\n"
    with pytest.raises(SpecError, match=r"pool 'a': field 'fault': a fault is either `logits_processor"):
        load_pools(write(tmp_path, pools_text(entry)))


def test_stream_batching_interval_is_zero_unless_the_spec_says_and_unknown_for_endpoint_pools(tmp_path: Path) -> None:
    text = pools_text(
        POOL.format(name="a", hardware="cpu", accelerator="cpu"),
        POOL.format(name="b", hardware="cpu", accelerator="cpu") + "    stream_batch_ms: 12.5\n",
        POOL.format(name="ext", hardware="gpu", accelerator="H100").replace("./model", "org/m")
        + "    endpoint: http://10.0.0.5:8000\n",
    )
    pools = load_pools(write(tmp_path, text))
    assert [pools.get(n).stream_batch_interval_ms for n in ("a", "b", "ext")] == [0.0, 12.5, None]
    configs = {p.name: llm_config(p, p.model) for p in pools.deployed}
    assert configs["a"]["experimental_configs"] == {"stream_batching_interval_ms": 0.0}
    assert configs["b"]["experimental_configs"] == {"stream_batching_interval_ms": 12.5}
    assert configs["a"]["engine_kwargs"]["enable_per_request_metrics"] is True
