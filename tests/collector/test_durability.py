"""No acknowledged row lost: a collector SIGKILLed under load, then started again on the same journal."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from collector import daemon
from collector.client.credentials import client_headers
from collector.store.door import open_reader
from tests.collector.faulty_upstream import FaultyUpstream, start_collector

REQUESTS, CONCURRENCY, KILL_AFTER = 400, 8, 150


def _send(url: str, i: int) -> str | None:
    """One completion (every other one streamed); its request id when the client got the whole answer."""
    request_id = f"dur-{i}-{uuid.uuid4().hex[:6]}"
    body = {"model": "arith@ok", "prompt": "1+1=", "max_tokens": 3, "stream": i % 2 == 0}
    try:
        response = httpx.post(f"{url}/v1/completions", json=body, headers={"x-request-id": request_id}, timeout=10)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    if body["stream"] and not response.text.rstrip().endswith("data: [DONE]"):
        return None
    return request_id


def test_sigkill_under_load_loses_no_acknowledged_row_and_duplicates_none(tmp_path: Path) -> None:
    with FaultyUpstream() as upstream:
        first = start_collector(tmp_path, upstream, commit_interval_s=0.5)
        acknowledged: list[str] = []
        lock = threading.Lock()
        killed = threading.Event()

        def one(i: int) -> None:
            if killed.is_set():
                return
            got = _send(first.url, i)
            with lock:
                if got is not None and not killed.is_set():
                    acknowledged.append(got)
                if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                    os.kill(first.pid, signal.SIGKILL)
                    killed.set()

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, range(REQUESTS)))
        assert killed.is_set()
        # answers that reached clients after the kill was sent are counted too, when they came whole
        time.sleep(0.5)
        second = start_collector(tmp_path, upstream)  # same journal directory: replays what the first left
        try:
            flushed = httpx.post(
                f"{second.url}/admin/flush", json={}, headers=client_headers("admin"), timeout=60
            ).json()
            health = httpx.get(f"{second.url}/healthz").json()
        finally:
            daemon.down(tmp_path / "collector.json")
    with open_reader(tmp_path / "store.duckdb") as store:
        rows = store.query("SELECT id, count(*) AS n FROM requests WHERE id LIKE 'dur-%' GROUP BY id").to_pylist()
    counts = {r["id"]: r["n"] for r in rows}
    assert len(acknowledged) >= KILL_AFTER
    assert [i for i in acknowledged if i not in counts] == []  # 0 acknowledged rows lost
    assert [i for i, n in counts.items() if n != 1] == []  # 0 duplicated after the replay
    assert health["backlog_rows"] == 0 and flushed["status"] == "ok"
