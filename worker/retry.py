"""What happens after an attempt: pure functions of the response and the schedule."""

from __future__ import annotations

import dataclasses
import email.utils
from collections.abc import Sequence
from typing import Literal

Outcome = Literal["succeeded", "retry", "failed", "gone"]


@dataclasses.dataclass(frozen=True)
class Decision:
    outcome: Outcome
    delay: float = 0.0  # seconds until the next attempt, when outcome == "retry"


def jittered(delay: float, jitter: float, unit: float) -> float:
    """``delay`` moved by up to ±``jitter`` (a fraction), with ``unit`` drawn from [0, 1)."""
    return delay * (1.0 + jitter * (2.0 * unit - 1.0))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def decide(
    *,
    status: int | None,
    attempt: int,
    schedule: Sequence[float],
    jitter: float,
    unit: float,
    retry_after: float | None = None,
) -> Decision:
    """The next step after attempt number ``attempt`` (1-based) got ``status`` (None: no answer).

    2xx succeeds; 410 means the endpoint is gone; anything else retries after
    ``schedule[attempt - 1]`` ±jitter, or fails when the schedule is spent. A ``Retry-After``
    on 429/503 replaces the step, clamped to twice the step.
    """
    if status is not None and 200 <= status < 300:
        return Decision("succeeded")
    if status == 410:
        return Decision("gone")
    if attempt > len(schedule):
        return Decision("failed")
    step = schedule[attempt - 1]
    if status in (429, 503) and retry_after is not None:
        return Decision("retry", min(retry_after, 2.0 * step))
    return Decision("retry", jittered(step, jitter, unit))
