"""The engine.json record that `engine up` writes and `status`, `down` and the other packages read."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.state import EngineError, EngineState, PoolEndpoint


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
