"""Alert rules at load: the default file, and errors that name the file, the rule and the field."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.alerts.rules import (
    DEFAULT_RULES,
    AlertConfigError,
    Metric,
    Op,
    Severity,
    load_alert_config,
    parse_alert_config,
    render,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks example secret (24-byte key)


def rule(**over: Any) -> dict[str, Any]:
    return {"name": "ErrorsHigh", "metric": "error_rate", "condition": "> 0.05", **over}


def write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_default_rules_load() -> None:
    config = load_alert_config(DEFAULT_RULES)
    by_name = {r.name: r for r in config.rules}
    errors = by_name["InferwatchErrorRateHigh"]
    assert (errors.metric, errors.condition.op, errors.condition.threshold) == (Metric.error_rate, Op.gt, 0.05)
    assert (errors.window_s, errors.for_, errors.min_count, errors.severity) == (300.0, 120.0, 20, Severity.critical)
    assert by_name["InferwatchDrift"].window is None
    assert config.receivers == ()
    assert (config.repeat_interval, config.delivery.give_up_after) == (4 * 3600, 86400)


def test_durations_conditions_and_defaults(tmp_path: Path) -> None:
    config = load_alert_config(write(tmp_path, {"rules": [rule(window="1h30m", **{"for": "500ms"}), rule(
        name="Slow", metric="ttft_p99", condition="<=2.5e-1")]}))  # fmt: skip
    first, second = config.rules
    assert (first.window_s, first.for_) == (5400.0, 0.5)
    assert (second.window_s, second.for_, second.min_count, second.pools) == (300.0, 0.0, 1, ("*",))
    assert second.condition.holds(0.25) and not second.condition.holds(0.2500001)
    assert str(second.condition) == "<= 0.25"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rules": [rule(metric="ttft_p95")]}, "rules[0] 'ErrorsHigh': field 'metric': Input should be 'ttft_p50'"),
        ({"rules": [rule(condition="above 3")]}, "rules[0] 'ErrorsHigh': field 'condition': write a comparison"),
        ({"rules": [rule(), rule(name="B", window="5 minutes")]}, "rules[1] 'B': field 'window': write a duration"),
        ({"rules": [rule(**{"for": "-1m"})]}, "field 'for': write a duration like 90s"),
        ({"rules": [rule(name="has space")]}, "rules[0] 'has space': field 'name': String should match pattern"),
        (
            {"rules": [rule(metric="drift", condition="> 0", window="5m")]},
            "rules[0] 'ErrorsHigh': field 'window': applies to request metrics only; drift reads the latest run",
        ),
        ({"rules": [rule(labels={"pool": "x"})]}, "field 'labels': pool is set by the evaluator"),
        (
            {"rules": [rule(annotations={"summary": "{{ .Value }}"})]},
            "field 'annotations.summary': '{{ .Value }}': templates may use {{ $value }} and {{ $labels.<name> }} only",
        ),
        ({"rules": [rule(), rule()]}, "rules[1] 'ErrorsHigh': field 'name': duplicate name 'ErrorsHigh'"),
        ({"rules": [rule(receivers=["pager"])]}, "rules[0] 'ErrorsHigh': field 'receivers': no receiver pager"),
        ({"rules": [rule(colour="red")]}, "rules[0] 'ErrorsHigh': field 'colour': Extra inputs are not permitted"),
        ({"rules": []}, "field 'rules': Tuple should have at least 1 item"),
        ({"rules": [rule()], "receivers": [{"name": "r", "url": "ftp://x"}]}, "receivers[0] 'r': field 'url'"),
        ({"rules": [rule()], "delivery": {"timeout": 0}}, "field 'delivery.timeout': Input should be greater than 0"),
        ([1, 2], "expected a mapping with a `rules:` list"),
    ],
)
def test_invalid_rules_name_the_file_the_rule_and_the_field(tmp_path: Path, raw: Any, message: str) -> None:
    path = write(tmp_path, raw)
    with pytest.raises(AlertConfigError) as info:
        load_alert_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(AlertConfigError, match=r"nope\.yaml: cannot read"):
        load_alert_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    with pytest.raises(AlertConfigError, match=r"bad.yaml: invalid YAML at line 2"):
        load_alert_config(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        ({"secret": "whsec_not base64!"}, "field 'secret': the part after `whsec_` is not valid base64"),
        ({"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "field 'secret': a secret is `whsec_` followed by base64"),
        ({"secret": "whsec_c2hvcnQ="}, "field 'secret': the key is 5 bytes; use at least 16"),
        ({"secret": 12345}, "field 'secret': Input should be a valid string"),
        ({"secret": SECRET, "secret_env": "X"}, "field 'secret': give secret or secret_env, not both"),
        (
            {"secret_env": "ALERT_SECRET_UNSET"},
            "field 'secret_env': environment variable ALERT_SECRET_UNSET is not set",
        ),
        ({"secret_env": "ALERT_SECRET_BAD"}, "field 'secret_env': ALERT_SECRET_BAD: a secret is `whsec_`"),
    ],
)
def test_bad_secrets_are_named_never_shown(tmp_path: Path, receiver: dict[str, Any], message: str) -> None:
    raw = {"rules": [rule()], "receivers": [{"name": "oncall", "url": "http://127.0.0.1:9/hook", **receiver}]}
    with pytest.raises(AlertConfigError) as info:
        parse_alert_config(raw, tmp_path / "a.yaml", environ={"ALERT_SECRET_BAD": "hunter2-hunter2-hunter2"})
    assert f"receivers[0] 'oncall': {message}" in str(info.value)
    for shown in ("not base64!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "c2hvcnQ", "12345", "hunter2"):
        assert shown not in str(info.value)


def test_a_secret_from_the_environment_is_read_and_hidden(tmp_path: Path) -> None:
    raw = {"rules": [rule()], "receivers": [{"name": "oncall", "url": "http://x/h", "secret_env": "ONCALL_SECRET"}]}
    config = parse_alert_config(raw, tmp_path / "a.yaml", environ={"ONCALL_SECRET": SECRET})
    (receiver,) = config.receivers
    assert receiver.key() == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")  # the key is what follows whsec_
    assert SECRET not in repr(config) and SECRET not in str(receiver)


def test_templates_render_like_prometheus() -> None:
    text = "{{ $value }} of {{$labels.pool}} ({{ $labels.missing }})"
    assert render(text, {"pool": "boost"}, 0.123456) == "0.1235 of boost ()"
    assert render(text, {"pool": "boost"}, None) == " of boost ()"
