"""The Prometheus alerting rules under grafana/rules: promtool accepts them, their unit tests pass, and they
state the same conditions as the collector's own rules (data/alerts.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.alerts.rules import DEFAULT_RULES, Rule, load_alert_config, parse_duration

RULES_DIR = Path(__file__).resolve().parents[3] / "grafana" / "rules"
PROMETHEUS_RULES = RULES_DIR / "inferwatch-alerts.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install the Debian prometheus package (scripts/install-system.sh)"
    return subprocess.run([found, *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR, check=False)


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", PROMETHEUS_RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_the_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", "tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _prometheus_alerts() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(PROMETHEUS_RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def _promql_duration(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds % 60 == 0 else f"{seconds:g}s"


@pytest.mark.parametrize("rule", load_alert_config(DEFAULT_RULES).rules, ids=lambda r: r.name)
def test_each_store_rule_has_its_prometheus_twin(rule: Rule) -> None:
    twin = _prometheus_alerts()[rule.name]
    expr = " ".join(twin["expr"].split())
    assert f"{rule.condition.op.value} {rule.condition.threshold:g}" in expr
    assert parse_duration(twin.get("for", "0s")) == rule.for_
    assert twin["labels"] == {"severity": rule.severity.value, **rule.labels}
    summary = twin["annotations"]["summary"].replace('{{ $value | printf "%.4g" }}', "{{ $value }}")
    assert summary == rule.annotations["summary"]
    if rule.metric.over_requests:
        assert f"[{_promql_duration(rule.window_s)}]" in expr and f">= {rule.min_count}" in expr
