"""Shared fixtures. `engine` brings the real default pools up once per pytest run (vLLM CPU on Ray Serve)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.store.postgres import PostgresError, PostgresServer, TempPostgres
from engine.state import EngineState

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
# numeric-fault model copies are kept between runs (made once from the committed model)
MODELS_CACHE = ROOT / "var" / "test-models"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def inferwatch(*args: str, timeout: float = 900, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "inferwatch.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def flush_collector(url: str, timeout_s: float = 90.0) -> int:
    """Have the collector at `url` commit its journal now (POST /admin/flush), so that a reader of the store sees
    every request it has answered. Returns how many rows that committed; fails the test when the commit fails.
    Sends the admin token of the environment when one is set (collector/auth.py), and JSON: a bare POST is refused."""
    from collector.client.credentials import client_headers

    headers = {"Content-Type": "application/json", **client_headers("admin")}
    response = httpx.post(f"{url}/admin/flush", content=b"{}", headers=headers, timeout=timeout_s)
    assert response.status_code == 200, f"POST {url}/admin/flush: {response.status_code} {response.text}"
    return int(response.json()["committed"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    """A scripted OpenAI-like pool server that misbehaves on demand (tests/collector/faulty_upstream.py)."""
    from tests.collector.faulty_upstream import FaultyUpstream  # it imports this module

    with FaultyUpstream() as server:
        yield server


def engine_flags(home: Path) -> list[str]:
    return [
        "--home", str(home), "--port", str(free_port()),
        "--ray-port", str(free_port()), "--metrics-port", str(free_port()),
    ]  # fmt: skip


# Developers: INFERWATCH_TEST_ENGINE_HOME=var reuses pools already up from `inferwatch engine up` (default
# spec) instead of starting a fresh set, and leaves them up. CI never sets it.
REUSE_HOME = os.environ.get("INFERWATCH_TEST_ENGINE_HOME")


@pytest.fixture(scope="session")
def engine_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(REUSE_HOME).resolve() if REUSE_HOME else tmp_path_factory.mktemp("engine-home")


@pytest.fixture(scope="session")
def engine(engine_home: Path) -> Iterator[EngineState]:
    home = engine_home
    if REUSE_HOME:
        yield EngineState.load(home / "engine.json")
        return
    MODELS_CACHE.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(MODELS_CACHE)
    flags = engine_flags(home)
    done = inferwatch("engine", "up", "--spec", str(DATA / "pools.yaml"), *flags)
    if done.returncode != 0:
        pytest.fail(f"engine up failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    try:
        yield EngineState.load(home / "engine.json")
    finally:
        inferwatch("engine", "down", *flags, timeout=300)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL (the Debian package) on a free loopback port for the whole run, removed afterwards.

    Never skipped: `make test` installs the package; without it the tests that need it fail with the reason.
    """
    pg = TempPostgres(fsync=False)  # fsync only matters for an OS crash, which no test simulates
    try:
        server = pg.start()
    except PostgresError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def live_collector(engine: EngineState, engine_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A collector (gateway, store, scraper) in front of the real pools, with its own state and store."""
    from collector import daemon
    from collector.service import CollectorConfig

    home = tmp_path_factory.mktemp("live-collector")
    config = CollectorConfig(
        store_url=str(home / "store.duckdb"), engine_state=str(engine_home / "engine.json"),
        prices=str(DATA / "prices.yaml"), port=free_port(), scrape_interval_s=1.0, journal_dir=str(home / "journal"),
    )  # fmt: skip
    state = daemon.up(config, home / "collector.json", log=lambda _: None)
    try:
        yield state
    finally:
        daemon.down(home / "collector.json")
