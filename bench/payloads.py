"""The request bodies every benchmark sends: 1 KB events, the same for hookgate and baselines."""

from __future__ import annotations

import json
from typing import Any

BUSINESS_ID = "bus_bench"
EVENT_TYPE = "payment.succeeded"
EVENT_SIZE = 1024


def event(size: int = EVENT_SIZE, business_id: str = BUSINESS_ID) -> dict[str, Any]:
    """An event of ``business_id`` whose JSON encoding (``json.dumps`` defaults) is exactly
    ``size`` bytes."""
    base: dict[str, Any] = {
        "business_id": business_id,
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


def spread_batch_bytes(businesses: list[str], count: int) -> bytes:
    """A batch of ``count`` 1 KB events, the businesses taking turns."""
    events = [event(business_id=b) for b in businesses]
    return json.dumps({"events": [events[i % len(events)] for i in range(count)]}).encode()
