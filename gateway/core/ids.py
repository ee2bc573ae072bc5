"""Time-ordered identifiers: a prefix and 26 Crockford base32 characters (48-bit ms + 80 bits).

Monotonic within a process (as ULID's monotonic mode): an id made in the same millisecond as
the previous one increments its random part, so ids sort in the order they were made.
"""

from __future__ import annotations

import base64
import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# RFC 4648 base32 (what base64.b32encode speaks, in C) to Crockford's alphabet.
_CROCKFORD = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = (0, 0)


def new_id(prefix: str, now_ms: int | None = None, suffix: str = "") -> str:
    """A fresh id such as ``evt_01JD…``; later ids sort after earlier ones. ``suffix`` is the
    cell's (``cells.id_suffix``: empty in the default cell, ``.c2`` in cell ``c2``)."""
    global _last
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        last_ms, last_random = _last
        if ms <= last_ms and last_random + 1 < 1 << _RANDOM_BITS:
            ms, random = last_ms, last_random + 1
        else:
            random = int.from_bytes(os.urandom(10), "big") >> 1  # room to count up
        _last = (ms, random)
    value = (ms << _RANDOM_BITS) | random  # 128 bits: the last 26 of 32 base32 characters
    return (
        prefix
        + "_"
        + base64.b32encode(value.to_bytes(20, "big"))[6:].translate(_CROCKFORD).decode()
        + suffix
    )


def id_time_ms(value: str) -> int:
    """The millisecond an id was made, read back from its first ten characters."""
    stamp = value.split("_", 1)[1][:10]
    ms = 0
    for char in stamp:
        ms = ms * 32 + _ALPHABET.index(char)
    return ms


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
