"""Decoding of `whsec_` (HMAC), `whpk_` (ed25519 public) and `whsk_` (ed25519 secret) keys.

Pure functions, no I/O. Keys are decoded once, when a Verifier or signer is built, so the hot
path never touches base64 for its own keys. Error messages name the key's position, never its
value: a secret must not end up in a log line.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import InvalidSecret
from .extras import MissingExtra

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "PUBLIC_KEY_PREFIX",
    "SECRET_KEY_PREFIX",
    "SECRET_PREFIX",
    "Keyring",
    "decode_key_material",
    "generate_ed25519_keypair",
    "generate_secret",
    "load_ed25519_private_key",
    "load_keyring",
]

SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
SECRET_KEY_PREFIX = "whsk_"

_ED25519_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Keyring:
    """Everything a Verifier checks signatures against, decoded."""

    hmac_keys: tuple[bytes, ...]
    ed25519_keys: tuple[Ed25519PublicKey, ...]

    def __repr__(self) -> str:
        # Keep the raw HMAC keys out of reprs, tracebacks and debuggers' summaries.
        return (
            f"Keyring(hmac_keys=<{len(self.hmac_keys)}>, ed25519_keys=<{len(self.ed25519_keys)}>)"
        )


def decode_key_material(encoded: str, what: str) -> bytes:
    """Decode standard base64, padded or not; raise InvalidSecret naming `what` on failure."""
    text = encoded.strip()
    if not text or not text.isascii():
        raise InvalidSecret(f"{what} is empty or not base64")
    # Secrets are often copied without their '=' padding; restore it before a strict decode.
    text += "=" * (-len(text) % 4)
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        raise InvalidSecret(f"{what} is not valid base64") from None
    if not raw:
        raise InvalidSecret(f"{what} is empty")
    return raw


def _load_public_key(raw: bytes, what: str) -> Ed25519PublicKey:
    if len(raw) != _ED25519_KEY_BYTES:
        raise InvalidSecret(f"{what} must decode to {_ED25519_KEY_BYTES} bytes")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        # Still InvalidSecret, which Verifier(...) documents, but naming the install command.
        raise InvalidSecret(
            f"{what} is an ed25519 key, which needs the [ed25519] extra: "
            "pip install 'hookgate-verifier[ed25519]'"
        ) from None
    return Ed25519PublicKey.from_public_bytes(raw)


def load_keyring(secrets: str | Iterable[str]) -> Keyring:
    """Decode one key or several (rotation) into a Keyring; any bad key raises InvalidSecret."""
    items = [secrets] if isinstance(secrets, str) else list(secrets)
    if not items:
        raise InvalidSecret("no secret given")
    hmac_keys: list[bytes] = []
    ed25519_keys: list[Ed25519PublicKey] = []
    for index, item in enumerate(items):
        what = f"secret #{index + 1}"
        if not isinstance(item, str):
            raise InvalidSecret(f"{what} is not a string")
        item = item.strip()
        if item.startswith(SECRET_PREFIX):
            hmac_keys.append(decode_key_material(item[len(SECRET_PREFIX) :], what))
        elif item.startswith(PUBLIC_KEY_PREFIX):
            raw = decode_key_material(item[len(PUBLIC_KEY_PREFIX) :], what)
            ed25519_keys.append(_load_public_key(raw, what))
        elif item.startswith(SECRET_KEY_PREFIX):
            # Receivers verify with the public half; accepting the private key here would
            # invite merchants to keep the signing key on the receiving side.
            raise InvalidSecret(f"{what} is a whsk_ signing key: verify with its whpk_ public key")
        else:
            raise InvalidSecret(f"{what} must start with {SECRET_PREFIX} or {PUBLIC_KEY_PREFIX}")
    return Keyring(tuple(hmac_keys), tuple(ed25519_keys))


def load_ed25519_private_key(secret_key: str) -> Ed25519PrivateKey:
    """Decode a `whsk_` key: base64 of the 32-byte seed, or of seed + public key (64 bytes)."""
    if not secret_key.startswith(SECRET_KEY_PREFIX):
        raise InvalidSecret(f"an ed25519 signing key must start with {SECRET_KEY_PREFIX}")
    raw = decode_key_material(secret_key[len(SECRET_KEY_PREFIX) :], "signing key")
    if len(raw) not in (_ED25519_KEY_BYTES, 2 * _ED25519_KEY_BYTES):
        raise InvalidSecret("signing key must decode to 32 or 64 bytes")
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    except ImportError as exc:
        raise MissingExtra("ed25519 signing", "ed25519") from exc
    key = Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_KEY_BYTES])
    if len(raw) == 2 * _ED25519_KEY_BYTES:
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if public != raw[_ED25519_KEY_BYTES:]:
            raise InvalidSecret("signing key's public half does not match its seed")
    return key


def generate_secret(num_bytes: int = 32) -> str:
    """A new random `whsec_` secret (for tests and local tooling)."""
    import secrets

    return (
        SECRET_PREFIX + binascii.b2a_base64(secrets.token_bytes(num_bytes), newline=False).decode()
    )


def generate_ed25519_keypair() -> tuple[str, str]:
    """A new `(whsk_ signing key, whpk_ public key)` pair.

    Raises MissingExtra (an ImportError) without the `[ed25519]` extra.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
            PublicFormat,
        )
    except ImportError as exc:
        raise MissingExtra("generate_ed25519_keypair()", "ed25519") from exc

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return (
        SECRET_KEY_PREFIX + binascii.b2a_base64(seed, newline=False).decode(),
        PUBLIC_KEY_PREFIX + binascii.b2a_base64(public, newline=False).decode(),
    )
