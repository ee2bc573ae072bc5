"""Producing Standard Webhooks signatures, for tests and tools on the receiving side.

`sign` makes the `webhook-signature` value; `signed_headers` makes all three headers.
A `whsec_` secret signs `v1` (HMAC-SHA256); a `whsk_` key signs `v1a` (ed25519, needs the
`[ed25519]` extra). Several keys give several space-separated signatures, as during a
rotation.
"""

from __future__ import annotations

import secrets as _random
import time
from binascii import b2a_base64
from collections.abc import Iterable
from hmac import digest as hmac_digest

from .errors import InvalidSecret
from .keys import SECRET_KEY_PREFIX, SECRET_PREFIX, decode_key_material, load_ed25519_private_key

__all__ = ["new_webhook_id", "sign", "signed_headers"]


def new_webhook_id() -> str:
    """A fresh random id in the `msg_…` style."""
    return "msg_" + _random.token_urlsafe(18)


def sign(secrets: str | Iterable[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the `webhook-signature` header value for `body` under each key in `secrets`.

    Raises InvalidSecret for a key that is not `whsec_…` or `whsk_…`.
    """
    items = [secrets] if isinstance(secrets, str) else list(secrets)
    if not items:
        raise InvalidSecret("no secret given")
    content = f"{msg_id}.{int(timestamp)}.".encode() + bytes(body)
    signatures = []
    for index, item in enumerate(items):
        what = f"secret #{index + 1}"
        if item.startswith(SECRET_PREFIX):
            key = decode_key_material(item[len(SECRET_PREFIX) :], what)
            raw = hmac_digest(key, content, "sha256")
            signatures.append("v1," + b2a_base64(raw, newline=False).decode())
        elif item.startswith(SECRET_KEY_PREFIX):
            private_key = load_ed25519_private_key(item)
            raw = private_key.sign(content)
            signatures.append("v1a," + b2a_base64(raw, newline=False).decode())
        else:
            raise InvalidSecret(f"{what} must start with {SECRET_PREFIX} or {SECRET_KEY_PREFIX}")
    return " ".join(signatures)


def signed_headers(
    secrets: str | Iterable[str],
    body: bytes,
    *,
    msg_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Return webhook-id, webhook-timestamp and webhook-signature headers for `body`.

    `msg_id` defaults to a fresh random id, `timestamp` to now.
    """
    msg_id = new_webhook_id() if msg_id is None else msg_id
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id=msg_id, timestamp=timestamp, body=body),
    }
