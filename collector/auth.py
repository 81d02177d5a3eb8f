"""Who may call the collector: bearer tokens for the admin and read surfaces, optional client API keys on the
gateway's /v1 routes (each mapped to a tenant), a Host-header allow-list against DNS rebinding, and no state
change on a request a browser could forge. One ASGI middleware (`Auth`) applies them all; the rules are pure
functions beside it.

Tokens come from the environment, never from argv or a config file the collector writes:
INFERWATCH_ADMIN_TOKEN / INFERWATCH_READ_TOKEN (one token, or several separated by commas while a rotation is
under way), or INFERWATCH_ADMIN_TOKEN_FILE / INFERWATCH_READ_TOKEN_FILE (one token a line; the file is re-read
when it changes, so a rotation needs no restart). The admin token may do everything; the read token may only
read. A request to /v1 needs a client key when an API keys file is configured (`CollectorConfig.api_keys`):
{"sha256:<hex of the key>": "<tenant>", ...}, JSON or YAML; the key itself is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.ray_head import is_loopback

log = logging.getLogger("inferwatch.auth")

ADMIN_TOKEN_VAR, READ_TOKEN_VAR, API_KEY_VAR = "INFERWATCH_ADMIN_TOKEN", "INFERWATCH_READ_TOKEN", "INFERWATCH_API_KEY"
TENANT_KEY = "inferwatch.tenant"  # the scope key the gateway records in the row's `tenant` column
ACCESS_KEY = "inferwatch.access"  # "admin", "read" or None: what the caller's token allows
MIN_TOKEN_CHARS = 16
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class AuthConfigError(ValueError):
    """A token, token file or API keys file that cannot be used; the message names it and says what to do."""


class ExposedBind(ValueError):
    """A server asked to bind beyond loopback without authentication; the message names the address and the fix."""


class Need(Enum):
    nothing = "nothing"
    client = "client"  # a client API key when keys are configured
    read = "read"
    admin = "admin"


def parse_tokens(text: str, where: str) -> tuple[str, ...]:
    """The tokens of a setting (commas or lines between them; `#` lines in a file are comments)."""
    lines = (line.strip() for line in text.replace(",", "\n").splitlines())
    tokens = tuple(line for line in lines if line and not line.startswith("#"))
    for token in tokens:
        if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in token):
            raise AuthConfigError(
                f"{where}: a token must be at least {MIN_TOKEN_CHARS} printable characters without spaces; "
                "make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
    return tokens


class TokenSource:
    """One token setting, from the environment or a file re-read when it changes. Its repr never shows a token."""

    def __init__(self, name: str, tokens: tuple[str, ...] = (), path: Path | None = None) -> None:
        self.name, self.path, self._tokens = name, path, tokens
        self._seen: tuple[int, int, int] | str | None = None  # the file's (inode, mtime, size) read, or "broken"
        if path is not None:
            self.current(strict=True)

    @classmethod
    def from_env(cls, var: str, environ: Mapping[str, str]) -> TokenSource:
        if environ.get(f"{var}_FILE"):
            return cls(var, path=Path(environ[f"{var}_FILE"]))
        return cls(var, parse_tokens(environ.get(var, ""), var))

    def __repr__(self) -> str:
        where = f"file {self.path}" if self.path else "environment"
        return f"TokenSource({self.name}, {where}, {len(self._tokens)} token(s))"

    def current(self, strict: bool = False) -> tuple[str, ...]:
        """The tokens accepted now. A file that became unreadable accepts none (logged once) until it is fixed."""
        seen = None if self.path is None else file_stamp(self.path)
        if self.path is None or (seen is not None and seen == self._seen):
            return self._tokens
        try:
            self._tokens = parse_tokens(self.path.read_text(), f"{self.name}_FILE {self.path}")
            if not self._tokens:
                raise AuthConfigError(f"{self.name}_FILE {self.path}: the file holds no token")
            self._seen = seen
        except (OSError, UnicodeDecodeError, AuthConfigError) as exc:
            message = str(exc) if isinstance(exc, AuthConfigError) else f"{self.name}_FILE {self.path}: {exc}"
            if strict:
                raise AuthConfigError(message) from None
            if self._seen != "broken":
                log.error("%s; no %s token is accepted until it is fixed", message, self.name)
            self._tokens, self._seen = (), "broken"
        return self._tokens

    def accepts(self, presented: str) -> bool:
        """Constant time in the token's content (hmac.compare_digest against every accepted token)."""
        return any([hmac.compare_digest(presented.encode(), token.encode()) for token in self.current()])

    @property
    def configured(self) -> bool:
        return self.path is not None or bool(self._tokens)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size): what changes when a file is rewritten or replaced; None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


