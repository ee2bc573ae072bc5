"""Endpoint secrets encrypted at rest: AES-256-GCM under ``HOOKGATE_SECRET_KEY``.

A token is ``v1.`` + unpadded base64url of ``key_id(4) | nonce(12) | ciphertext | tag(16)``.
The nonce is random per seal; the caller's ``context`` (the endpoint id) is the associated
data, so a token copied to another endpoint does not open. ``key_id`` names the key that
sealed it, so old keys can stay listed for opening while new seals use the primary key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.core.errors import HookgateError

__all__ = ["KEY_BYTES", "SecretBox", "SecretBoxError"]

KEY_BYTES: Final = 32
_VERSION: Final = "v1."
_KEY_ID_BYTES: Final = 4
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_MIN_RAW: Final = _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_KEY_TEXT: Final = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_KEY_HELP: Final = (
    f"a secret key must be {KEY_BYTES} random bytes in base64 "
    "(standard or URL-safe alphabet, padding optional; 43 or 44 characters); "
    "several keys may be given comma-separated, newest first"
)


class SecretBoxError(HookgateError):
    """A token that does not open: tampered, truncated, wrong key, wrong context or garbage.

    The message never contains the token or any key material.
    """


def key_id(key: bytes) -> bytes:
    """The short public id a token carries to name its key (not secret, not a MAC)."""
    return hashlib.sha256(b"hookgate.secretbox.key-id\x00" + key).digest()[:_KEY_ID_BYTES]


def _decode_key(text: str) -> bytes:
    compact = text.strip()
    if not _KEY_TEXT.fullmatch(compact):
        raise ValueError(f"{_KEY_HELP}: found characters outside base64")
    unpadded = compact.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"{_KEY_HELP}: not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{_KEY_HELP}: it decodes to {len(key)} bytes")
    return key


class SecretBox:
    """Seal with ``primary``; open tokens sealed with ``primary`` or any of ``older``."""

    def __init__(self, primary: bytes, *older: bytes) -> None:
        keys = (primary, *older)
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"a secret key must be {KEY_BYTES} bytes, got {len(key)}")
        self._primary_id = key_id(primary)
        self._primary = AESGCM(primary)
        self._by_id: dict[bytes, list[AESGCM]] = {}
        for key in keys:
            self._by_id.setdefault(key_id(key), []).append(AESGCM(key))

    @classmethod
    def from_text(cls, text: str) -> SecretBox:
        """Build from ``HOOKGATE_SECRET_KEY``: one base64 key, or several comma-separated.

        The first key seals; every key opens (list the old key after the new one while
        re-sealing). Raises ValueError saying what is accepted, never echoing the text.
        """
        parts = [part for part in text.split(",") if part.strip()]
        if not parts:
            raise ValueError(f"{_KEY_HELP}: the value is empty")
        keys = [_decode_key(part) for part in parts]
        return cls(*keys)

    @staticmethod
    def generate_key() -> str:
        """A fresh random key as URL-safe base64 text, ready for ``HOOKGATE_SECRET_KEY``."""
        return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Hex ids of the keys, primary first: safe to log."""
        return (
            self._primary_id.hex(),
            *(kid.hex() for kid in self._by_id if kid != self._primary_id),
        )

    def __repr__(self) -> str:
        return f"SecretBox(key_ids={self.key_ids!r})"

    def seal(self, plaintext: str, *, context: bytes) -> str:
        """Encrypt ``plaintext`` bound to ``context``; every call gives a different token."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._primary.encrypt(nonce, plaintext.encode("utf-8"), context)
        raw = self._primary_id + nonce + sealed
        return _VERSION + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def open(self, token: str, *, context: bytes) -> str:
        """Decrypt a token from ``seal`` under the same ``context``; else SecretBoxError."""
        if not isinstance(token, str) or not token.startswith(_VERSION):
            raise SecretBoxError("not a sealed secret (expected a 'v1.' token)")
        body = token[len(_VERSION) :]
        if not _BASE64URL.fullmatch(body):
            raise SecretBoxError("sealed secret is not base64url")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SecretBoxError("sealed secret is not base64url") from None
        # Canonical encoding only, so that every change to the token text is detected.
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != body:
            raise SecretBoxError("sealed secret is not canonical base64url")
        if len(raw) < _MIN_RAW:
            raise SecretBoxError("sealed secret is truncated")
        kid = raw[:_KEY_ID_BYTES]
        nonce = raw[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
        sealed = raw[_KEY_ID_BYTES + _NONCE_BYTES :]
        candidates = self._by_id.get(kid)
        if not candidates:
            raise SecretBoxError(f"sealed with an unknown key (id {kid.hex()})")
        for aead in candidates:
            try:
                plaintext = aead.decrypt(nonce, sealed, context)
            except InvalidTag:
                continue
            try:
                return plaintext.decode("utf-8")
            except UnicodeDecodeError:  # authentic bytes that seal() never made
                break
        raise SecretBoxError("sealed secret does not open: tampered, or wrong key or context")
