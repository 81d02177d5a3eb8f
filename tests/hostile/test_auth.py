"""Every door of the collector asks who is calling (collector/auth.py): a real collector process on loopback with
an admin token in its environment, a read token in a file, and a client API keys file; plus the pure rules and
the refusals to listen beyond loopback without authentication."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from collector import daemon
from collector.auth import (
    ADMIN_TOKEN_VAR,
    API_KEY_VAR,
    READ_TOKEN_VAR,
    AuthConfigError,
    ExposedBind,
    Need,
    TokenSource,
    check_bind,
    collector_auth,
    forgery,
    host_allowed,
    need_of,
    parse_api_keys,
)
from collector.client.completions import post_json
from collector.gateway.routes import Split
from collector.gateway.splits import SplitClient
from collector.loadgen.job import gateway_pools
from collector.state import CollectorState
from collector.store.door import open_reader
from tests.collector.faulty_upstream import FaultyUpstream, start_collector
from tests.conftest import flush_collector, free_port, inferwatch

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
KEY = "sk-team-a-0123456789"
UNAUTHORIZED = 'Bearer realm="inferwatch"'


@dataclass
class Guarded:
    state: CollectorState
    read_file: Path
    home: Path

    @property
    def url(self) -> str:
        return self.state.url


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    home = tmp_path_factory.mktemp("guarded")
    read_file = home / "read-token"
    read_file.write_text(f"# the read token\n{READ}\n")
    keys = home / "keys.yaml"
    keys.write_text(f"sha256:{hashlib.sha256(KEY.encode()).hexdigest()}: team-a\n")
    with pytest.MonkeyPatch.context() as env, FaultyUpstream() as upstream:
        env.setenv(ADMIN_TOKEN_VAR, ADMIN)  # the child process inherits these; none is in its argv
        env.setenv(f"{READ_TOKEN_VAR}_FILE", str(read_file))
        env.delenv(READ_TOKEN_VAR, raising=False)
        env.setenv(API_KEY_VAR, KEY)
        state = start_collector(home, upstream, api_keys=str(keys))
        try:
            yield Guarded(state, read_file, home)
        finally:
            daemon.down(home / "collector.json")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(status: int, kind: str, message: str) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": status}}


def splits(url: str) -> list[object]:
    answer = httpx.get(f"{url}/admin/splits", headers=bearer(ADMIN), timeout=10)
    assert answer.status_code == 200, answer.text
    listed: list[object] = answer.json()["splits"]
    return listed


def completion(url: str, key: str | None = KEY, **headers: str) -> httpx.Response:
    auth = bearer(key) if key else {}
    return httpx.post(f"{url}/v1/completions", json={"model": "arith@ok", "prompt": "1+2="},
                      headers={**auth, **headers}, timeout=10)  # fmt: skip


def test_a_split_without_a_token_is_a_401_and_moves_no_traffic(guarded: Guarded) -> None:
    body = {"baseline": "ok", "candidate": "err500", "weight": 1.0}
    answer = httpx.put(f"{guarded.url}/admin/splits", json=body, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == UNAUTHORIZED
    assert answer.json() == error(401, "authentication_error", "PUT /admin/splits: no token; send `Authorization: "
                                  f"Bearer <token>` with the token of {ADMIN_TOKEN_VAR}")  # fmt: skip
    wrong = httpx.delete(f"{guarded.url}/admin/splits/ok", headers=bearer("x" * 20), timeout=10)
    assert wrong.status_code == 401 and "an invalid token" in wrong.json()["error"]["message"]
    assert wrong.headers["www-authenticate"] == UNAUTHORIZED + ', error="invalid_token"'
    assert splits(guarded.url) == []
    served = completion(guarded.url)  # still serving, from the baseline
    assert (served.status_code, served.headers["x-inferwatch-pool"]) == (200, "ok")


def test_the_read_token_reads_but_may_not_change_state(guarded: Guarded) -> None:
    listed = httpx.get(f"{guarded.url}/admin/splits", headers=bearer(READ), timeout=10)
    assert (listed.status_code, listed.json()) == (200, {"splits": []})
    put = httpx.put(f"{guarded.url}/admin/splits", json={"baseline": "ok", "candidate": "sums", "weight": 1.0},
                    headers=bearer(READ), timeout=10)  # fmt: skip
    flush = httpx.post(f"{guarded.url}/admin/flush", json={}, headers=bearer(READ), timeout=10)
    for refused, what in ((put, "PUT /admin/splits"), (flush, "POST /admin/flush")):
        assert refused.status_code == 403
        assert refused.json() == error(403, "permission_error", f"{what}: the read token may not change state; "
                                       f"send the admin token ({ADMIN_TOKEN_VAR})")  # fmt: skip
    assert splits(guarded.url) == []
    metrics = httpx.get(f"{guarded.url}/metrics", timeout=10)
    assert metrics.status_code == 401 and metrics.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{guarded.url}/metrics", headers=bearer(READ), timeout=10).status_code == 200


def test_healthz_tells_a_stranger_only_whether_it_is_well(guarded: Guarded) -> None:
    stranger = httpx.get(f"{guarded.url}/healthz", timeout=10)
    assert (stranger.status_code, stranger.json()) == (200, {"ok": True})
    reader = httpx.get(f"{guarded.url}/healthz", headers=bearer(READ), timeout=10).json()
    assert reader["ok"] is True and "ok" in reader["pools"] and reader["store"] == guarded.state.store


def test_the_internal_clients_send_the_tokens_of_the_environment(guarded: Guarded) -> None:
    client = SplitClient(guarded.url)  # INFERWATCH_ADMIN_TOKEN from the environment (the fixture's)
    assert client.set(Split("ok", "sums", 1.0)) == {"baseline": "ok", "candidate": "sums", "weight": 1.0, "ttl_s": None}
    assert client.clear("ok") is not None and client.list() == []
    assert ADMIN not in repr(client)
    assert flush_collector(guarded.url) >= 0
    assert gateway_pools(guarded.url)["ok"] == "arith@ok"  # GET /v1/models with INFERWATCH_API_KEY

    async def ask() -> dict[str, object]:
        async with httpx.AsyncClient(timeout=10) as http:
            answer, _ = await post_json(http, f"{guarded.url}/v1/completions", {"model": "arith@ok", "prompt": "1"}, {})
        return answer

    import asyncio

    assert asyncio.run(ask())["choices"]
    with pytest.raises(RuntimeError, match="no token"):
        SplitClient(guarded.url, headers={}).list()


def test_a_client_key_is_needed_on_v1_and_its_tenant_is_recorded(guarded: Guarded) -> None:
    missing = completion(guarded.url, key=None, **{"x-request-id": "auth-refused-1"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == UNAUTHORIZED
    assert missing.json() == error(401, "authentication_error", "POST /v1/completions: no API key; send "
                                   "`Authorization: Bearer <your API key>`")  # fmt: skip
    unknown = completion(guarded.url, key="sk-nobody-0123456789", **{"x-request-id": "auth-refused-2"})
    assert unknown.status_code == 401 and "an unknown API key" in unknown.json()["error"]["message"]
    assert httpx.get(f"{guarded.url}/v1/models", timeout=10).status_code == 401
    served = completion(guarded.url, **{"x-request-id": "auth-tenant-1"})
    assert served.status_code == 200, served.text
    flush_collector(guarded.url)
    with open_reader(guarded.state.store) as store:
        rows = store.query("SELECT id, tenant FROM requests WHERE id LIKE 'auth-%' ORDER BY id")
    assert rows.to_pylist() == [{"id": "auth-tenant-1", "tenant": "team-a"}]  # the refused ones left no row


def test_the_probes_need_nothing_and_tokenize_needs_a_client_key(guarded: Guarded) -> None:
    health, version = httpx.get(f"{guarded.url}/health", timeout=10), httpx.get(f"{guarded.url}/version", timeout=10)
    assert (health.status_code, health.content) == (200, b"")  # no token, no key: what every SDK probes first
    assert version.status_code == 200 and version.json()["inferwatch"] == "0.1.0"
    for path in ("/tokenize", "/detokenize"):
        missing = httpx.post(f"{guarded.url}{path}", json={"model": "arith@ok", "prompt": "1"}, timeout=10)
        assert missing.status_code == 401
        assert missing.json() == error(401, "authentication_error", f"POST {path}: no API key; send "
                                       "`Authorization: Bearer <your API key>`")  # fmt: skip
        # with the key it reaches the pool, which serves no such path: the gateway's 404, not auth's refusal
        served = httpx.post(f"{guarded.url}{path}", json={"model": "arith@ok", "prompt": "1", "tokens": [1]},
                            headers=bearer(KEY), timeout=10)  # fmt: skip
        assert served.status_code == 404
        assert served.json()["error"]["message"].startswith(f"pool ok does not serve {path} (HTTP 404 from ")


def test_a_token_file_is_reread_so_a_rotation_needs_no_restart(guarded: Guarded) -> None:
    new = "read-token-rotated-0123456789"
    guarded.read_file.write_text(f"{READ}\n{new}\n")  # both accepted while clients move over
    for token in (READ, new):
        assert httpx.get(f"{guarded.url}/admin/splits", headers=bearer(token), timeout=10).status_code == 200
    guarded.read_file.write_text(f"{new}\n")
    try:
        assert httpx.get(f"{guarded.url}/admin/splits", headers=bearer(READ), timeout=10).status_code == 401
        assert httpx.get(f"{guarded.url}/admin/splits", headers=bearer(new), timeout=10).status_code == 200
    finally:
        guarded.read_file.write_text(f"{READ}\n")


def test_a_host_that_does_not_name_the_server_is_refused(guarded: Guarded) -> None:
    port = guarded.url.rsplit(":", 1)[1]
    rebound = httpx.get(f"{guarded.url}/admin/splits", headers={**bearer(ADMIN), "Host": f"evil.example:{port}"},
                        timeout=10)  # fmt: skip
    assert rebound.status_code == 421
    assert rebound.json() == error(421, "invalid_request_error", (
        f"GET /admin/splits: Host 'evil.example:{port}' does not name this server; use its address, or add the name "
        "to the collector's allowed hosts (INFERWATCH_ALLOWED_HOSTS)"))  # fmt: skip
    other_port = httpx.get(f"{guarded.url}/healthz", headers={"Host": "127.0.0.1:1"}, timeout=10)
    assert other_port.status_code == 421
    by_name = httpx.get(f"{guarded.url}/healthz", headers={"Host": f"localhost:{port}"}, timeout=10)
    assert by_name.status_code == 200


def test_a_cross_site_request_changes_nothing_even_with_the_token(guarded: Guarded) -> None:
    body = {"baseline": "ok", "candidate": "sums", "weight": 1.0}
    for header, value, said in (
        ("Origin", "http://evil.example", "refused a request from another origin (Origin: http://evil.example)"),
        ("Sec-Fetch-Site", "cross-site", "refused a cross-site request (Sec-Fetch-Site: cross-site)"),
    ):
        answer = httpx.put(f"{guarded.url}/admin/splits", json=body, headers={**bearer(ADMIN), header: value},
                           timeout=10)  # fmt: skip
        assert answer.status_code == 403
        assert answer.json() == error(403, "permission_error", f"PUT /admin/splits: {said}")
    assert splits(guarded.url) == []
    same = httpx.put(f"{guarded.url}/admin/splits", json=body, timeout=10,
                     headers={**bearer(ADMIN), "Origin": guarded.url, "Sec-Fetch-Site": "same-origin"})  # fmt: skip
    assert same.status_code == 200
    SplitClient(guarded.url).clear("ok")


def test_no_token_is_in_argv_the_state_file_or_the_log(guarded: Guarded) -> None:
    assert httpx.get(f"{guarded.url}/admin/splits", headers=bearer(ADMIN), timeout=10).status_code == 200
    argv = Path(f"/proc/{guarded.state.pid}/cmdline").read_bytes().decode()
    environ = Path(f"/proc/{guarded.state.pid}/environ").read_bytes().decode()
    assert ADMIN in environ  # where it travels (readable by the same user only)
    for text in (argv, (guarded.home / "collector.json").read_text(), Path(guarded.state.log).read_text()):
        assert ADMIN not in text and READ not in text and KEY not in text
    assert "keys.yaml" in argv  # the keys file is named, its keys are hashes


def test_a_forged_form_post_changes_nothing_without_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (ADMIN_TOKEN_VAR, READ_TOKEN_VAR, API_KEY_VAR, f"{ADMIN_TOKEN_VAR}_FILE", f"{READ_TOKEN_VAR}_FILE"):
        monkeypatch.delenv(var, raising=False)
    with FaultyUpstream() as upstream:
        state = start_collector(tmp_path, upstream)
        try:
            body = json.dumps({"baseline": "ok", "candidate": "sums", "weight": 1.0})
            for headers in ({"Content-Type": "text/plain"}, {}, {"Content-Type": "application/x-www-form-urlencoded"}):
                forged = httpx.put(f"{state.url}/admin/splits", content=body, headers=headers, timeout=10)
                assert forged.status_code == 415
                assert forged.json()["error"]["message"] == (
                    "PUT /admin/splits: send the body as Content-Type: application/json (or an Authorization "
                    "header); other content types are what a browser form can forge"
                )
            assert httpx.get(f"{state.url}/admin/splits", timeout=10).json() == {"splits": []}
            assert httpx.put(f"{state.url}/admin/splits", content=body, timeout=10,
                             headers={"Content-Type": "application/json"}).status_code == 200  # fmt: skip
            assert httpx.get(f"{state.url}/healthz", timeout=10).json()["pools"]  # no tokens: details for all
        finally:
            daemon.down(tmp_path / "collector.json")


# the rules, pure


def test_what_each_path_needs() -> None:
    assert [need_of("POST", p, False) for p in ("/tokenize", "/detokenize", "/v1/completions")] == [Need.client] * 3
    assert [need_of("GET", p, False) for p in ("/health", "/version", "/healthz", "/v1/models")] == [
        Need.nothing, Need.nothing, Need.nothing, Need.client]  # fmt: skip
    assert need_of("GET", "/metrics", False) is Need.read and need_of("GET", "/metrics", True) is Need.nothing
    assert need_of("POST", "/health", False) is Need.admin  # only the probes' own method is open
    assert need_of("GET", "/tokenize/x", False) is Need.read


def test_host_allowed_names_only_this_server() -> None:
    server = ("127.0.0.1", 8090)
    assert host_allowed("127.0.0.1:8090", server, "127.0.0.1", ())
    assert host_allowed("[::1]:8090", server, "127.0.0.1", ())
    assert host_allowed("LOCALHOST", server, "127.0.0.1", ())
    assert not host_allowed("localhost:8091", server, "127.0.0.1", ())
    assert not host_allowed("evil.example:8090", server, "127.0.0.1", ())
    assert host_allowed("gw.internal:443", server, "0.0.0.0", ("gw.internal",))
    assert host_allowed("10.0.0.5:8090", ("10.0.0.5", 8090), "0.0.0.0", ())  # the address it arrived at
    assert not host_allowed("0.0.0.0:8090", ("10.0.0.5", 8090), "0.0.0.0", ())
    assert not host_allowed("a:b:c", server, "127.0.0.1", ())


def test_forgery_is_judged_on_state_changing_methods_only() -> None:
    server, json_type = ("127.0.0.1", 8090), {"content-type": "application/json; charset=utf-8"}
    assert forgery("GET", {"origin": "http://evil.example"}, server, "127.0.0.1", ()) is None
    assert forgery("POST", json_type, server, "127.0.0.1", ()) is None
    assert forgery("POST", {"authorization": "Bearer x"}, server, "127.0.0.1", ()) is None
    assert forgery("POST", {**json_type, "origin": "null"}, server, "127.0.0.1", ()) == (
        403, "refused a request from another origin (Origin: null)")  # fmt: skip
    assert forgery("DELETE", {**json_type, "sec-fetch-site": "same-site"}, server, "127.0.0.1", ())[0] == 403  # type: ignore[index]
    assert forgery("POST", {**json_type, "sec-fetch-site": "none"}, server, "127.0.0.1", ()) is None


def test_bad_token_settings_are_named_at_start(tmp_path: Path) -> None:
    async def app(scope: object, receive: object, send: object) -> None: ...

    with pytest.raises(AuthConfigError, match="INFERWATCH_ADMIN_TOKEN: a token must be at least 16 printable"):
        collector_auth(app, bind="127.0.0.1", api_keys=None, environ={ADMIN_TOKEN_VAR: "short"})
    with pytest.raises(AuthConfigError, match="INFERWATCH_READ_TOKEN is set without INFERWATCH_ADMIN_TOKEN"):
        collector_auth(app, bind="127.0.0.1", api_keys=None, environ={READ_TOKEN_VAR: READ})
    missing = tmp_path / "nope"
    with pytest.raises(AuthConfigError, match=f"INFERWATCH_ADMIN_TOKEN_FILE {missing}: .*No such file"):
        collector_auth(app, bind="127.0.0.1", api_keys=None, environ={f"{ADMIN_TOKEN_VAR}_FILE": str(missing)})
    with pytest.raises(AuthConfigError, match=r"entry 'sk-plain-key'\.\.\.: write the key's sha256, never the key"):
        parse_api_keys({"sk-plain-key-0123": "team-a"}, "api keys file k.yaml")
    source = TokenSource.from_env(ADMIN_TOKEN_VAR, {ADMIN_TOKEN_VAR: f"{ADMIN},{READ}"})
    assert repr(source) == "TokenSource(INFERWATCH_ADMIN_TOKEN, environment, 2 token(s))"
    assert source.accepts(READ) and source.accepts(ADMIN) and not source.accepts(ADMIN[:-1])


def test_listening_beyond_loopback_without_a_token_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: object, receive: object, send: object) -> None: ...

    with pytest.raises(
        ExposedBind, match=r"the collector: refusing to listen on 0\.0\.0\.0 \(--host / INFERWATCH_HOST"
    ):
        collector_auth(app, bind="0.0.0.0", api_keys=None, environ={})
    collector_auth(app, bind="0.0.0.0", api_keys=None, environ={ADMIN_TOKEN_VAR: ADMIN})  # secured: fine
    collector_auth(app, bind="127.0.0.2", api_keys=None, environ={})  # still loopback
    with caplog.at_level(logging.WARNING, logger="inferwatch.auth"):
        check_bind("::", "the dashboard", "INFERWATCH_HOST", secured=False, insecure=True)
    assert "INSECURE: the dashboard listens on :: without authentication" in caplog.text


def test_the_cli_refuses_every_server_beyond_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("INFERWATCH_")]:
        monkeypatch.delenv(var)  # no token, no override
    os_env = {"INFERWATCH_HOST": "0.0.0.0", "INFERWATCH_HOME": str(tmp_path)}
    collector = inferwatch("collector", "up", timeout=120, env=os_env)
    assert collector.returncode == 3, collector.stderr
    assert "the collector: refusing to listen on 0.0.0.0" in collector.stderr
    assert "INFERWATCH_ADMIN_TOKEN" in collector.stderr and "--insecure-bind" in collector.stderr
    engine = inferwatch("engine", "up", "--port", str(free_port()), timeout=120, env=os_env)
    assert engine.returncode == 1, engine.stderr
    assert "refusing to open the engine's HTTP proxy on 0.0.0.0 (INFERWATCH_HOST)" in engine.stderr
    assert not (tmp_path / "engine.json").exists()
    dashboard = inferwatch("dashboard", "--port", str(free_port()), timeout=120, env=os_env)
    assert dashboard.returncode == 1, dashboard.stderr
    assert "the dashboard: refusing to listen on 0.0.0.0" in dashboard.stderr
