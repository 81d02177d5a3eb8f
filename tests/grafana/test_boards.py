"""The boards, provisioning and scrape config as files: they parse, are what grafana/boards.py writes, every panel
queries the provisioned datasource, every query is valid PromQL (promtool), the scrape config passes promtool."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.grafana.boards import BOARDS, GRAFANA, load, queries

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="needs the Debian prometheus package")


def test_the_three_boards_are_what_boards_py_writes() -> None:
    assert [p.stem for p in BOARDS] == ["drift-gates", "fleet-overview", "pool-detail"]
    spec = importlib.util.spec_from_file_location("grafana_boards", GRAFANA / "boards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    for path in BOARDS:
        assert path.read_text() == module.render(path.stem), f"{path.name}: run `python grafana/boards.py`"


def test_every_panel_has_a_query_on_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "inferwatch.yml").read_text())
    (datasource,) = provisioned["datasources"]
    assert datasource["type"] == "prometheus"
    uids = set()
    for path in BOARDS:
        board = load(path)
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["datasource"]["current"]["value"] == datasource["uid"]
        assert variables["pool"]["multi"] == (path.stem != "pool-detail")
        uids.add(board["uid"])
        assert board["panels"], path.name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]
    assert len(uids) == len(BOARDS)


def test_the_dashboard_provider_loads_a_folder_of_files() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "inferwatch.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"]


@needs_promtool
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool checks the expressions of recording rules: one rule per panel query, variables substituted
    rules = [{"record": f"check:{i}", "expr": q.expr} for i, q in enumerate(queries("ref"))]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "boards", "rules": rules}]}))
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(tmp_path / "queries.yml")], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


@needs_promtool
def test_the_scrape_config_passes_promtool() -> None:
    done = subprocess.run([str(PROMTOOL), "check", "config", str(GRAFANA / "prometheus.yml")], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {j["job_name"] for j in yaml.safe_load((GRAFANA / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs == {"inferwatch-collector", "inferwatch-engine"}
