"""The formats of the names and ids hookgate accepts, as regular expressions: the one definition
that validation, the API's msgspec schemas and its OpenAPI document all read.

Each pattern matches a whole string and means the same to Python's ``re`` (validation and
msgspec) and to ECMA-262 (JSON Schema's dialect, read by API clients and schemathesis). Python's
``$`` also matches before a final newline, so each ends in ``$(?!\\n)``: a business id
``"bus_1\\n"`` would otherwise pass and break the space-separated arguments of the ingest script.
"""

from __future__ import annotations


def whole(body: str) -> str:
    """``body`` as a pattern that must match the whole string, in either dialect."""
    return f"^{body}$(?!\\n)"


_NAME = r"[a-zA-Z0-9_]+"
_EVENT_TYPE = rf"{_NAME}(\.{_NAME})+"
_FAMILY = rf"{_NAME}(\.{_NAME})*\.\*"

BUSINESS_ID = whole(r"[A-Za-z0-9_\-:.]{1,128}")
EVENT_TYPE = whole(_EVENT_TYPE)  # payment.succeeded
FAMILY = whole(_FAMILY)  # payment.*
SUBSCRIPTION = whole(f"({_EVENT_TYPE}|{_FAMILY})")  # what an endpoint subscribes to: either
IDEMPOTENCY_KEY = whole(r"[\x21-\x7e]{1,255}")
HEADER_NAME = whole(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")  # an RFC 9110 token
# An RFC 9110 field-value as aiohttp's client sends it unchanged: visible ASCII, with spaces and
# tabs only between visible characters. aiohttp writes a value as UTF-8 (so obs-text, 0x80-0xff,
# would reach the receiver as other bytes than were stored, and a lone surrogate not at all)
# and refuses control characters; receivers strip leading and trailing whitespace. The form
# leaves one way to match each value, so matching is linear.
HEADER_VALUE = whole(r"([\x21-\x7e]+([\t ]+[\x21-\x7e]+)*)?")
KEY_NAME = whole(r"[^\x00-\x1f\x7f]{1,100}")  # an API key's name: no control characters
# An event's ordering key (a subscription or customer id, as the sender chooses): printable
# text, so no C0 or C1 control character, no line or paragraph separator (and, being UTF-8, no
# lone surrogate: JSON decoding refuses one, ``validation.ordering_key`` one from a URL). It is
# sent to receivers percent-encoded where it is not ASCII.
ORDERING_KEY = whole(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,200}")
# A listen session's name (``hookgate listen --session``): one business's sessions are told
# apart by it, and it is a path segment and part of the session's ``listen://`` URL.
LISTEN_SESSION = whole(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
# RFC 3339's date-time (section 5.6). datetime.fromisoformat takes more (ISO 8601's week dates,
# basic format, no seconds, …) that receivers' RFC 3339 parsers would refuse.
DATE_TIME = whole(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)

# Ids as ``gateway.core.ids`` makes them; a delivery's adds its number (hex) to its event's. An
# id made in a cell other than ``default`` ends in ``.{cell}`` (``gateway.core.cells``); an API
# key's never does (keys live in the first cell, with the directory).
_CELL = r"(\.[a-z][a-z0-9-]{0,30})?"
ID_FORMS = {  # unanchored, as a route's ``{id:…}`` takes them
    "evt": r"evt_[0-9A-Z]{26}" + _CELL,
    "ep": r"ep_[0-9A-Z]{26}" + _CELL,
    "dlv": r"dlv_[0-9A-Z]{26}[0-9a-f]{1,8}" + _CELL,
    "rpl": r"rpl_[0-9A-Z]{26}" + _CELL,
    "key": r"key_[0-9A-Z]{26}",  # an API key's id (the key itself is hgk_<id>_<secret>)
}
CELL_NAME = whole(r"[a-z][a-z0-9-]{0,30}")
IDS = {kind: whole(form) for kind, form in ID_FORMS.items()}

# Each pattern in words, for error messages ("<field>: must be <words>").
WORDS = {
    BUSINESS_ID: "1-128 characters of A-Z a-z 0-9 _ - : .",
    EVENT_TYPE: "dot-delimited names of [a-zA-Z0-9_], e.g. payment.succeeded",
    FAMILY: "a family pattern like payment.*",
    SUBSCRIPTION: "an event type or a family pattern like payment.*",
    IDEMPOTENCY_KEY: "1-255 visible ASCII characters",
    HEADER_NAME: "a header name: 1-128 of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~",
    HEADER_VALUE: "printable ASCII; spaces and tabs only between visible characters",
    KEY_NAME: "1-100 characters, no control characters",
    ORDERING_KEY: "a string of 1-200 printable characters (no control characters)",
    CELL_NAME: "a cell name: 1-31 of a-z 0-9 -, starting with a letter",
    LISTEN_SESSION: "1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit",
    **{pattern: f"an id like {kind}_01JD…" for kind, pattern in IDS.items()},
}
