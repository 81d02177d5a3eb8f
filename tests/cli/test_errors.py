"""The one table of library errors and their exit codes: each class is where the table says, a command that
raises it exits with its code and message, and anything else (a bug) comes out as a traceback."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from collector.store.api import Store
from inferwatch.cli import ERROR_EXIT_CODES, exit_code_for, main


def error_class(name: str) -> type[Exception]:
    module, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname)
    assert isinstance(cls, type) and issubclass(cls, Exception)
    return cls


@pytest.mark.parametrize("name", sorted(ERROR_EXIT_CODES))
def test_each_entry_names_an_error_class_defined_there(name: str) -> None:
    cls = error_class(name)
    assert f"{cls.__module__}.{cls.__qualname__}" == name  # moved or re-exported classes would never match


def test_data_errors_exit_3_and_runtime_failures_1() -> None:
    by_code = {code: {name.rsplit(".", 1)[1] for name, c in ERROR_EXIT_CODES.items() if c == code} for code in (1, 3)}
    assert {"SettingsError", "SpecError", "GateConfigError", "AlertConfigError", "SplitError"} <= by_code[3]
    assert {"EngineError", "CollectorError", "StoreError"} <= by_code[1]
    assert set(ERROR_EXIT_CODES.values()) == {1, 3}


def test_a_subclass_takes_its_parents_code() -> None:
    from collector.store.errors import StoreError

    class Narrower(StoreError):
        pass

    assert exit_code_for(Narrower("x")) == 1
    assert exit_code_for(RuntimeError("x")) is None and exit_code_for(ValueError("x")) is None


@pytest.fixture
def store_home(tmp_path: Path) -> Path:
    Store(tmp_path / "inferwatch.duckdb").close()
    return tmp_path


@pytest.mark.parametrize("name", sorted(ERROR_EXIT_CODES))
def test_a_command_raising_a_mapped_error_exits_with_its_code(
    name: str, store_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error_class(name)(f"{name} raised for the test")

    monkeypatch.setattr("collector.fleet.report.fleet_report", fail)
    assert main(["fleet", "--home", str(store_home)]) == ERROR_EXIT_CODES[name]
    assert capsys.readouterr().err == f"error: {name} raised for the test\n"


@pytest.mark.parametrize("error", [RuntimeError, ValueError, KeyError])
def test_an_unexpected_error_is_a_traceback_not_an_exit_code(
    error: type[Exception], store_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error("a bug")

    monkeypatch.setattr("collector.fleet.report.fleet_report", fail)
    with pytest.raises(error, match="a bug"):
        main(["fleet", "--home", str(store_home)])


def test_ctrl_c_exits_130(
    store_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("collector.fleet.report.fleet_report", interrupt)
    assert main(["fleet", "--home", str(store_home)]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_real_bad_inputs(store_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = store_home / "alerts.yaml"
    rules.write_text("rules: [{name: Drift}]\n")
    assert main(["alerts", "check", "--home", str(store_home), "--rules", str(rules)]) == 3  # AlertConfigError
    assert str(rules) in capsys.readouterr().err
    assert main(["eval", "import", "--home", str(store_home), "ref"]) == 3  # not POOL=PATH
    assert "'ref': write POOL=PATH" in capsys.readouterr().err
    assert main(["eval", "report", "--home", str(store_home), "--run", "ev9", "--reference", "ref"]) == 3
    assert "--run: no eval items with run id 'ev9'" in capsys.readouterr().err
    assert main(["canary", "run", "--home", str(store_home), "--reference", "ref"]) == 1  # CollectorError
    assert "start it with `inferwatch collector up`" in capsys.readouterr().err
