"""Text from the store reaches the dashboard's Markdown as text (issue 17, item 7): one escaping function
(dashboards/markdown.py) checked against hand-written Markdown, then a store of hostile names and reasons shown by
the real app (Streamlit's AppTest) and rendered by a real headless Chromium, where no markup of the store's may
become bold text, a link, an image, maths or an emoji."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from collector.store.api import Store
from collector.vocabulary import GateVerdict
from dashboards.markdown import WORD_JOINER, md, md_frame
from tests.conftest import ROOT, free_port
from tests.dashboards.browser import CHROMIUM, Browser, until_healthy
from tests.dashboards.conftest import OpenApp, app_on
from tests.dashboards.seed import gates

J = WORD_JOINER


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("ref", "ref"),
        ("**bold**", r"\*\*bold\*\*"),
        ("[click](javascript:alert(1))", rf"\[click\](javascript:{J}alert(1))"),
        ("<img src=x onerror=alert(1)>", r"\<img src=x onerror=alert(1)\>"),
        ("$E=mc^2$", r"\$E=mc^2\$"),
        (":smile: :red[x]", rf":{J}smile:{J} :{J}red\[x\]"),
        ("`rm -rf`", r"\`rm -rf\`"),
        ("a_b ~~c~~ | d & e", r"a\_b \~\~c\~\~ \| d \& e"),
        ("# heading", r"\# heading"),
        ("- item\n  + sub\n1. first\n2) second", "\\- item\n  \\+ sub\n1\\. first\n2\\) second"),
        ("---\n===", "\\---\n\\==="),
        ("-10.0 pts, 90.0%, 1.5", "-10.0 pts, 90.0%, 1.5"),  # not markup: as it is
        ("back\\slash", "back\\\\slash"),
        ("{x} !y", r"\{x\} \!y"),
    ],
)
def test_md_escapes_every_markup_by_hand(text: str, markdown: str) -> None:
    assert md(text) == markdown


def test_md_frame_escapes_text_cells_only() -> None:
    frame = pd.DataFrame({"pool": ["**p**", "ref"], "n": [1, 2], "p": [None, 0.5]})
    out = md_frame(frame)
    assert out["pool"].tolist() == [r"\*\*p\*\*", "ref"]
    assert out["n"].tolist() == [1, 2] and out["p"].tolist()[1] == 0.5 and pd.isna(out["p"].tolist()[0])
    assert list(out.columns) == ["pool", "n", "p"]


HOSTILE_POOL = "**bold** [x](javascript:alert(1))"
HOSTILE_BASE = "<img src=x onerror=alert(1)>"
HOSTILE_REASON = "critical: $x^2$ :smile: `code` ~~gone~~"


def hostile_gates(now: datetime) -> list[dict[str, object]]:
    [gate] = gates(now)
    detail = json.loads(str(gate["detail_json"]))
    detail["reason"] = HOSTILE_REASON
    detail["metrics"][0]["reason"] = "[a](javascript:alert(2)) **m**"
    return [{**gate, "gate_id": "g-hostile", "candidate": HOSTILE_POOL, "baseline": HOSTILE_BASE,
             "verdict": GateVerdict.fail, "detail_json": json.dumps(detail)}]  # fmt: skip


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.duckdb"
    with Store(path) as store:
        store.append("gates", hostile_gates(datetime.now(UTC)))
    return path


@pytest.fixture
def hostile_app(hostile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OpenApp:
    return app_on(hostile, tmp_path, monkeypatch)


def test_the_gates_page_gives_streamlit_escaped_markdown_of_the_stores_text(hostile_app: OpenApp) -> None:
    at = hostile_app("gates_alerts")
    subheader = rf"\*\*bold\*\* \[x\](javascript:{J}alert(1)) against \<img src=x onerror=alert(1)\>: FAIL"
    assert subheader in [s.value for s in at.subheader]
    reason = rf"critical:{J} \$x^2\$ :{J}smile:{J} \`code\` \~\~gone\~\~"
    assert f"Score **75** / 100, exit code 1. {reason}" in [m.value for m in at.markdown]
    assert at.table[0].value["reason"].tolist() == [rf"\[a\](javascript:{J}alert(2)) \*\*m\*\*"]


@pytest.fixture
def dashboard(hostile: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    args = ["dashboard", "--port", str(port), "--store", str(hostile), "--home", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "inferwatch.cli", *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        until_healthy(process, url)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


IN_MAIN = "document.querySelector('[data-testid=\"stMain\"]')"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs the Debian chromium package (make installs it)")
def test_hostile_names_render_as_their_text_in_chromium(dashboard: str, tmp_path: Path) -> None:
    with Browser(tmp_path / "chromium-profile", width=1280, height=900) as browser:
        text = browser.open(f"{dashboard}/gates-and-alerts").replace(J, "")
        for literal in (f"{HOSTILE_POOL} against {HOSTILE_BASE}: FAIL", HOSTILE_REASON,
                        "[a](javascript:alert(2)) **m**"):  # fmt: skip
            assert literal in text, f"{literal!r} not on the page:\n{text}"
        counts = browser.evaluate(f"""(() => {{ const main = {IN_MAIN}; return {{
            img: main.querySelectorAll('img').length,
            js_links: main.querySelectorAll('a[href^="javascript"]').length,
            katex: main.querySelectorAll('.katex').length,
            code: main.querySelectorAll('code').length,
            del: main.querySelectorAll('del, s').length,
            strong: Array.from(main.querySelectorAll('strong')).map(e => e.innerText),
        }}; }})()""")
    # the only bold text is the score the page itself sets in bold
    assert counts == {"img": 0, "js_links": 0, "katex": 0, "code": 0, "del": 0, "strong": ["75"]}
    assert "😄" not in text
