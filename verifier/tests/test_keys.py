"""Decoding configured secrets and keys, and what a bad one raises."""

from __future__ import annotations

import base64

import pytest

from hookgate_verifier import (
    InvalidSecret,
    Verifier,
    generate_ed25519_keypair,
    generate_secret,
    sign,
    signed_headers,
)
from hookgate_verifier.keys import load_ed25519_private_key, load_keyring

from .conftest import BODY, EVENT, NOW, SECRET, FakeClock


def test_unpadded_secret_is_the_same_key() -> None:
    padded = load_keyring(SECRET)
    assert SECRET.endswith("==")
    assert load_keyring(SECRET.rstrip("=")).hmac_keys == padded.hmac_keys
    assert load_keyring("  " + SECRET + "\n").hmac_keys == padded.hmac_keys


def test_unpadded_secret_verifies(clock: FakeClock, headers: dict[str, str]) -> None:
    assert Verifier(SECRET.rstrip("="), clock=clock).verify(BODY, headers) == EVENT


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        "whsec_====",
        "whsec_not base64",
        "whsec_!!!!",
        "whsec_Zm9v*",
        "whsec_é",
        "whsec_a",  # one base64 digit cannot encode a byte
        "c2VjcmV0LWZvci1ob29rZ2F0ZQ==",  # no prefix
        "WHSEC_c2VjcmV0",
        "whpk_c2VjcmV0",  # not 32 bytes
        "whpk_" + base64.b64encode(b"x" * 33).decode(),
    ],
)
def test_bad_secret_raises_invalid_secret(secret: str) -> None:
    with pytest.raises(InvalidSecret):
        Verifier(secret)


def test_invalid_secret_message_never_contains_the_secret() -> None:
    secret = "whsec_c2VjcmV0!!!"
    with pytest.raises(InvalidSecret) as caught:
        Verifier(["whsec_c2VjcmV0LWZvci1ob29rZ2F0ZQ==", secret])
    assert "c2VjcmV0" not in str(caught.value)
    assert "secret #2" in str(caught.value)


def test_signing_key_is_refused_for_verification(ed25519_keypair: tuple[str, str]) -> None:
    private, _ = ed25519_keypair
    with pytest.raises(InvalidSecret, match="whpk_"):
        Verifier(private)


@pytest.mark.parametrize("secrets", [[], (), iter([])])
def test_no_secret_is_refused(secrets: object) -> None:
    with pytest.raises(InvalidSecret, match="no secret"):
        Verifier(secrets)  # type: ignore[arg-type]


def test_non_string_secret_is_refused() -> None:
    with pytest.raises(InvalidSecret, match="not a string"):
        Verifier([b"whsec_c2VjcmV0"])  # type: ignore[list-item]


def test_repr_hides_keys() -> None:
    verifier = Verifier(SECRET)
    assert "c2Vj" not in repr(verifier)
    assert "c2Vj" not in repr(load_keyring(SECRET))
    assert "1 hmac" in repr(verifier)


def test_generated_secret_round_trips(clock: FakeClock) -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    headers = signed_headers(secret, BODY, msg_id="m", timestamp=NOW)
    assert Verifier(secret, clock=clock).verify(BODY, headers) == EVENT


def test_sign_refuses_unknown_keys() -> None:
    with pytest.raises(InvalidSecret):
        sign("whpk_" + base64.b64encode(b"k" * 32).decode(), msg_id="m", timestamp=1, body=b"")
    with pytest.raises(InvalidSecret, match="no secret"):
        sign([], msg_id="m", timestamp=1, body=b"")


def test_signing_key_accepts_seed_or_seed_plus_public() -> None:
    private, public = generate_ed25519_keypair()
    seed = base64.b64decode(private[5:])
    public_raw = base64.b64decode(public[5:])
    long_form = "whsk_" + base64.b64encode(seed + public_raw).decode()
    assert sign(long_form, msg_id="m", timestamp=1, body=b"{}") == sign(
        private, msg_id="m", timestamp=1, body=b"{}"
    )
    mismatched = "whsk_" + base64.b64encode(seed + bytes(32)).decode()
    with pytest.raises(InvalidSecret, match="does not match"):
        load_ed25519_private_key(mismatched)
    with pytest.raises(InvalidSecret, match="32 or 64"):
        load_ed25519_private_key("whsk_" + base64.b64encode(b"short").decode())
    with pytest.raises(InvalidSecret, match="whsk_"):
        load_ed25519_private_key(SECRET)
