"""The command line's flags for where servers listen: a host beyond loopback needs a token or --insecure-bind."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferwatch.cli import main
from inferwatch.settings import Settings


def test_collector_up_refuses_host_beyond_loopback_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for var in ("INFERWATCH_ADMIN_TOKEN", "INFERWATCH_ADMIN_TOKEN_FILE", "INFERWATCH_INSECURE_BIND", "INFERWATCH_HOST"):
        monkeypatch.delenv(var, raising=False)
    assert main(["collector", "up", "--host", "192.0.2.7", "--home", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "error: collector: the collector: refusing to listen on 192.0.2.7 (--host / INFERWATCH_HOST)" in err
    assert not (tmp_path / "collector.json").exists()


def test_a_bad_api_keys_file_stops_collector_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("sk-live-plaintext-key: team-a\n")
    assert main(["collector", "up", "--api-keys", str(keys), "--home", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert f"api keys file {keys}: entry 'sk-live-plai'...: write the key's sha256, never the key" in err


def test_the_bind_settings_come_from_the_environment_and_flags() -> None:
    env = {"INFERWATCH_INSECURE_BIND": "1", "INFERWATCH_ALLOWED_HOSTS": "gw.internal, gw2 ,"}
    env["INFERWATCH_API_KEYS"] = "k"
    current = Settings.from_env(env)
    assert current.insecure_bind is True and current.api_keys == Path("k")
    assert current.allowed_host_names == ("gw.internal", "gw2")
    assert Settings.from_env({}).insecure_bind is False
    assert "token" not in " ".join(Settings.model_fields)  # tokens are never settings: no dump can show them
