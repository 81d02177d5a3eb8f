"""Standard Webhooks verification written from the spec (standardwebhooks.com, "Verifying webhooks"),
independently of collector/alerts/signing.py, to check what the deliverer sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping


def reference_verify(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    key = base64.b64decode(secret.split("_", 1)[1])
    content = headers["webhook-id"] + "." + headers["webhook-timestamp"] + "." + body.decode()
    expected = base64.b64encode(hmac.new(key, content.encode(), hashlib.sha256).digest()).decode()
    versioned = [s.split(",", 1) for s in headers["webhook-signature"].split(" ")]
    return any(version == "v1" and hmac.compare_digest(signature, expected) for version, signature in versioned)
