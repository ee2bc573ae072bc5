"""Time as hookgate stores and shows it: milliseconds since the epoch in Redis, RFC 3339 with
milliseconds and ``Z`` in every answer."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(ms: int | str | bytes | None) -> str | None:
    if ms is None or ms == "" or ms == b"":
        return None
    whole = int(ms)  # whole seconds and milliseconds apart: a float loses the last one in 9999
    second = datetime.fromtimestamp(whole // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{second}.{whole % 1000:03d}Z"


_stamp = (-1, "")  # the last millisecond formatted, and its text


def now_timestamp() -> str:
    """Now as ``2026-11-21T06:48:41.516Z`` (formatted once per millisecond: a batch of events
    arrives within one)."""
    global _stamp
    ms = time.time_ns() // 1_000_000
    if ms != _stamp[0]:
        second = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _stamp = (ms, f"{second}.{ms % 1000:03d}Z")
    return _stamp[1]