def key_digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(raw: Any, where: str) -> dict[str, str]:
    """{"sha256:<64 hex>": tenant} from a keys file's content; AuthConfigError naming the entry otherwise."""
    if not isinstance(raw, dict) or not raw:
        raise AuthConfigError(f'{where}: expected a mapping like {{"sha256:<hex>": "team-a"}}')
    keys: dict[str, str] = {}
    for digest, tenant in raw.items():
        hex_part = str(digest).removeprefix("sha256:")
        if not str(digest).startswith("sha256:") or len(hex_part) != 64 or set(hex_part) - set("0123456789abcdef"):
            raise AuthConfigError(
                f"{where}: entry {str(digest)[:12]!r}...: write the key's sha256, never the key: "
                "`printf %s KEY | sha256sum` gives the hex of `sha256:<hex>`"
            )
        if not isinstance(tenant, str) or not tenant or len(tenant) > 64 or not tenant.isprintable():
            raise AuthConfigError(f"{where}: the tenant of {digest[:15]}...: a name of 1-64 printable characters")
        keys[digest] = tenant
    return keys


class ApiKeys:
    """The client keys file (JSON or YAML), re-read when it changes; a lookup is by the key's sha256."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys, self._seen = self._load(), file_stamp(path)

    def _load(self) -> dict[str, str]:
        import yaml

        try:
            raw = yaml.safe_load(self.path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise AuthConfigError(f"api keys file {self.path}: {exc}") from None
        return parse_api_keys(raw, f"api keys file {self.path}")

    def tenant(self, key: str) -> str | None:
        stamp = file_stamp(self.path)
        if stamp != self._seen:
            try:
                self._keys, self._seen = self._load(), stamp
            except AuthConfigError as exc:  # keep the keys that were good; say so once
                log.error("%s; keeping the keys read before", exc)
                self._seen = stamp
        return self._keys.get(key_digest(key))

    def __repr__(self) -> str:
        return f"ApiKeys({self.path}, {len(self._keys)} key(s))"


def need_of(method: str, path: str, metrics_public: bool) -> Need:
    """What a request must show: /v1, /tokenize and /detokenize a client key (when keys are configured); /healthz,
    /health and /version nothing (/healthz's details need the read token); other reads the read token (/metrics
    too unless public); anything else the admin token."""
    if path.startswith("/v1/") or path in ("/tokenize", "/detokenize"):
        return Need.client
    if method in SAFE_METHODS:
        if path in ("/healthz", "/health", "/version") or (path == "/metrics" and metrics_public):
            return Need.nothing
        return Need.read
    return Need.admin


def host_name(value: str) -> tuple[str, int | None] | None:
    """("name", port or None) of a Host header value ("[::1]:8090" -> ("::1", 8090)); None when malformed."""
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def host_allowed(value: str, server: tuple[str, int] | None, bind: str, extra: Iterable[str]) -> bool:
    """Whether a Host (or Origin's host) names this server: a loopback name, the bind address or the address the
    connection arrived at, with this server's port when it gives one; or a configured extra name (any port)."""
    parsed = host_name(value)
    if parsed is None or not parsed[0]:
        return False
    name, port = parsed
    if name in {e.lower() for e in extra}:
        return True
    ours = set(LOOPBACK_NAMES) | {bind.lower().strip("[]")} | ({server[0].lower()} if server else set())
    ours -= {"0.0.0.0", "::"}
    return name in ours and (port is None or server is None or port == server[1])


def forgery(method: str, headers: Mapping[str, str], server: tuple[str, int] | None, bind: str,
            extra: Iterable[str]) -> tuple[int, str] | None:  # fmt: skip
    """Why a state-changing request looks like one a browser was made to send (status, reason), or None."""
    if method in SAFE_METHODS:
        return None
    site = headers.get("sec-fetch-site", "")
    if site and site not in ("same-origin", "none"):
        return 403, f"refused a cross-site request (Sec-Fetch-Site: {site[:40]})"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin) if "://" in origin else None
        if parts is None or not parts.netloc or not host_allowed(parts.netloc, server, bind, extra):
            return 403, f"refused a request from another origin (Origin: {origin[:80]})"
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if "authorization" not in headers and media != "application/json":
        return 415, ("send the body as Content-Type: application/json (or an Authorization header); "
                     "other content types are what a browser form can forge")  # fmt: skip
    return None


