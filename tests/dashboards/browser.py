"""A real headless Chromium (the Debian package), driven over the Chrome DevTools Protocol: open a page, wait
until the Streamlit app has finished rendering, read its text, save a screenshot. No browser driver needed:
Chromium's own debugging port and a WebSocket client."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def until_healthy(process: subprocess.Popen[Any], url: str, timeout_s: float = 60.0) -> None:
    """Wait until the Streamlit server started as `process` answers its health check at `url`."""
    deadline = time.monotonic() + timeout_s
    while not streamlit_healthy(url):
        assert process.poll() is None and time.monotonic() < deadline, "streamlit did not come up"
        time.sleep(0.2)


def streamlit_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# the app is done when the script has run (no "Running..." status widget, no skeleton) and content has arrived
_RENDERED = """(() => {
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  const skeleton = document.querySelector('[data-testid="stSkeleton"]');
  const main = document.querySelector('[data-testid="stMain"]');
  return !running && !skeleton && !!main && main.innerText.trim().length > 0;
})()"""


class Browser:
    def __init__(self, profile: Path, width: int = 1400, height: int = 1000) -> None:
        self.profile = profile
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--hide-scrollbars", "--remote-debugging-port=0", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self._ids = itertools.count(1)
        self._stack = ExitStack()
        self._ws: ClientConnection = self._stack.enter_context(connect(self._page_socket(), max_size=None))

    def _page_socket(self, timeout_s: float = 30.0) -> str:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited ({self.process.returncode})")
            if port_file.exists() and (lines := port_file.read_text().splitlines()):
                targets = httpx.get(f"http://127.0.0.1:{lines[0]}/json/list", timeout=5).json()
                pages = [t for t in targets if t["type"] == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its debugging port")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, timeout_s: float = 60.0, settle_s: float = 1.0) -> str:
        """Navigate and wait until the app has rendered and its text stayed the same for `settle_s`; returns
        the text of the page (sidebar and main)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            text = self.evaluate("document.body.innerText") if self.evaluate(_RENDERED) else None
            if text != last:
                last, since = text, time.monotonic()
            elif text is not None and time.monotonic() - since >= settle_s:
                return str(text)
        raise TimeoutError(f"{url}: the app did not finish rendering in {timeout_s:.0f}s; last text: {last!r:.500}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        self._stack.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
