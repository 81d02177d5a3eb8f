"""The dashboard as people use it: `inferwatch dashboard` (streamlit run) on a seeded store, every page opened in
a real headless Chromium; the key numbers of seed.py are on screen and no page shows an exception. The
screenshots land in $INFERWATCH_SCREENSHOTS (docs/screenshots to refresh the README's), else in a temporary dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.dashboards.browser import CHROMIUM, Browser, until_healthy

# INFERWATCH_SCREENSHOTS=docs/screenshots refreshes the README's pictures; otherwise they go to a temporary dir
SCREENSHOTS = Path(os.environ.get("INFERWATCH_SCREENSHOTS", tempfile.gettempdir() + "/inferwatch-screenshots"))
# url path -> what must be visible there (seed.py computes each by hand)
PAGES = {
    "": ["Fleet", "ref · cpu · r1", "250 ms", "+100 ms", "397 ms", "20.0%", "+20.0 pts", "$8,182", "-$8,182", "25.0%"],
    "latency-and-cost": ["Latency and cost over time", "buckets of 60 s", "TTFT p50 (band to p99)",
                         "$ per 1M tokens (prompt + output)"],
    "drift": ["boost in canary run c1", "nodata", "First divergence (token index)\n\n1\n\nhard mismatch",
              "'#' (48)", "-9.5"],
    "evals": ["Run e1 of arith-v1", "[82.6%, 94.5%]", "[71.1%, 86.7%]", "-10.0 pts", "[-17.0 pts, -3.0 pts]",
              "regressed"],
    "gates-and-alerts": ["bf16 against ref: FAIL", "Score 75 / 100, exit code 1.", "ttft +134.3%"],
}  # fmt: skip


@pytest.fixture
def dashboard(seeded: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["dashboard", "--port", str(port), "--store", str(seeded), "--home", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "inferwatch.cli", *args], cwd=ROOT, env=env, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(f"dashboard at {url} on {seeded}")
        until_healthy(process, url)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the Debian chromium package (make installs it)")
def test_every_page_renders_in_chromium_with_its_numbers(dashboard: str, tmp_path: Path) -> None:
    with Browser(tmp_path / "chromium-profile", width=1280, height=900) as browser:
        for path, expected in PAGES.items():
            text = browser.open(f"{dashboard}/{path}")
            missing = [e for e in expected if e not in text]
            assert not missing, f"/{path}: {missing} not on the page:\n{text}"
            assert "Traceback" not in text and not browser.evaluate(
                "document.querySelectorAll('[data-testid=\"stException\"]').length"
            ), f"/{path} shows an exception:\n{text}"
            browser.screenshot(SCREENSHOTS / f"{path or 'fleet'}.png")
