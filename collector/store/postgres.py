"""A throwaway PostgreSQL server from the Debian package: the DuckLake catalog for tests and the fleet demo.

`TempPostgres` runs `initdb` into a fresh temporary directory and starts the server on a free loopback port
(TCP on 127.0.0.1 only; its unix socket in that same directory, never /var/run), with trust authentication
for the `postgres` role. PostgreSQL refuses to run as root, so when we are root `initdb` and `pg_ctl` run as
the `postgres` OS user (`runuser -u postgres --`) and the directory belongs to that user; as any other user
they run as ourselves.

Durability: `initdb --no-sync` always (the cluster is thrown away anyway); the server keeps `fsync=on` unless
asked for `fsync=False`. Tests pass `fsync=False`: it only matters for an operating-system crash or power
loss, which no test simulates (a SIGKILLed or fast-stopped server loses nothing either way).

`stop(keep_data=True)` then `start()` restarts the same cluster on the same port (a catalog outage in the
fault tests); `stop()` or leaving the `with` block stops it and removes the directory.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PG_ROOT = Path("/usr/lib/postgresql")
OS_USER = "postgres"  # the OS user the server runs as when we are root
ROLE = "postgres"  # the database superuser initdb creates
HOST = "127.0.0.1"
START_TIMEOUT_S = 30
START_ATTEMPTS = 3  # a free port can be taken by someone else between choosing it and binding it
LOG_TAIL_LINES = 30
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the terminating NUL
_DB_NAME = re.compile(r"[a-z0-9_]{1,63}")
_SYSTEM_DBS = frozenset({"postgres", "template0", "template1"})
_PORT_TAKEN = ("could not bind", "Address already in use")


class PostgresError(RuntimeError):
    """PostgreSQL could not be found, started, stopped or used; the message says what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server, as clients reach it."""

    host: str
    port: int
    user: str
    data_dir: Path
    log: Path

    def dsn(self, dbname: str) -> str:
        """libpq key/value connection string, e.g. for `ATTACH 'ducklake:postgres:<dsn>'`."""
        return f"dbname={_checked_name(dbname)} host={self.host} port={self.port} user={self.user}"

    def create_database(self, name: str) -> None:
        """Create database `name` unless it exists (idempotent, also when two callers race)."""
        name = _checked_name(name)
        if self.database_exists(name):
            return
        done = _run([str(find_bin_dir() / "createdb"), *self._client_flags(), name])
        if done.returncode != 0 and not self.database_exists(name):
            raise self._error(f"createdb {name} failed: {done.stderr.strip()}")

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions first."""
        name = _checked_name(name)
        if name in _SYSTEM_DBS:
            raise ValueError(f"refusing to drop the system database {name!r}")
        done = _run([str(find_bin_dir() / "dropdb"), *self._client_flags(), "--if-exists", "--force", name])
        if done.returncode != 0:
            raise self._error(f"dropdb {name} failed: {done.stderr.strip()}")

    def database_exists(self, name: str) -> bool:
        return self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{_checked_name(name)}'") == "1"

    def sql(self, statement: str, dbname: str = "postgres") -> str:
        """Run one statement with psql and return its unaligned, tuples-only output."""
        cmd = [str(find_bin_dir() / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *self._client_flags()]
        done = _run([*cmd, "-d", _checked_name(dbname), "-c", statement])
        if done.returncode != 0:
            raise self._error(f"psql failed on {statement!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def _client_flags(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, "-w"]

    def _error(self, what: str) -> PostgresError:
        return PostgresError(f"{what}\n(server at {self.host}:{self.port}, data dir {self.data_dir}, log {self.log})")


class TempPostgres:
    """Context manager: a fresh cluster started on enter, stopped and removed on exit.

    `root` is where the temporary directory goes (default: the system temp dir); when we are root, the
    postgres user must be able to traverse it. `port` fixes the port (default: a free one, retried up to
    three times if another process takes it first). `settings` are extra server settings (`-c key=value`).
    """

    def __init__(
        self,
        root: Path | None = None,
        port: int | None = None,
        *,
        fsync: bool = True,
        settings: dict[str, str] | None = None,
    ) -> None:
        self._root = root
        self._port = port
        self._settings = {"fsync": "on" if fsync else "off", **(settings or {})}
        self._dir: Path | None = None
        self._server: PostgresServer | None = None

    @property
    def server(self) -> PostgresServer | None:
        """The running server, or None while stopped."""
        return self._server

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> PostgresServer:
        """Start the server: a new cluster the first time, the kept one (same port) after stop(keep_data=True)."""
        if self._server is not None:
            raise PostgresError(f"PostgreSQL is already running on port {self._server.port} ({self._dir})")
        bin_dir = find_bin_dir()
        if self._dir is None:
            self._dir = self._init_cluster(bin_dir)
        fixed = self._port is not None
        for attempt in range(1, START_ATTEMPTS + 1):
            port = self._port if self._port is not None else _free_port()
            failure = self._pg_ctl_start(bin_dir, port)
            if failure is None:
                self._port = port
                self._server = PostgresServer(HOST, port, ROLE, self._dir / "data", self._dir / "postgres.log")
                return self._server
            if fixed or attempt == START_ATTEMPTS or not any(s in failure for s in _PORT_TAKEN):
                raise PostgresError(
                    f"PostgreSQL did not start on {HOST}:{port} (attempt {attempt}): data dir {self._dir / 'data'}, "
                    f"log {self._dir / 'postgres.log'}. Check the log below; if the port is taken, pick another "
                    f"or leave it unset.\n--- last lines of the server log ---\n{failure}"
                )
        raise AssertionError("unreachable")

    def stop(self, keep_data: bool = False) -> None:
        """Stop the server (fast shutdown); unless keep_data, remove its directory as well."""
        if self._dir is None:
            return
        if self._server is not None:
            self._pg_ctl_stop(find_bin_dir())
            self._server = None
        if not keep_data:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._port = None

    def _init_cluster(self, bin_dir: Path) -> Path:
        workdir = Path(tempfile.mkdtemp(prefix="inferwatch-pg-", dir=self._root))
        try:
            _give_to_server_user(workdir)
            if len(str(workdir / ".s.PGSQL.65535")) > SOCKET_PATH_MAX:
                raise PostgresError(f"{workdir} is too long a path for a unix socket; pass a shorter root")
            cmd = [str(bin_dir / "initdb"), "-D", str(workdir / "data"), "-A", "trust", "-U", ROLE]
            done = _run(_as_server_user([*cmd, "-E", "UTF8", "--locale=C", "--no-sync"]), cwd=workdir)
            if done.returncode != 0:
                raise PostgresError(
                    f"initdb failed in {workdir / 'data'} (exit {done.returncode}): {done.stderr.strip()[-2000:]}\n"
                    f"When running as root, the {OS_USER} user must be able to traverse {workdir.parent}."
                )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return workdir

    def _pg_ctl_start(self, bin_dir: Path, port: int) -> str | None:
        """Start on `port`; None when up, else the tail of the server log (the server stopped again)."""
        assert self._dir is not None
        settings = {"listen_addresses": HOST, "port": str(port), **self._settings}
        options = " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items())
        options += f" -k {shlex.quote(str(self._dir))}"
        log = self._dir / "postgres.log"
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(self._dir / "data"), "-l", str(log), "-o", options]
        done = _run(_as_server_user([*cmd, "-w", "-t", str(START_TIMEOUT_S), "start"]), cwd=self._dir)
        if done.returncode == 0:
            return None
        self._pg_ctl_stop(bin_dir, quiet=True)  # a start that timed out may leave a server behind
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]) if log.exists() else ""
        return f"{tail}\n{done.stdout.strip()}\n{done.stderr.strip()}".strip()

    def _pg_ctl_stop(self, bin_dir: Path, quiet: bool = False) -> None:
        assert self._dir is not None
        data = str(self._dir / "data")
        for mode in ("fast", "immediate"):
            cmd = [str(bin_dir / "pg_ctl"), "-D", data, "-m", mode, "-w", "-t", str(START_TIMEOUT_S), "stop"]
            _run(_as_server_user(cmd), cwd=self._dir)
            status = _run(_as_server_user([str(bin_dir / "pg_ctl"), "-D", data, "status"]), cwd=self._dir)
            if status.returncode != 0:  # 3: not running (4: no data dir)
                return
        if not quiet:
            raise PostgresError(
                f"PostgreSQL in {data} did not stop (pg_ctl stop -m fast, then immediate); "
                f"log {self._dir / 'postgres.log'}. Stop it with: pg_ctl -D {data} -m immediate stop"
            )


