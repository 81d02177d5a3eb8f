from __future__ import annotations

from pathlib import Path

import pytest

from inferwatch.cli import main
from inferwatch.settings import Settings, SettingsError


def test_flags_override_environment_which_overrides_defaults(tmp_path: Path) -> None:
    env = {"INFERWATCH_SERVE_PORT": "9001", "INFERWATCH_HOME": str(tmp_path)}
    assert Settings.from_env(env).serve_port == 9001
    assert Settings.from_env(env, serve_port=9002).serve_port == 9002
    assert Settings.from_env(env).engine_state == tmp_path / "engine.json"
    assert Settings.from_env({}).serve_port == 8000


def test_bad_setting_names_the_variable_and_flag() -> None:
    with pytest.raises(SettingsError, match=r"setting serve_port \(env INFERWATCH_SERVE_PORT or --port\)"):
        Settings.from_env({"INFERWATCH_SERVE_PORT": "eighty"})


def test_cli_exits_3_on_a_bad_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("INFERWATCH_RAY_PORT", "70000")
    assert main(["engine", "status", "--home", str(tmp_path)]) == 3
    assert "INFERWATCH_RAY_PORT" in capsys.readouterr().err


def test_status_without_an_engine_says_what_to_do(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["engine", "status", "--home", str(tmp_path)]) == 1
    assert "no engine state; run `inferwatch engine up` first" in capsys.readouterr().err
