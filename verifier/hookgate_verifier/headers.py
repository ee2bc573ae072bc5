"""Finding the three webhook headers in whatever container a framework hands over.

Supported shapes, all looked up case-insensitively:

* mappings with string keys: `dict`, aiohttp/multidict `CIMultiDict`, Starlette `Headers`,
  Werkzeug `Headers` (their own `.get` is already case-insensitive);
* WSGI `environ`-style mappings: `HTTP_WEBHOOK_ID`, ...;
* ASGI header lists: `scope["headers"]`, an iterable of `(bytes, bytes)` (or `(str, str)`).

Values may be `str` or `bytes` (bytes are decoded as UTF-8). Where a name appears twice, the
first occurrence wins, as `.get` does on a multidict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeAlias

from .errors import MalformedHeaders, MissingHeaders

__all__ = ["ID", "SIGNATURE", "TIMESTAMP", "HeadersLike", "read_webhook_headers"]

ID = "webhook-id"
TIMESTAMP = "webhook-timestamp"
SIGNATURE = "webhook-signature"
_WANTED = (ID, TIMESTAMP, SIGNATURE)

HeadersLike: TypeAlias = (
    Mapping[str, str]
    | Mapping[str, bytes]
    | Mapping[str, Any]
    | Iterable[tuple[bytes, bytes]]
    | Iterable[tuple[str, str]]
)
"""Anything `read_webhook_headers` accepts; see the module docstring."""


def read_webhook_headers(headers: object) -> tuple[str, str, str]:
    """Return (webhook-id, webhook-timestamp, webhook-signature) as non-empty strings.

    Raises MissingHeaders or MalformedHeaders, and nothing else, whatever `headers` is.
    """
    # Fast path: a mapping that answers for the lowercase names (dict from most clients,
    # and every case-insensitive mapping). Three C-level lookups, no copies.
    get = getattr(headers, "get", None)
    if get is not None:
        try:
            msg_id = get(ID)
            timestamp = get(TIMESTAMP)
            signature = get(SIGNATURE)
        except Exception:  # noqa: BLE001 - a foreign .get must not leak its own errors
            msg_id = timestamp = signature = None
        if (
            type(msg_id) is str
            and type(timestamp) is str
            and type(signature) is str
            and msg_id
            and timestamp
            and signature
        ):
            return msg_id, timestamp, signature
    return _read_slow(headers)


def _read_slow(headers: object) -> tuple[str, str, str]:
    try:
        found = collect(headers, _WANTED)
    except (MissingHeaders, MalformedHeaders):
        raise
    except Exception as exc:  # a foreign container's own errors become ours
        raise MissingHeaders(f"cannot read headers from {type(headers).__name__}") from exc
    missing = [name for name in _WANTED if not found.get(name)]
    if missing:
        raise MissingHeaders("missing header: " + ", ".join(missing))
    return found[ID], found[TIMESTAMP], found[SIGNATURE]


def collect(headers: object, wanted: tuple[str, ...]) -> dict[str, str]:
    """The headers named in ``wanted`` (lower-case) that ``headers`` holds, as text: from a
    mapping, anything with ``items()`` or a list of pairs, names in any case or in their
    WSGI spelling (``HTTP_WEBHOOK_ID``); the first occurrence of a name wins."""
    if isinstance(headers, (str, bytes, bytearray, memoryview)):
        raise MissingHeaders("headers must be a mapping or a list of pairs, not a string")
    if isinstance(headers, Mapping) or hasattr(headers, "items"):
        pairs: Iterable[Any] = headers.items()
    elif isinstance(headers, Iterable):
        pairs = headers
    else:
        raise MissingHeaders(f"cannot read headers from {type(headers).__name__}")
    found: dict[str, str] = {}
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise MissingHeaders("header list entries must be (name, value) pairs")
        name = _canonical_name(pair[0], wanted)
        if name is None or name in found:
            continue
        found[name] = _text(pair[1], name)
    return found


def _canonical_name(raw: object, wanted: tuple[str, ...]) -> str | None:
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).decode("latin-1")
    if not isinstance(raw, str):
        return None
    name = raw.lower()
    if name.startswith("http_"):
        # WSGI/CGI spelling: HTTP_WEBHOOK_ID carries the header webhook-id.
        name = name[5:].replace("_", "-")
    return name if name in wanted else None


def _text(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedHeaders(f"header {name} is not valid UTF-8") from None
    raise MalformedHeaders(f"header {name} is not text")
