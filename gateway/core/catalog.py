"""The event types hookgate accepts, and how endpoint subscriptions match them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import resources

from gateway.core import formats

# Operational events hookgate emits itself; the billing core cannot send these.
RESERVED_FAMILY = "hookgate"
OPERATIONAL_TYPES = frozenset(
    {"hookgate.test", "hookgate.endpoint.disabled", "hookgate.delivery.exhausted"}
)

EVENT_TYPE_RE = re.compile(formats.EVENT_TYPE)
FAMILY_PATTERN_RE = re.compile(formats.FAMILY)


def load_catalog() -> frozenset[str]:
    """The billing event types shipped with hookgate (``gateway/core/catalog.json``)."""
    raw = resources.files("gateway.core").joinpath("catalog.json").read_text("utf-8")
    families: dict[str, list[str]] = json.loads(raw)["families"]
    return frozenset(t for types in families.values() for t in types)


def is_pattern(text: str) -> bool:
    return bool(FAMILY_PATTERN_RE.match(text))


def matches(patterns: Iterable[str], event_type: str) -> bool:
    """Whether a subscription (exact names or ``family.*``; empty = every billing type) takes
    a type.

    The Lua fan-out in ``store.py`` implements the same rule; a test holds them together.
    """
    patterns = list(patterns)
    if not patterns:  # everything but hookgate's own events, which are asked for by name
        return not event_type.startswith(RESERVED_FAMILY + ".")
    for pattern in patterns:
        if pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