def find_bin_dir(root: Path = PG_ROOT) -> Path:
    """The bin directory of the newest PostgreSQL installed from Debian, e.g. /usr/lib/postgresql/15/bin."""
    versions = []
    if root.is_dir():
        for entry in root.iterdir():
            if re.fullmatch(r"\d+(\.\d+)?", entry.name) and (entry / "bin" / "pg_ctl").exists():
                versions.append((tuple(int(part) for part in entry.name.split(".")), entry / "bin"))
    if not versions:
        raise PostgresError(
            f"PostgreSQL server binaries not found under {root}/<version>/bin. "
            "Install the Debian package: `apt-get install postgresql` (or `make system`)."
        )
    return max(versions)[1]


def _checked_name(name: str) -> str:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"database name {name!r} must be 1-63 characters of [a-z0-9_]")
    return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *cmd] if _is_root() else cmd


def _give_to_server_user(workdir: Path) -> None:
    if not _is_root():
        return
    try:
        user = pwd.getpwnam(OS_USER)
    except KeyError:
        raise PostgresError(
            f"no {OS_USER!r} OS user to run PostgreSQL as (we are root); install the Debian package: "
            "`apt-get install postgresql` (or `make system`)"
        ) from None
    os.chown(workdir, user.pw_uid, user.pw_gid)
    if _run(_as_server_user(["test", "-w", str(workdir), "-a", "-x", str(workdir)])).returncode != 0:
        raise PostgresError(
            f"the {OS_USER} user cannot reach {workdir}: some directory above it is closed to other users; "
            "pass a root under the system temp dir"
        )


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool; messages in English whatever the caller's locale, no user config."""
    env = {**os.environ, "LC_ALL": "C", "PGCONNECT_TIMEOUT": "10"}
    for leaked in ("PGPASSWORD", "PGSERVICE", "PGOPTIONS", "PGDATABASE", "PGHOST", "PGPORT", "PGUSER"):
        env.pop(leaked, None)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, check=False, timeout=120)
