"""Interoperability: the published vector, and round trips with standardwebhooks and svix."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import standardwebhooks
import svix

from hookgate_verifier import InvalidSignature, Verifier, sign, signed_headers

from .conftest import (
    NOW,
    VECTOR_BODY,
    VECTOR_ID,
    VECTOR_SECRET,
    VECTOR_SIGNATURE,
    VECTOR_TIMESTAMP,
    FakeClock,
)

VECTOR_HEADERS = {
    "webhook-id": VECTOR_ID,
    "webhook-timestamp": str(VECTOR_TIMESTAMP),
    "webhook-signature": VECTOR_SIGNATURE,
}


def test_published_vector_signs_identically() -> None:
    assert (
        sign(VECTOR_SECRET, msg_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY)
        == VECTOR_SIGNATURE
    )


def test_published_vector_verifies() -> None:
    verifier = Verifier(VECTOR_SECRET, clock=lambda: VECTOR_TIMESTAMP)
    assert verifier.verify(VECTOR_BODY, VECTOR_HEADERS) == {"test": 2432232314}


def test_published_vector_with_one_flipped_bit_fails() -> None:
    verifier = Verifier(VECTOR_SECRET, clock=lambda: VECTOR_TIMESTAMP)
    with pytest.raises(InvalidSignature):
        verifier.verify(b'{"test": 2432232315}', VECTOR_HEADERS)


BODIES = [
    b'{"test": 2432232314}',
    b'{"type": "credit.added", "data": {"note": "caf\xc3\xa9 \xe2\x9c\x93"}}',
    b'{\n  "spaced" :  [1, 2, 3]\n}',
]


def _at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


@pytest.mark.parametrize("body", BODIES)
def test_what_standardwebhooks_signs_we_verify(clock: FakeClock, body: bytes) -> None:
    reference = standardwebhooks.Webhook(VECTOR_SECRET)
    signature = reference.sign("msg_ref", _at(NOW), body.decode())
    headers = {
        "webhook-id": "msg_ref",
        "webhook-timestamp": str(NOW),
        "webhook-signature": signature,
    }
    import json

    assert Verifier(VECTOR_SECRET, clock=clock).verify(body, headers) == json.loads(body)


@pytest.mark.parametrize("body", BODIES)
def test_what_we_sign_standardwebhooks_verifies(body: bytes) -> None:
    import json
    import time

    headers = signed_headers(VECTOR_SECRET, body, msg_id="msg_ours", timestamp=int(time.time()))
    assert standardwebhooks.Webhook(VECTOR_SECRET).verify(body, headers) == json.loads(body)


@pytest.mark.parametrize("body", BODIES)
def test_what_svix_signs_we_verify(clock: FakeClock, body: bytes) -> None:
    import json

    signature = svix.Webhook(VECTOR_SECRET).sign("msg_svix", _at(NOW), body.decode())
    headers = {
        "webhook-id": "msg_svix",
        "webhook-timestamp": str(NOW),
        "webhook-signature": signature,
    }
    assert Verifier(VECTOR_SECRET, clock=clock).verify(body, headers) == json.loads(body)


@pytest.mark.parametrize("body", BODIES)
def test_what_we_sign_svix_verifies(body: bytes) -> None:
    import time

    headers = signed_headers(VECTOR_SECRET, body, msg_id="msg_ours", timestamp=int(time.time()))
    svix_headers = {
        "svix-id": headers["webhook-id"],
        "svix-timestamp": headers["webhook-timestamp"],
        "svix-signature": headers["webhook-signature"],
    }
    # svix.Webhook.verify returns nothing: success is not raising.
    svix.Webhook(VECTOR_SECRET).verify(body, svix_headers)
    svix.Webhook(VECTOR_SECRET).verify(body, headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.Webhook(VECTOR_SECRET).verify(body + b" ", headers)


def test_reference_libraries_accept_our_rotation_header() -> None:
    import time

    other = "whsec_b3RoZXItc2VjcmV0LWZvci1ob29rZ2F0ZS10ZXN0cw=="
    headers = signed_headers([other, VECTOR_SECRET], VECTOR_BODY, timestamp=int(time.time()))
    assert standardwebhooks.Webhook(VECTOR_SECRET).verify(VECTOR_BODY, headers) == {
        "test": 2432232314
    }
