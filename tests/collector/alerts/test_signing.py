"""Standard Webhooks signatures: the spec's published example, and verification both ways."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from collector.alerts.rules import signing_key
from collector.alerts.signing import SignatureError, new_secret, sign, verify, webhook_headers
from tests.collector.alerts.reference import reference_verify

# the example of the Standard Webhooks spec and of its reference libraries (Svix's)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
MSG_ID, TIMESTAMP, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_published_example_signs_to_the_published_signature() -> None:
    assert sign(KEY, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_headers_verify_with_the_reference_algorithm() -> None:
    headers = webhook_headers(KEY, "msg_1", 1_800_000_000, b'{"alerts":[]}')
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1800000000"
    assert reference_verify(SECRET, headers, b'{"alerts":[]}')
    assert not reference_verify(SECRET, headers, b'{"alerts":[1]}')
    assert "webhook-signature" not in webhook_headers(None, "msg_1", 1_800_000_000, b"{}")


def test_new_secrets_are_fresh_32_byte_keys() -> None:
    first, second = new_secret(), new_secret()
    assert first != second and len(signing_key(SecretStr(first))) == 32
    headers = webhook_headers(signing_key(SecretStr(first)), "msg_2", 1_800_000_000, b"{}")
    assert reference_verify(first, headers, b"{}") and not reference_verify(second, headers, b"{}")


def test_verify_accepts_a_good_signature_among_several() -> None:
    headers = {
        "Webhook-Id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": f"v1,bm9wZQ== {SIGNATURE}",
    }
    verify(KEY, headers, BODY, now_s=TIMESTAMP + 10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": b'{"test": 2432232315}'}, "no v1 signature matches"),
        ({"key": b"another key, 16+ bytes"}, "no v1 signature matches"),
        ({"now": TIMESTAMP + 301}, "is more than 300s from now"),
        ({"drop": "webhook-id"}, "missing header webhook-id"),
        ({"signature": SIGNATURE.replace("v1,", "v2,")}, "no v1 signature matches"),
    ],
)
def test_verify_refuses(change: dict[str, object], message: str) -> None:
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": SIGNATURE}
    if "signature" in change:
        headers["webhook-signature"] = str(change["signature"])
    if "drop" in change:
        del headers[str(change["drop"])]
    body = change.get("body", BODY)
    key = change.get("key", KEY)
    now = change.get("now", TIMESTAMP)
    assert isinstance(body, bytes) and isinstance(key, bytes) and isinstance(now, int)
    with pytest.raises(SignatureError, match=message):
        verify(key, headers, body, now_s=now)
