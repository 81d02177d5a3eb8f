"""What an internal client (the rollout, load, canary, evals, the CLI, the tests) sends to the collector to be
let in: the tokens and the client API key of the environment, the same variables the collector reads
(collector/auth.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from collector.auth import ADMIN_TOKEN_VAR, API_KEY_VAR, READ_TOKEN_VAR, TokenSource

Access = Literal["admin", "read", "client"]


def client_headers(access: Access = "admin", environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Authorization header for `access`: the first admin token of the environment (for "read": the read
    token, else the admin token), or INFERWATCH_API_KEY for "client"; {} when none is set."""
    env = os.environ if environ is None else environ
    if access == "client":
        key = env.get(API_KEY_VAR, "").strip()
        return {"Authorization": f"Bearer {key}"} if key else {}
    for var in (ADMIN_TOKEN_VAR,) if access == "admin" else (READ_TOKEN_VAR, ADMIN_TOKEN_VAR):
        tokens = TokenSource.from_env(var, env).current() if env.get(var) or env.get(f"{var}_FILE") else ()
        if tokens:
            return {"Authorization": f"Bearer {tokens[0]}"}
    return {}