def error_body(status: int, kind: str, message: str) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": status}}  # OpenAI's shape


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(frozen=True)
class Refusal:
    status: int
    kind: str  # OpenAI's error type
    message: str
    challenge: str | None = None  # WWW-Authenticate


@dataclass
class Auth:
    """The ASGI middleware. With no token configured, only the Host and forgery checks apply."""

    app: ASGIApp
    admin: TokenSource
    read: TokenSource
    api_keys: ApiKeys | None = None
    bind: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    metrics_public: bool = False

    @property
    def tokens_configured(self) -> bool:
        return self.admin.configured or self.read.configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal, minimal = self.check(scope, headers)
        if refusal is not None:
            await respond(send, refusal)
        elif minimal:
            await self.app(scope, receive, liveness_only(send))
        else:
            await self.app(scope, receive, send)

    def check(self, scope: Scope, headers: Mapping[str, str]) -> tuple[Refusal | None, bool]:
        """The refusal of this request (or None), and whether /healthz answers only {"ok": ...}."""
        method, path, server = scope["method"], scope["path"], scope.get("server")
        host = headers.get("host")
        if host is None:
            return Refusal(400, "invalid_request_error", f"{method} {path}: a Host header is required"), False
        if not host_allowed(host, server, self.bind, self.allowed_hosts):
            return Refusal(421, "invalid_request_error", (
                f"{method} {path}: Host {host[:80]!r} does not name this server; use its address, or add the name "
                "to the collector's allowed hosts (INFERWATCH_ALLOWED_HOSTS)")), False  # fmt: skip
        forged = forgery(method, headers, server, self.bind, self.allowed_hosts)
        if forged is not None:
            kind = "permission_error" if forged[0] == 403 else "invalid_request_error"
            return Refusal(forged[0], kind, f"{method} {path}: {forged[1]}"), False
        token = bearer(headers)
        access = None
        if token is not None and self.tokens_configured:
            access = "admin" if self.admin.accepts(token) else "read" if self.read.accepts(token) else None
        scope[ACCESS_KEY] = access
        need = need_of(method, path, self.metrics_public)
        if need is Need.client:
            return self.client(scope, token, method, path), False
        if need is Need.nothing or not self.tokens_configured:
            return None, need is Need.nothing and path == "/healthz" and self.tokens_configured and access is None
        if access == "admin" or (access == "read" and need is Need.read):
            return None, False
        if access == "read":
            return Refusal(403, "permission_error", f"{method} {path}: the read token may not change state; "
                           f"send the admin token ({ADMIN_TOKEN_VAR})"), False  # fmt: skip
        var = ADMIN_TOKEN_VAR if need is Need.admin else f"{READ_TOKEN_VAR} or {ADMIN_TOKEN_VAR}"
        said = "an invalid token" if token is not None else "no token"
        return Refusal(401, "authentication_error", (
            f"{method} {path}: {said}; send `Authorization: Bearer <token>` with the token of {var}"),
            'Bearer realm="inferwatch"' + (', error="invalid_token"' if token else "")), False  # fmt: skip

    def client(self, scope: Scope, key: str | None, method: str, path: str) -> Refusal | None:
        scope[TENANT_KEY] = None
        if self.api_keys is None:
            return None
        tenant = self.api_keys.tenant(key) if key is not None else None
        if tenant is None:
            said = "an unknown API key" if key is not None else "no API key"
            return Refusal(401, "authentication_error", f"{method} {path}: {said}; send `Authorization: Bearer "
                           "<your API key>`", 'Bearer realm="inferwatch"')  # fmt: skip
        scope[TENANT_KEY] = tenant
        return None


