"""An endpoint's custom headers as Redis holds them: names in clear, each value sealed.

Values are often the receiver's credentials (``Authorization``), so they are sealed like the
signing secrets, with the same ``SecretBox`` (and so the same key rotation). The endpoint hash
field ``headers`` holds a JSON array ``[[name, token], …]``, in the order given. Each token's
context is the endpoint id and the header name under a prefix of its own: a sealed signing
secret does not open as a header value nor the other way round, and a value moved to another
header or endpoint does not open.

Endpoints written before values were sealed hold a JSON object ``{name: value}`` in clear;
both forms are read (a JSON object starts with ``{``, the array with ``[``), and the clear one
is sealed on the endpoint's next write (``resealed``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from gateway.core.secretbox import SecretBox, SecretBoxError

__all__ = ["EMPTY", "names", "open_values", "resealed", "seal"]

EMPTY = "[]"
_CONTEXT = b"hookgate.header\x00"


def _context(endpoint_id: str, name: str) -> bytes:
    # A secret's context is the bare endpoint id ("ep_…"), which never starts with the prefix.
    return _CONTEXT + endpoint_id.encode() + b"\x00" + name.encode()


def _text(raw: str | bytes | None) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def seal(box: SecretBox, endpoint_id: str, headers: Mapping[str, str]) -> str:
    """``headers`` as the ``headers`` field holds them."""
    return json.dumps(
        [
            [name, box.seal(value, context=_context(endpoint_id, name))]
            for name, value in headers.items()
        ]
    )


def names(raw: str | bytes | None) -> list[str]:
    """The header names, in order, of either layout; no key needed."""
    parsed = json.loads(_text(raw) or EMPTY)
    if isinstance(parsed, dict):
        return list(parsed)
    return [name for name, _ in parsed]


def open_values(box: SecretBox, endpoint_id: str, raw: str | bytes | None) -> dict[str, str]:
    """The headers in clear, of either layout; raises ``SecretBoxError`` when a value does not
    open (a wrong ``HOOKGATE_SECRET_KEY``, or a token moved or altered)."""
    parsed = json.loads(_text(raw) or EMPTY)
    if isinstance(parsed, dict):
        return {str(k): str(v) for k, v in parsed.items()}
    return {name: box.open(token, context=_context(endpoint_id, name)) for name, token in parsed}


def resealed(box: SecretBox, endpoint_id: str, raw: str | bytes | None) -> str | None:
    """The field sealed afresh under the primary key, for the endpoint's next write: values
    in clear get sealed, and values sealed under an older key move onto the newest (so a
    retired key can be dropped once every endpoint was written). None when there is nothing
    to seal, or when a value does not open (left as it is, for the right key to open)."""
    try:
        if not names(raw):
            return None
        return seal(box, endpoint_id, open_values(box, endpoint_id, raw))
    except (SecretBoxError, ValueError, TypeError):
        return None
