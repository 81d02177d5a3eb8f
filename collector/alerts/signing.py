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
import math
import re
import secrets
from collections.abc import Iterable, Mapping


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


MAX_SIGNATURES = 32  # candidates looked at in one webhook-signature header
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")  # ASCII Unix seconds (12 digits: until the year 33658)
_SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _signed_headers(headers: object) -> dict[str, str]:
    """webhook-id, -timestamp and -signature from a mapping or (name, value) pairs; several signature headers
    are joined, a repeated id or timestamp is refused."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    if isinstance(pairs, str | bytes) or not isinstance(pairs, Iterable):
        raise SignatureError(f"headers must be a mapping or (name, value) pairs, not {type(headers).__name__}")
    found: dict[str, list[str]] = {}
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise SignatureError("headers must be (name, value) pairs")
        name, value = pair
        name = name.decode("latin-1") if isinstance(name, bytes) else name
        value = value.decode("latin-1") if isinstance(value, bytes) else value
        if not isinstance(name, str) or not isinstance(value, str):
            raise SignatureError("header names and values must be strings")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise SignatureError(f"header {name[:40]!r}: its value is not text") from None
        if name.lower() in _SIGNED:
            found.setdefault(name.lower(), []).append(value)
    for name in _SIGNED:
        if name not in found:
            raise SignatureError(f"missing header {name}")
        if name != "webhook-signature" and len(found[name]) > 1:
            raise SignatureError(f"header {name} is given {len(found[name])} times; send it once")
    return {name: " ".join(values) for name, values in found.items()}


def _seconds(value: object) -> float | None:
    """A finite float from an int or float (not a bool); None otherwise."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now_s: float, tolerance_s: float = 300.0) -> None:
    """Raise SignatureError unless one v1 signature matches and the timestamp is within the tolerance. Any input
    (missing, repeated or garbled headers, a key or body that is not bytes, a timestamp of any size) gives a
    SignatureError, never another exception: `headers` may also be (name, value) pairs, as an ASGI scope has."""
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) == 0:
        raise SignatureError("the key must be non-empty bytes (the base64-decoded part after whsec_)")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise SignatureError(f"the body must be the raw bytes received, not {type(body).__name__}")
    now, tolerance = _seconds(now_s), _seconds(tolerance_s)
    if now is None or tolerance is None or tolerance < 0:
        raise SignatureError("now_s must be a finite number of Unix seconds and tolerance_s a number >= 0")
    signed = _signed_headers(headers)
    msg_id, stamp, signatures = signed["webhook-id"], signed["webhook-timestamp"].strip(), signed["webhook-signature"]
    if not _TIMESTAMP.match(stamp):
        raise SignatureError(f"webhook-timestamp {stamp[:40]!r} is not integer Unix seconds")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"webhook-timestamp {timestamp} is more than {tolerance:g}s from now")
    expected = sign(bytes(key), msg_id, timestamp, bytes(body))
    candidates = [s for s in signatures.split(" ") if s.startswith("v1,")][:MAX_SIGNATURES]
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in candidates):
        raise SignatureError("no v1 signature matches")
