"""JSON on the hot paths.

Serialising uses orjson (several times faster than ``json``), falling back to ``json`` for
integers beyond 64 bits, which orjson refuses. Parsing stays on ``json``: orjson turns such
integers into floats without a word, which would change the event data that gets signed.
Parsing is strict: ``NaN``, ``Infinity`` and numbers that overflow to infinity are refused.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


# Built once: json.loads with options builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


# Only a \uD800-\uDFFF escape can put a surrogate in parsed text (encoded surrogates are
# refused when the bytes are decoded); a pair of them is one character and fine.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def loads(data: bytes | str) -> Any:
    """Parse JSON exactly; raises ``ValueError`` (or ``RecursionError``) on anything else,
    including text that is no Unicode (a lone surrogate), which could never be sent as UTF-8.
    """
    if isinstance(data, bytes):  # as json.loads does: UTF-8, -16 or -32, by the first bytes
        data = data.decode(json.detect_encoding(data))
    value = _DECODER.decode(data)
    if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(value):
        raise ValueError("a \\u escape makes a lone surrogate, which is not a character")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON (no spaces, no ASCII escaping)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
        return text.encode()


def dumps_text(value: Any) -> str:
    return dumps(value).decode()
