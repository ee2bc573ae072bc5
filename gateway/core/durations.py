"""Human durations (``250ms``, ``5s``, ``15m``, ``2h``, ``5d``) to seconds and back."""

from __future__ import annotations

import re
from datetime import datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ``ValueError`` naming what is accepted."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 250ms, 5s, 15m, 2h or 5d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, now: float) -> float:
    """A point in time (unix seconds): an RFC 3339 time with offset, or a duration ago
    (``2h`` = two hours before ``now``). Raises ``ValueError`` saying what is accepted."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError(
            f"{text!r} is neither a duration like 30s, 15m, 2h, 5d nor an RFC 3339 time "
            "like 2026-11-20T13:10:00Z"
        )
    return parsed.timestamp()


def format_duration(seconds: float) -> str:
    """The shortest exact form of ``seconds`` (``300`` → ``5m``)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
