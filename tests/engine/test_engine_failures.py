"""`engine up` failures: a clear message, a non-zero exit, and nothing left running."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine.ports import port_is_free
from tests.conftest import engine_flags, inferwatch

ROOT = Path(__file__).resolve().parents[2]


def flag(flags: list[str], name: str) -> int:
    return int(flags[flags.index(name) + 1])


def test_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    flags = engine_flags(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", flag(flags, "--port")))
        busy.listen()
        done = inferwatch("engine", "up", *flags, timeout=120)
    assert done.returncode == 1
    assert f"port {flag(flags, '--port')} (engine HTTP) is already in use" in done.stderr
    assert not (tmp_path / "engine.json").exists()
    assert port_is_free("127.0.0.1", flag(flags, "--ray-port"))


def test_ray_port_in_use_is_named(tmp_path: Path) -> None:
    flags = engine_flags(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", flag(flags, "--ray-port")))
        busy.listen()
        done = inferwatch("engine", "up", *flags, timeout=120)
    assert done.returncode == 1
    assert f"port {flag(flags, '--ray-port')} (Ray GCS) is already in use" in done.stderr
    assert "RAY_ADDRESS" in done.stderr
    assert not (tmp_path / "engine.json").exists()


@pytest.mark.engine
def test_model_that_does_not_load_names_the_pool_and_stops_everything(tmp_path: Path) -> None:
    model = tmp_path / "broken-model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", "architectures": ["LlamaForCausalLM"]}')
    spec = tmp_path / "pools.yaml"
    spec.write_text(
        "pools:\n"
        "  - {name: broken, hardware: cpu, accelerator: cpu, model: ./broken-model, revision: r0,\n"
        "     env: {VLLM_CPU_KVCACHE_SPACE: '1'}}\n"
    )
    flags = engine_flags(tmp_path / "home")
    done = inferwatch("engine", "up", "--spec", str(spec), *flags, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pool 'broken'" in done.stderr
    assert not (tmp_path / "home" / "engine.json").exists()
    for name in ("--port", "--ray-port", "--metrics-port"):
        assert port_is_free("127.0.0.1", flag(flags, name)), f"{name} still held after a failed up"
