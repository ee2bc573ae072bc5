"""How deeply event data may nest: the one limit ingest enforces and every reader can rely on.

JSON itself sets no depth, but every reader of a stored event does: the API's ``GET
/v1/events/{id}`` and the portal's event page parse and re-encode it recursively (``json``,
msgspec, the portal's ``pretty``), and so would a merchant's JSON library. Without a limit at
ingest, an event the gateway accepted could be unreadable afterwards, and what was accepted
would depend on the Python stack left at that moment (an ``Idempotency-Key`` adds a sorted
re-encode). 64 levels is far beyond any real billing payload and far inside every reader's
recursion limit.
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # levels of objects and arrays in an event's ``data``, ``data`` itself the first


def depth_over(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests objects and arrays more than ``limit`` levels deep
    (``{}`` is one level, ``{"a": []}`` two, a scalar none).

    One level at a time instead of recursion: the check must hold for exactly the inputs that
    would break a recursive reader. It stops as soon as the limit is passed, so a hostile value
    costs at most ``limit`` passes over what it holds.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for node in level:
            # exact types: parsed JSON holds no subclasses, and is-checks are the cheap test
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    below.append(child)
        level = below
    return False


def text_may_nest_over(text: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON ``text`` opens more than ``limit`` objects and arrays in all: if not, no
    value in it can nest deeper (brackets inside strings only raise the count). Counting bytes
    is several times cheaper than ``depth_over``'s walk, and typical events open a few dozen at
    most, so ingest walks only the rare event that could be too deep."""
    return text.count(b"{") + text.count(b"[") > limit
