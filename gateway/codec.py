"""JSON on the hot paths.

Serialising uses orjson (several times faster than ``json``), falling back to ``json`` for
integers beyond 64 bits, which orjson refuses. Parsing stays on ``json``: orjson turns such
integers into floats without a word, which would change the event data that gets signed.
Parsing is strict: ``NaN``, ``Infinity`` and numbers that overflow to infinity are refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def loads(data: bytes | str) -> Any:
    """Parse JSON exactly; raises ``ValueError`` (or ``RecursionError``) on anything else."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite)


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (no spaces, no ASCII escaping)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
        return text.encode()


def dumps_text(value: Any) -> str:
    return dumps(value).decode()
