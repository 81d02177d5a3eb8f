"""The data path under faults, live: a real collector process over the scripted upstream (no vLLM) and a real
store (embedded DuckDB, or DuckLake on a real PostgreSQL). Every count is computed from what the clients got: a
request is acknowledged when it got a 200 and, for a stream, `data: [DONE]`."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx
import pytest

from collector import daemon
from collector.client.credentials import client_headers
from collector.state import CollectorState
from collector.store.door import open_reader, open_store
from collector.store.postgres import PostgresServer, TempPostgres, find_bin_dir
from tests.collector.faulty_upstream import FaultyUpstream, start_gateway
from tests.collector.store.backends import store_url
from tests.conftest import flush_collector

T = TypeVar("T")
OK = "ok"
OUTAGE_S = 30.0  # PostgreSQL down under load
BOTH_GATEWAYS_S = 60.0  # two gateways committing to one DuckLake under load
KILLED_BACKLOG = 200  # requests journaled, not yet committed, when the collector is killed in its commit
JOURNAL_FS = "512k"  # the tmpfs the journal fills
NEVER = 3600.0  # an interval that does not come round during a test: commits and scrapes only when asked


# --- clients ------------------------------------------------------------------------------------------------


def post(client: httpx.Client, url: str, request_id: str, stream: bool) -> httpx.Response:
    body = {"model": "arith@ok", "prompt": "1+1=", "max_tokens": 3, "stream": stream}
    return client.post(f"{url}/v1/completions", json=body, headers={"x-request-id": request_id}, timeout=30)


def complete(client: httpx.Client, url: str, request_id: str, stream: bool) -> str:
    """One completion: OK when the client got the whole answer, else what it got instead."""
    try:
        response = post(client, url, request_id, stream)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if stream and not response.text.rstrip().endswith("data: [DONE]"):
        return f"a stream without [DONE]: {response.text[-300:]}"
    return OK


class Load:
    """Completions (every other one streamed) from `concurrency` threads until stop()."""

    def __init__(self, url: str, prefix: str, concurrency: int = 4) -> None:
        self.url, self.prefix = url, prefix
        self.acknowledged: list[str] = []
        self.failed: list[str] = []  # "<id>: what the client got"
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(concurrency)]

    def _work(self) -> None:
        with httpx.Client() as client:
            while not self._stop.is_set():
                with self._lock:
                    i = next(self._numbers)
                request_id = f"{self.prefix}-{i}"
                got = complete(client, self.url, request_id, stream=i % 2 == 0)
                with self._lock:
                    (self.acknowledged if got == OK else self.failed).append(
                        request_id if got == OK else f"{request_id}: {got}"
                    )

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(60)

    @property
    def answered(self) -> int:
        with self._lock:
            return len(self.acknowledged) + len(self.failed)


def send(url: str, ids: list[str], *, streams: bool = True) -> dict[str, str]:
    """The requests one after another (every other one streamed when `streams`): id -> what the client got."""
    with httpx.Client() as client:
        return {rid: complete(client, url, rid, stream=streams and n % 2 == 0) for n, rid in enumerate(ids)}


def new_prefix(what: str) -> str:
    return f"{what}-{uuid.uuid4().hex[:6]}"


# --- the collector and the store ----------------------------------------------------------------------------


def health(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/healthz", timeout=10).json()
    return data


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float = 60.0) -> T:
    """Poll `check` until it gives a value (not None); fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while (got := check()) is None:
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.1)
    return got


def health_when(url: str, holds: Callable[[dict[str, Any]], bool]) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        data = health(url)
        return data if holds(data) else None

    return check


def stored_ids(url: str, prefix: str) -> dict[str, int]:
    """id -> how many rows the store holds of it, for the requests whose id starts with `prefix`."""
    with open_reader(url) as store:
        sql = "SELECT id, count(*) AS n FROM requests WHERE starts_with(id, ?) GROUP BY id"
        return {r["id"]: r["n"] for r in store.query(sql, [prefix]).to_pylist()}


def counted(url: str, gateway: str) -> Callable[[], dict[str, Any] | None]:
    """The gateway's health once its committed_rows equals the rows of its markers in the store."""

    def check() -> dict[str, Any] | None:
        h = health(gateway)
        return h if sum(rows[0] for rows in markers(url, h["writer"]).values()) == h["committed_rows"] else None

    return check


