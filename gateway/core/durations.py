"""Human durations (``250ms``, ``5s``, ``15m``, ``2h``, ``5d``) to seconds and back."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# ASCII digits and spaces (tab to CR, space), not \d and \s, which mean more to Python than
# to ECMA-262, in which the API's OpenAPI document states this pattern.
DURATION_PATTERN = r"^[\t-\r ]*([0-9]+(?:\.[0-9]+)?)[\t-\r ]*(ms|s|m|h|d)[\t-\r ]*$"
_DURATION = re.compile(DURATION_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ``ValueError`` naming what is accepted."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 250ms, 5s, 15m, 2h or 5d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_time(text: str, now: float, *, ahead: bool = False) -> float:
    """A point in time (unix seconds): an RFC 3339 time with offset, or a duration ago
    (``2h`` = two hours before ``now``; with ``ahead``, two hours after it). Raises
    ``ValueError`` saying what is accepted."""
    try:
        duration = parse_duration(text)
    except ValueError:
        pass
    else:
        return now + duration if ahead else now - duration
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError(
            f"{text!r} is neither a duration like 30s, 15m, 2h, 5d nor an RFC 3339 time "
            "like 2026-11-20T13:10:00Z"
        )
    # Not .timestamp(): a time near year 1 or 9999 whose offset crosses it overflows there.
    return (parsed - _EPOCH).total_seconds()


def format_duration(seconds: float) -> str:
    """The shortest exact form of ``seconds`` (``300`` → ``5m``)."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
