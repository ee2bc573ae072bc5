"""Standard Webhooks request headers for one attempt: ``v1`` signatures made with the reference
library, ``v1a`` (ed25519) signatures with ``cryptography``."""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks import Webhook

from gateway import __version__
from gateway.core.headers import reserved
from gateway.core.signing_keys import PRIVATE_KEY_PREFIX, load_private_key

USER_AGENT = f"hookgate/{__version__}"


@functools.lru_cache(maxsize=4096)
def _webhook(secret: str) -> Webhook:
    # Decoding the secret costs more than the HMAC on small bodies; keep decoded keys.
    return Webhook(secret)


@functools.lru_cache(maxsize=4096)
def _ed25519(private_key: str) -> Ed25519PrivateKey:
    # Decoding and loading the key costs about as much as signing a small body; keep loaded keys.
    return load_private_key(private_key)


def signature(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """``v1,<sig>`` for each ``whsec_`` secret, ``v1a,<sig>`` for each ``whsk_`` key, over
    ``{msg_id}.{timestamp}.{body}``, space-separated (several during a rotation)."""
    if secrets and secrets[0].startswith(PRIVATE_KEY_PREFIX):
        # An ed25519 endpoint's keys are all whsk_ (one scheme per endpoint, for good).
        signed = f"{msg_id}.{timestamp}.".encode() + body
        return " ".join(
            "v1a," + base64.b64encode(_ed25519(s).sign(signed)).decode() for s in secrets
        )
    when = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    return " ".join(_webhook(s).sign(msg_id, when, text) for s in secrets)


def ordering_key_header(key: str) -> str:
    """The ``webhook-ordering-key`` value of an ordering key: its UTF-8 bytes, each outside
    0x21-0x7E and ``%`` itself written ``%XX`` (upper-case hex), so any key of printable
    characters crosses HTTP unchanged by parsers that trim or re-encode header values
    (``hookgate_verifier.read_ordering`` reads it back)."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in key.encode())


def build_headers(
    *,
    msg_id: str,
    timestamp: int,
    body: bytes,
    secrets: Sequence[str],
    custom: Mapping[str, str],
    ordering: tuple[str, int] | None = None,
) -> dict[str, str]:
    """The endpoint's custom headers, then hookgate's own (which always win); ``ordering``,
    the delivery's ordering key and sequence number on an ordered endpoint.

    A custom header that is, or reaches receivers as, a reserved one is left out: the API
    refuses such names, but an endpoint stored before it did may still hold one (sent beside
    hookgate's own, in another letter case, it would be a second ``webhook-id``)."""
    headers = {name: value for name, value in custom.items() if not reserved(name)}
    headers.update(
        {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(msg_id, timestamp, body, secrets),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
    )
    if ordering is not None:
        headers["webhook-ordering-key"] = ordering_key_header(ordering[0])
        headers["webhook-sequence"] = str(ordering[1])
    return headers
