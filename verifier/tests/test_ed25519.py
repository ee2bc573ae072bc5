"""`v1a` ed25519 signatures: whpk_ public keys verify what whsk_ signing keys sign."""

from __future__ import annotations

import base64
import sys

import pytest

from hookgate_verifier import (
    InvalidSecret,
    InvalidSignature,
    MissingExtra,
    Verifier,
    generate_ed25519_keypair,
    sign,
    signed_headers,
)

from .conftest import BODY, EVENT, NOW, SECRET, FakeClock


def test_v1a_signature_verifies(clock: FakeClock, ed25519_keypair: tuple[str, str]) -> None:
    private, public = ed25519_keypair
    headers = signed_headers(private, BODY, msg_id="msg_1", timestamp=NOW)
    assert headers["webhook-signature"].startswith("v1a,")
    assert Verifier(public, clock=clock).verify(BODY, headers) == EVENT


def test_v1a_signature_is_raw_ed25519_over_the_signed_content(
    ed25519_keypair: tuple[str, str],
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    private, public = ed25519_keypair
    value = sign(private, msg_id="msg_1", timestamp=NOW, body=BODY)
    raw_signature = base64.b64decode(value.removeprefix("v1a,"))
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public.removeprefix("whpk_")))
    key.verify(raw_signature, f"msg_1.{NOW}.".encode() + BODY)  # raises if wrong


def test_tampered_v1a_fails(clock: FakeClock, ed25519_keypair: tuple[str, str]) -> None:
    private, public = ed25519_keypair
    headers = signed_headers(private, BODY, msg_id="msg_1", timestamp=NOW)
    with pytest.raises(InvalidSignature):
        Verifier(public, clock=clock).verify(BODY + b" ", headers)


def test_other_public_key_fails(clock: FakeClock, ed25519_keypair: tuple[str, str]) -> None:
    private, _ = ed25519_keypair
    _, other_public = generate_ed25519_keypair()
    headers = signed_headers(private, BODY, msg_id="msg_1", timestamp=NOW)
    with pytest.raises(InvalidSignature):
        Verifier(other_public, clock=clock).verify(BODY, headers)


@pytest.mark.parametrize(
    "signature",
    ["v1a,", "v1a,!!!", "v1a,Zm9v", "v1a," + base64.b64encode(bytes(64)).decode(), "v1a,{sig}x"],
)
def test_malformed_v1a_is_invalid_signature(
    clock: FakeClock, ed25519_keypair: tuple[str, str], signature: str
) -> None:
    private, public = ed25519_keypair
    headers = signed_headers(private, BODY, msg_id="msg_1", timestamp=NOW)
    headers["webhook-signature"] = signature.format(sig=headers["webhook-signature"][4:])
    with pytest.raises(InvalidSignature):
        Verifier(public, clock=clock).verify(BODY, headers)


def test_mixed_keys_accept_v1_and_v1a(clock: FakeClock, ed25519_keypair: tuple[str, str]) -> None:
    private, public = ed25519_keypair
    verifier = Verifier([SECRET, public], clock=clock)
    for signer in (SECRET, private, [SECRET, private], [private, SECRET]):
        headers = signed_headers(signer, BODY, msg_id="msg_1", timestamp=NOW)
        assert verifier.verify(BODY, headers) == EVENT


def test_hmac_only_verifier_ignores_v1a(clock: FakeClock, ed25519_keypair: tuple[str, str]) -> None:
    private, _ = ed25519_keypair
    headers = signed_headers(private, BODY, msg_id="msg_1", timestamp=NOW)
    with pytest.raises(InvalidSignature):
        Verifier(SECRET, clock=clock).verify(BODY, headers)


def test_public_key_only_verifier_ignores_v1(
    clock: FakeClock, ed25519_keypair: tuple[str, str], headers: dict[str, str]
) -> None:
    _, public = ed25519_keypair
    with pytest.raises(InvalidSignature):
        Verifier(public, clock=clock).verify(BODY, headers)


@pytest.fixture
def without_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import cryptography...` fail as it does when the [ed25519] extra is missing."""
    for name in (
        "cryptography",
        "cryptography.hazmat.primitives.asymmetric.ed25519",
        "cryptography.hazmat.primitives.serialization",
    ):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("without_cryptography")
def test_generate_keypair_without_the_extra_names_it() -> None:
    with pytest.raises(MissingExtra) as caught:
        generate_ed25519_keypair()
    assert isinstance(caught.value, ImportError)
    assert caught.value.extra == "ed25519"
    assert "pip install 'hookgate-verifier[ed25519]'" in str(caught.value)


def test_signing_with_whsk_without_the_extra_names_it(
    ed25519_keypair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    private, _ = ed25519_keypair
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    with pytest.raises(MissingExtra, match=r"pip install 'hookgate-verifier\[ed25519\]'"):
        sign(private, msg_id="msg_1", timestamp=NOW, body=BODY)


def test_verifier_with_whpk_without_the_extra_names_it(
    ed25519_keypair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, public = ed25519_keypair
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric.ed25519", None)
    with pytest.raises(InvalidSecret, match=r"pip install 'hookgate-verifier\[ed25519\]'"):
        Verifier(public)
