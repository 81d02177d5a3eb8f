"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec "Signature scheme").

    webhook-id:        the notification's id, the same on every retry (receivers deduplicate on it)
    webhook-timestamp: integer Unix seconds of the attempt
    webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>   (space-separated if several)

The key is the base64 part of the `whsec_...` secret (collector/alerts/rules.py signing_key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping


class SignatureError(ValueError):
    """A request whose signature does not verify; the message says why (never the key)."""


def new_secret() -> str:
    """A fresh `whsec_` secret with a 32-byte key (for a receiver you set up, e.g. the demo's)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(key: bytes | None, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: id and timestamp always, the signature when the receiver has a secret."""
    headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if key is not None:
        headers["webhook-signature"] = sign(key, msg_id, timestamp, body)
    return headers


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now_s: float, tolerance_s: float = 300.0) -> None:
    """Raise SignatureError unless one v1 signature matches and the timestamp is within the tolerance."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, stamp, signatures = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    except KeyError as exc:
        raise SignatureError(f"missing header {exc.args[0]}") from None
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"webhook-timestamp {stamp!r} is not an integer") from None
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(f"webhook-timestamp {timestamp} is more than {tolerance_s:g}s from now")
    expected = sign(key, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures.split(" ") if s.startswith("v1,")):
        raise SignatureError("no v1 signature matches")
