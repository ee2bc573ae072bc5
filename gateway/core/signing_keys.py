"""Endpoint signing schemes and the ed25519 keys of Standard Webhooks' asymmetric one.

Keys are encoded as hookgate-verifier reads them (``verifier/hookgate_verifier/keys.py``): a
``whsk_`` signing key is standard base64 of the 32-byte ed25519 seed, a ``whpk_`` public key
standard base64 of the 32-byte raw public key. Pure functions, no I/O; error messages never
hold key material.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final, Literal, get_args

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

__all__ = [
    "ED25519",
    "HMAC",
    "PRIVATE_KEY_PREFIX",
    "PUBLIC_KEY_PREFIX",
    "SCHEMES",
    "Scheme",
    "load_private_key",
    "load_public_key",
    "new_private_key",
    "public_key_of",
]

Scheme = Literal["hmac", "ed25519"]
SCHEMES: Final[tuple[Scheme, ...]] = get_args(Scheme)
HMAC: Final = "hmac"  # v1: HMAC-SHA256 under a ``whsec_`` secret (the default)
ED25519: Final = "ed25519"  # v1a: ed25519 under a ``whsk_`` key, verified with its ``whpk_``
PRIVATE_KEY_PREFIX: Final = "whsk_"
PUBLIC_KEY_PREFIX: Final = "whpk_"
_KEY_BYTES: Final = 32


def new_private_key() -> str:
    """A fresh ``whsk_`` signing key."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode()


def _raw(text: str, prefix: str, what: str) -> bytes:
    if not text.startswith(prefix):
        raise ValueError(f"{what} starts with {prefix}")
    try:
        raw = base64.b64decode(text[len(prefix) :], validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is base64 after its prefix") from None
    if len(raw) != _KEY_BYTES:
        raise ValueError(f"{what} holds {_KEY_BYTES} bytes")
    return raw


def load_private_key(private_key: str) -> Ed25519PrivateKey:
    """The key a ``whsk_`` text encodes; ``ValueError`` for anything else."""
    return Ed25519PrivateKey.from_private_bytes(
        _raw(private_key, PRIVATE_KEY_PREFIX, "an ed25519 signing key")
    )


def load_public_key(public_key: str) -> Ed25519PublicKey:
    """The key a ``whpk_`` text encodes; ``ValueError`` for anything else."""
    return Ed25519PublicKey.from_public_bytes(
        _raw(public_key, PUBLIC_KEY_PREFIX, "an ed25519 public key")
    )


def public_key_of(private_key: str) -> str:
    """The ``whpk_`` public key that verifies what the ``whsk_`` key signs."""
    public = load_private_key(private_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base64.b64encode(public).decode()
