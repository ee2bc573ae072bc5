"""Ordered delivery: read a delivery's ordering headers and place its number in the stream.

An endpoint that opts in to ordered delivery gets the events that share an ordering key one
at a time, in ingest order, each with two more headers:

* `webhook-ordering-key`: the key, percent-encoded. Every byte of its UTF-8 form outside
  0x21-0x7E, and `%` itself, is sent as `%XX` (uppercase hex); every other byte as is;
* `webhook-sequence`: 1, 2, 3 ... per endpoint and key, fixed at ingest, the same on every
  retry and replay of the event.

Neither header is covered by the signature: read them from a request `verify` accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import MalformedHeaders, MissingHeaders
from .headers import HeadersLike, collect

__all__ = [
    "KEY",
    "MAX_KEY_LENGTH",
    "SEQUENCE",
    "Ordering",
    "SequenceCheck",
    "check_sequence",
    "read_ordering",
]

KEY = "webhook-ordering-key"
SEQUENCE = "webhook-sequence"
_WANTED = (KEY, SEQUENCE)

MAX_KEY_LENGTH = 200
"""Characters in an ordering key; the gateway refuses longer keys at ingest."""

# Nineteen digits outrun any counter a gateway will reach; longer is garbage, and int() on a
# huge digit string is quadratic, so the length is checked first.
_MAX_SEQUENCE_DIGITS = 19

# A key of MAX_KEY_LENGTH characters, each four UTF-8 bytes, each byte escaped: anything longer
# cannot decode to a valid key, and is refused before any work is spent on it.
_MAX_ENCODED_LENGTH = MAX_KEY_LENGTH * 4 * 3

# The gateway's encoding exactly: bytes 0x21-0x7E other than % as is, %XX otherwise.
_PLAIN = re.compile(r"[\x21-\x24\x26-\x7e]*")
_UPPER_HEX = frozenset("0123456789ABCDEF")


@dataclass(frozen=True, slots=True)
class Ordering:
    """Where a delivery stands among its key's events: `sequence` counts from 1 per key."""

    key: str
    sequence: int


class SequenceCheck(StrEnum):
    """How a delivery's sequence number relates to the last one the receiver acknowledged."""

    NEXT = "next"
    """The event after the last acknowledged one: process it."""
    REPEAT = "repeat"
    """Already acknowledged (a retry whose answer was lost, or a replay): answer 2xx, no more."""
    GAP = "gap"
    """Events in between will not come (skipped, or tracking began mid-stream): reconcile."""


def read_ordering(headers: HeadersLike) -> Ordering | None:
    """Return the delivery's ordering key and sequence, or None for an unordered delivery.

    Raises MalformedHeaders if only one of the two headers is present or either is not what
    the gateway sends, MissingHeaders if `headers` is not a header container; nothing else.
    """
    raw_key, raw_sequence = _read_pair(headers)
    if raw_key is None and raw_sequence is None:
        return None
    if raw_key is None:
        raise MalformedHeaders(f"{SEQUENCE} is present without {KEY}")
    if raw_sequence is None:
        raise MalformedHeaders(f"{KEY} is present without {SEQUENCE}")
    return Ordering(_decode_key(raw_key), _parse_sequence(raw_sequence))


def check_sequence(last_acknowledged: int | None, sequence: int) -> SequenceCheck:
    """Classify `sequence` against the last number acknowledged for its key (None: none yet).

    NEXT is `last_acknowledged + 1` (1 when None); REPEAT is at or below `last_acknowledged`;
    GAP is anything higher than NEXT. Both numbers are ints from 1 (bool is refused).
    """
    _require_sequence_number("sequence", sequence)
    if last_acknowledged is None:
        return SequenceCheck.NEXT if sequence == 1 else SequenceCheck.GAP
    _require_sequence_number("last_acknowledged", last_acknowledged)
    if sequence <= last_acknowledged:
        return SequenceCheck.REPEAT
    return SequenceCheck.NEXT if sequence == last_acknowledged + 1 else SequenceCheck.GAP


def _require_sequence_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")


def _read_pair(headers: object) -> tuple[str | None, str | None]:
    # Fast path: a mapping answering for the lowercase names (every case-insensitive one).
    get = getattr(headers, "get", None)
    if get is not None:
        try:
            key = get(KEY)
            sequence = get(SEQUENCE)
        except Exception:  # noqa: BLE001 - a foreign .get must not leak its own errors
            key = sequence = None
        if type(key) is str and type(sequence) is str:
            return key, sequence
    # Otherwise one header or both may be absent, spelt in another case, or bytes: look at
    # every header, so "absent" is an answer about the whole container.
    try:
        found = collect(headers, _WANTED)
    except (MissingHeaders, MalformedHeaders):
        raise
    except Exception as exc:  # a foreign container's own errors become ours
        raise MissingHeaders(f"cannot read headers from {type(headers).__name__}") from exc
    return found.get(KEY), found.get(SEQUENCE)


def _decode_key(text: str) -> str:
    if not text:
        raise MalformedHeaders(f"{KEY} is empty")
    if len(text) > _MAX_ENCODED_LENGTH:
        raise MalformedHeaders(f"{KEY} is longer than {MAX_KEY_LENGTH} characters")
    # Nothing escaped is the common case (ids such as sub_9KQ2): then the text is the key.
    key = text if _PLAIN.fullmatch(text) else _unescape(text)
    if len(key) > MAX_KEY_LENGTH:
        raise MalformedHeaders(f"{KEY} is longer than {MAX_KEY_LENGTH} characters")
    return key


def _unescape(text: str) -> str:
    # Only the gateway's own spelling is accepted (uppercase hex, nothing escaped that is
    # sent as is), so a key has exactly one header form.
    decoded = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%":
            digits = text[index + 1 : index + 3]
            if len(digits) != 2 or not _UPPER_HEX.issuperset(digits):
                raise MalformedHeaders(
                    f"{KEY} has a bad percent-escape at offset {index}: "
                    "% must be followed by two uppercase hex digits"
                )
            byte = int(digits, 16)
            if 0x21 <= byte <= 0x7E and byte != 0x25:
                raise MalformedHeaders(
                    f"{KEY} has a bad percent-escape at offset {index}: "
                    f"byte 0x{byte:02X} is sent as is, not escaped"
                )
            decoded.append(byte)
            index += 3
        elif "\x21" <= char <= "\x7e":
            decoded.append(ord(char))
            index += 1
        else:
            raise MalformedHeaders(
                f"{KEY} has a character outside 0x21-0x7E at offset {index}: "
                "it must be percent-encoded"
            )
    try:
        return decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedHeaders(f"{KEY} does not decode to valid UTF-8") from None


def _parse_sequence(text: str) -> int:
    # Canonical decimal only, as the gateway writes it: one number, one spelling.
    if not text:
        raise MalformedHeaders(f"{SEQUENCE} is empty")
    if len(text) > _MAX_SEQUENCE_DIGITS:
        raise MalformedHeaders(f"{SEQUENCE} is longer than {_MAX_SEQUENCE_DIGITS} digits")
    if not (text.isascii() and text.isdigit()):
        raise MalformedHeaders(f"{SEQUENCE} must be a decimal integer: digits 0-9 only, no sign")
    if text == "0":
        raise MalformedHeaders(f"{SEQUENCE} must be at least 1")
    if text[0] == "0":
        raise MalformedHeaders(f"{SEQUENCE} must not have leading zeros")
    return int(text)