def markers(url: str, writer: str) -> dict[str, list[int]]:
    """segment -> the `rows` of each of its markers in journal_segments, for one writer."""
    with open_reader(url) as store:
        sql = "SELECT segment, rows FROM journal_segments WHERE writer = ? ORDER BY segment"
        found: dict[str, list[int]] = {}
        for r in store.query(sql, [writer]).to_pylist():
            found.setdefault(r["segment"], []).append(r["rows"])
        return found


def segment_files(journal: Path) -> list[str]:
    return sorted(p.name for p in journal.glob("seg-*.log"))


def kill(state: CollectorState) -> None:
    """SIGKILL the collector and reap it (our child): it is gone, its journal lock released, when this returns."""
    os.kill(state.pid, signal.SIGKILL)
    os.waitpid(state.pid, 0)


def down(*homes: Path) -> None:
    for home in homes:
        daemon.down(home / "collector.json")


# --- 1. PostgreSQL down under load --------------------------------------------------------------------------


def test_a_catalog_outage_under_load_is_served_from_the_journal_and_committed_once_after(tmp_path: Path) -> None:
    pg = TempPostgres(fsync=False)  # our own server: the session's must not go down under the other tests
    url = store_url("ducklake-postgres", tmp_path, pg.start())
    prefix = new_prefix("pgdown")
    try:
        with FaultyUpstream() as upstream:
            gateway = start_gateway(tmp_path, upstream, url, commit_interval_s=0.5)
            load = Load(gateway.url, prefix).start()
            try:
                wait_for("a first commit", health_when(gateway.url, lambda h: h["committed_rows"] > 0))
                pg.stop(keep_data=True)
                back_at, answered_before = time.monotonic() + OUTAGE_S, load.answered
                degraded = wait_for(
                    "/healthz degraded with a backlog while PostgreSQL is down",
                    health_when(gateway.url, lambda h: h["status"] == "degraded" and h["backlog_rows"] > 0),
                    timeout_s=OUTAGE_S,
                )
                time.sleep(max(0.0, back_at - time.monotonic()))  # the load goes on for the whole outage
                answered_in_outage = load.answered - answered_before
                pg.start()
                committed_before = health(gateway.url)["committed_rows"]
                wait_for(  # the committer resumes by itself (after its backoff), under load
                    "commits resumed after PostgreSQL came back",
                    health_when(gateway.url, lambda h: h["committed_rows"] > committed_before),
                )
                load.stop()
                after = wait_for(
                    "backlog 0", health_when(gateway.url, lambda h: h["backlog_rows"] == 0 and h["status"] == "ok")
                )
            finally:
                load.stop()
                down(tmp_path)
        stored = stored_ids(url, prefix)
    finally:
        pg.stop()
    assert load.failed == []  # every request answered 200 (whole) while the store was away
    assert answered_in_outage > 0
    assert degraded["problem"].startswith("store: ")
    assert stored == {rid: 1 for rid in load.acknowledged}  # each acknowledged row once, nothing else
    assert after["problem"] is None


# --- 2. two gateways, one DuckLake, committing at once ------------------------------------------------------


