from __future__ import annotations

from pathlib import Path

import pytest

from engine.lifecycle import EngineError, EngineState, PoolEndpoint, openai_base, serve_host


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"])
def test_openai_base_accepts_a_server_or_its_api_url(url: str) -> None:
    assert openai_base(url) == "http://h:8000/v1"


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("", "127.0.0.1"),
        ("auto", "127.0.0.1"),
        ("ray://head.example:10001", "head.example"),
        ("10.1.2.3:6379", "10.1.2.3"),
    ],
)
def test_serve_host_follows_ray_address(address: str, host: str) -> None:
    assert serve_host(address, "127.0.0.1") == host


def test_state_round_trips_and_a_missing_state_says_what_to_do(tmp_path: Path) -> None:
    state = EngineState("spec.yaml", "127.0.0.1:6379", 42, "http://127.0.0.1:8000", None,
                        [PoolEndpoint("ref", "arith@ref", "http://127.0.0.1:8000/v1", True)])  # fmt: skip
    state.save(tmp_path / "engine.json")
    assert EngineState.load(tmp_path / "engine.json") == state
    with pytest.raises(EngineError, match="no engine state; run `inferwatch engine up` first"):
        EngineState.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EngineError, match="unreadable engine state"):
        EngineState.load(tmp_path / "bad.json")
