"""The request bodies every benchmark sends: 1 KB events, the same for hookgate and baselines."""

from __future__ import annotations

import json
from typing import Any

BUSINESS_ID = "bus_bench"
EVENT_TYPE = "payment.succeeded"
EVENT_SIZE = 1024


def event(size: int = EVENT_SIZE) -> dict[str, Any]:
    """An event whose JSON encoding (``json.dumps`` defaults) is exactly ``size`` bytes."""
    base: dict[str, Any] = {
        "business_id": BUSINESS_ID,
        "type": EVENT_TYPE,
        "data": {"payment_id": "pay_0123456789", "amount": 1999, "currency": "EUR", "note": ""},
    }
    pad = size - len(json.dumps(base))
    base["data"]["note"] = "x" * max(pad, 0)
    return base


EVENT = event()
EVENT_BYTES = json.dumps(EVENT).encode()


def batch_bytes(count: int) -> bytes:
    return json.dumps({"events": [EVENT] * count}).encode()