def test_two_gateways_committing_to_one_ducklake_for_a_minute_store_each_row_once(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = store_url("ducklake-postgres", tmp_path, postgres)
    open_store(url).close()  # as `collector up` does: the catalog is made once, before the gateways race
    homes = [tmp_path / "a", tmp_path / "b"]
    prefixes = [new_prefix("two-a"), new_prefix("two-b")]
    with FaultyUpstream() as upstream:
        gateways = [start_gateway(home, upstream, url, commit_interval_s=0.2) for home in homes]
        loads = [Load(g.url, p).start() for g, p in zip(gateways, prefixes, strict=True)]
        try:
            time.sleep(BOTH_GATEWAYS_S)
            for load in loads:
                load.stop()
            for gateway in gateways:
                flush_collector(gateway.url)
            # a periodic commit may still be on its way when the flush finds nothing left to take: wait until each
            # gateway's count has caught up with the rows it marked (it never does when rows are lost or doubled)
            healths = [wait_for(f"gateway {g.url}: committed_rows = its marked rows", counted(url, g.url), 15.0)
                       for g in gateways]  # fmt: skip
        finally:
            for load in loads:
                load.stop()
            down(*homes)
    for load, prefix in zip(loads, prefixes, strict=True):
        assert load.failed == []
        assert len(load.acknowledged) > 0
        assert stored_ids(url, prefix) == {rid: 1 for rid in load.acknowledged}
    for h in healths:
        written = markers(url, h["writer"])
        assert len(written) > 1 and all(len(rows) == 1 for rows in written.values())  # each segment marked once
        # its count caught up with its markers before it stopped (counted); rows answered as the loads stopped are
        # committed when it shuts down, so the store holds at least that many
        assert sum(rows[0] for rows in written.values()) >= h["committed_rows"]
        assert h["backlog_rows"] == 0 and h["status"] == "ok"


# --- 3. SIGKILL during a commit -----------------------------------------------------------------------------


@contextmanager
def catalog_locked(server: PostgresServer, url: str) -> Iterator[None]:
    """Another session holds the DuckLake's snapshot table (EXCLUSIVE: reads pass, writes wait), so that a
    commit blocks inside its catalog transaction, after its rows are sent and before its COMMIT."""
    database = url.split("?", 1)[0].rsplit("/", 1)[1]
    flags = ["-X", "-q", "-h", server.host, "-p", str(server.port), "-U", server.user, "-d", database]
    psql = subprocess.Popen([str(find_bin_dir() / "psql"), *flags], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert psql.stdin is not None and psql.stdout is not None
    try:
        psql.stdin.write("BEGIN; LOCK TABLE ducklake_snapshot IN EXCLUSIVE MODE; SELECT 'locked';\n")
        psql.stdin.flush()
        assert psql.stdout.readline().strip() == "?column?"
        yield
    finally:
        psql.communicate("ROLLBACK;\n", timeout=60)


def waiting_on_a_lock(server: PostgresServer, url: str) -> Callable[[], bool | None]:
    database = url.split("?", 1)[0].rsplit("/", 1)[1]
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND wait_event_type = 'Lock'"
    return lambda: True if server.sql(sql) != "0" else None


@contextmanager
def store_held(url: str, server: PostgresServer | None) -> Iterator[Callable[[], bool | None]]:
    """The store held so that the collector's commit cannot finish; yields a check that says when the commit is
    blocked. DuckLake: inside its catalog transaction. Embedded: before it, waiting for the file's lock (held
    here read-write); the check then only gives the flush a moment, since any moment is before the commit."""
    if server is not None:
        with catalog_locked(server, url):
            yield waiting_on_a_lock(server, url)
        return
    holder = duckdb.connect(url)
    try:
        started = time.monotonic()
        yield lambda: True if time.monotonic() - started > 1.0 else None
    finally:
        holder.close()


def flush_in_background(url: str) -> threading.Thread:
    def flush() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the collector is killed under it
            httpx.post(f"{url}/admin/flush", json={}, headers=client_headers("admin"), timeout=90)

    thread = threading.Thread(target=flush, daemon=True)
    thread.start()
    return thread


def kill_in_the_commit(gateway: CollectorState, url: str, server: PostgresServer | None) -> None:
    """The collector's flush blocked by the held store, then SIGKILL: the kill lands before the store's commit."""
    with store_held(url, server) as blocked:
        flushing = flush_in_background(gateway.url)
        wait_for("the flush blocked on the held store", blocked, timeout_s=30)
        kill(gateway)
    flushing.join(30)


def kill_after_the_commit(gateway: CollectorState, journal: Path) -> list[str]:
    """The commit done, then SIGKILL, and the segments put back as they were: the state a crash leaves between
    the store's commit and the deletion of the committed segments (a window of microseconds, too short to hit
    with a signal). Returns the segments put back."""
    saved = journal.parent / "saved"
    saved.mkdir()
    names = segment_files(journal)  # the active segment, written whole (no writes while idle), not yet sealed
    for name in names:
        shutil.copy2(journal / name, saved / name)
    flush_collector(gateway.url)
    kill(gateway)
    assert segment_files(journal) == []
    for name in names:
        shutil.copy2(saved / name, journal / name)
    return names


@pytest.mark.parametrize("window", ["before-the-store-commit", "after-it-before-the-segments-deletion"])
@pytest.mark.parametrize("backend", ["embedded", "ducklake-postgres"])
def test_sigkill_in_a_commit_then_a_restart_stores_each_acknowledged_row_once(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str, window: str
) -> None:
    server = request.getfixturevalue("postgres") if backend == "ducklake-postgres" else None
    url = store_url(backend, tmp_path, server)
    home, journal = tmp_path / "gw", tmp_path / "gw" / "journal"
    prefix = new_prefix("killed")
    ids = [f"{prefix}-{i}" for i in range(KILLED_BACKLOG)]
    with FaultyUpstream() as upstream:
        first = start_gateway(home, upstream, url, commit_interval_s=NEVER)
        try:
            got = send(first.url, ids)
            writer = (journal / "WRITER").read_text().strip()
            if window == "before-the-store-commit":
                kill_in_the_commit(first, url, server)
                put_back: list[str] = []
                assert markers(url, writer) == {} and segment_files(journal) != []  # nothing of it committed
            else:
                put_back = kill_after_the_commit(first, journal)
                assert sorted(markers(url, writer)) == put_back  # committed, and its files still there
            second = start_gateway(home, upstream, url)  # same journal: replays what the first left
            flush_collector(second.url)
            after = health(second.url)
        finally:
            down(home)
    assert got == {rid: OK for rid in ids}
    assert stored_ids(url, prefix) == {rid: 1 for rid in ids}
    written = markers(url, writer)  # the second gateway writes as the same writer: its journal's WRITER
    assert all(len(rows) == 1 for rows in written.values())  # no segment committed twice
    # what the second gateway committed: every segment but those the first had committed before the kill
    assert after["committed_rows"] == sum(rows[0] for name, rows in written.items() if name not in put_back)
    assert after["backlog_rows"] == 0 and segment_files(journal) == []


# --- 4. the journal's disk full -----------------------------------------------------------------------------


@contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    """A tmpfs of JOURNAL_FS mounted at `path` (skips where mounting is not allowed), unmounted afterwards."""
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={JOURNAL_FS}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        if os.geteuid() != 0 or "permission denied" in done.stderr.lower() or "not permitted" in done.stderr.lower():
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr.strip()}")
        pytest.fail(f"mount -t tmpfs at {path}: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no block left; returns it (delete it to free the space)."""
    filler = disk / "FILL"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def until_unjournaled(url: str, prefix: str) -> dict[str, str]:
    """Requests one by one (every other one streamed) until /healthz says one was not journaled (the last block
    of the active segment takes a few more after the disk is full). id -> what each client got."""
    got: dict[str, str] = {}
    with httpx.Client() as client:
        for i in range(200):
            rid = f"{prefix}-{i}"
            got[rid] = complete(client, url, rid, stream=i % 2 == 0)
            if health(url)["problem"] is not None:
                return got
    pytest.fail(f"the journal took 200 rows on a full disk of {JOURNAL_FS}")


def test_a_full_journal_disk_fail_open_keeps_answering_counts_the_lost_rows_and_recovers(tmp_path: Path) -> None:
    prefix = new_prefix("full-open")
    with small_disk(tmp_path / "journal") as journal, FaultyUpstream() as upstream:
        gateway = start_gateway(tmp_path, upstream, str(tmp_path / "s.duckdb"), journal_dir=str(journal),
                                commit_interval_s=NEVER, scrape_interval_s=NEVER)  # fmt: skip
        try:
            before = send(gateway.url, [f"{prefix}-a{i}" for i in range(4)])
            filler = fill(journal)
            full = until_unjournaled(gateway.url, f"{prefix}-f")
            full |= send(gateway.url, [f"{prefix}-g{i}" for i in range(4)])  # with the disk still full
            degraded = health(gateway.url)
            filler.unlink()
            freed = send(gateway.url, [f"{prefix}-h{i}" for i in range(4)])
            recovered = health(gateway.url)
            flush_collector(gateway.url)
            flushed = health(gateway.url)
        finally:
            down(tmp_path)
    stored = stored_ids(str(tmp_path / "s.duckdb"), prefix)
    assert before | full | freed == {rid: OK for rid in [*before, *full, *freed]}  # fail-open: all answered
    lost = [rid for rid in full if rid not in stored]
    journaled = [rid in stored for rid in full]
    assert journaled == sorted(journaled, reverse=True)  # journaled until the disk was full, then none
    assert len(lost) >= 5  # the first not journaled and the four after it
    assert degraded["status"] == "degraded" and degraded["unjournaled_rows"] == len(lost)
    assert degraded["problem"].startswith(f"journal {journal}: ") and "No space left on device" in degraded["problem"]
    assert stored == {rid: 1 for rid in [*before, *full, *freed] if rid not in lost}
    assert recovered["status"] == "ok" and recovered["problem"] is None
    assert flushed["status"] == "ok" and flushed["backlog_rows"] == 0 and flushed["unjournaled_rows"] == len(lost)


def refusal_of(response: httpx.Response, journal: Path) -> str:
    """The message of an OpenAI-shaped 503 with a Retry-After header that names the full journal."""
    body = response.json()
    assert response.status_code == 503, body
    assert set(body) == {"error"} and body["error"]["type"] == "service_unavailable", body
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["code"] == 503, body
    assert int(response.headers["retry-after"]) >= 1
    message: str = body["error"]["message"]
    assert str(journal) in message and "No space left on device" in message, message
    return message


def until_refused(url: str, prefix: str) -> tuple[list[str], httpx.Response]:
    """Whole (not streamed) requests one by one until one is refused: the ids answered, and the refusal."""
    with httpx.Client() as client:
        answered: list[str] = []
        for i in range(200):
            response = post(client, url, f"{prefix}-{i}", stream=False)
            if response.status_code != 200:
                return answered, response
            answered.append(f"{prefix}-{i}")
    pytest.fail(f"the journal took 200 rows on a full disk of {JOURNAL_FS}")


def answered_again(url: str, prefix: str) -> Callable[[], str | None]:
    """A check for wait_for: one request each time; its id once one is answered whole."""
    numbers = itertools.count()

    def check() -> str | None:
        rid = f"{prefix}-{next(numbers)}"
        return rid if send(url, [rid])[rid] == OK else None

    return check


def test_a_full_journal_disk_fail_closed_refuses_with_503_acknowledges_nothing_and_recovers(tmp_path: Path) -> None:
    prefix = new_prefix("full-closed")
    with small_disk(tmp_path / "journal") as journal, FaultyUpstream() as upstream:
        gateway = start_gateway(tmp_path, upstream, str(tmp_path / "s.duckdb"), journal_dir=str(journal),
                                commit_interval_s=NEVER, scrape_interval_s=NEVER, overflow="fail-closed")  # fmt: skip
        try:
            filler = fill(journal)
            answered, first = until_refused(gateway.url, f"{prefix}-f")
            with httpx.Client() as client:  # the disk still full: refused at the door, streams too
                refused = [post(client, gateway.url, f"{prefix}-r{i}", stream=i == 1) for i in range(2)]
            degraded = health(gateway.url)
            filler.unlink()
            back = wait_for("a request answered again after the disk was freed",
                            answered_again(gateway.url, f"{prefix}-b"), timeout_s=30)  # fmt: skip
            more = send(gateway.url, [f"{prefix}-m{i}" for i in range(4)])
            flush_collector(gateway.url)
            flushed = health(gateway.url)
        finally:
            down(tmp_path)
    stored = stored_ids(str(tmp_path / "s.duckdb"), prefix)
    # the pool answered it, the journal could not take its row: not acknowledged
    assert "could not record this request" in refusal_of(first, journal)
    assert ["not taking requests" in refusal_of(r, journal) for r in refused] == [True, True]
    assert degraded["status"] == "degraded" and degraded["problem"].startswith(f"journal {journal}: ")
    assert degraded["unjournaled_rows"] == 1  # the first refused; the others never reached the pool
    assert more == {rid: OK for rid in more}
    assert stored == {rid: 1 for rid in [*answered, back, *more]}  # every acknowledged row, and no refused one
    assert flushed["status"] == "ok" and flushed["backlog_rows"] == 0