async def answer(send: Send, status: int, payload: object, challenge: str | None = None) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"www-authenticate", challenge.encode())] if challenge else []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond(send: Send, refusal: Refusal) -> None:
    await answer(send, refusal.status, error_body(refusal.status, refusal.kind, refusal.message), refusal.challenge)


def liveness_only(send: Send) -> Send:
    """A `send` that turns a JSON answer into {"ok": <its ok>} with the same status: /healthz for a caller
    without the read token learns whether the collector is well, not its store, pools or backlog."""
    start: Message = {}
    parts: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        parts.append(message.get("body", b""))
        if message.get("more_body"):
            return
        try:
            ok = json.loads(b"".join(parts)).get("ok") is True
        except (ValueError, AttributeError):
            ok = False
        await answer(send, start.get("status", 200), {"ok": ok})

    return wrapped


def check_bind(host: str, what: str, setting: str, *, secured: bool, insecure: bool) -> None:
    """ExposedBind when `what` would listen beyond loopback without authentication, unless `insecure` says to
    (then a warning on every start)."""
    if is_loopback(host) or secured:
        return
    if insecure:
        log.warning("INSECURE: %s listens on %s without authentication (INFERWATCH_INSECURE_BIND / "
                    "--insecure-bind); anyone who can reach it can use it", what, host)  # fmt: skip
        return
    raise ExposedBind(
        f"{what}: refusing to listen on {host} ({setting}) without authentication: anyone who can reach it could "
        f"use it. Set {ADMIN_TOKEN_VAR} (or {ADMIN_TOKEN_VAR}_FILE), bind 127.0.0.1, or accept the risk with "
        "--insecure-bind / INFERWATCH_INSECURE_BIND=1"
    )


def collector_auth(app: ASGIApp, *, bind: str, api_keys: str | None, allowed_hosts: Iterable[str] = (),
                   metrics_public: bool = False, insecure_bind: bool = False,
                   environ: Mapping[str, str] | None = None) -> Auth:  # fmt: skip
    """The collector's middleware around `app`, its tokens from the environment (AuthConfigError if bad);
    ExposedBind when `bind` is beyond loopback and no admin token is set (unless `insecure_bind`)."""
    env = os.environ if environ is None else environ
    admin, read = TokenSource.from_env(ADMIN_TOKEN_VAR, env), TokenSource.from_env(READ_TOKEN_VAR, env)
    if read.configured and not admin.configured:
        raise AuthConfigError(f"{READ_TOKEN_VAR} is set without {ADMIN_TOKEN_VAR}: set the admin token too")
    check_bind(bind, "the collector", "--host / INFERWATCH_HOST", secured=admin.configured, insecure=insecure_bind)
    keys = ApiKeys(Path(api_keys)) if api_keys else None
    return Auth(app, admin, read, keys, bind, tuple(allowed_hosts), metrics_public)


async def _unserved(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("built to be checked, not served")


def check_collector_auth(bind: str, api_keys: str | None, insecure_bind: bool) -> None:
    """What collector_auth would refuse at the collector's start, checked before it is started."""
    collector_auth(_unserved, bind=bind, api_keys=api_keys, insecure_bind=insecure_bind)
