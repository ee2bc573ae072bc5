"""Idempotency keys are the sender's, per business: the same key from two businesses names
two events, and one business never learns anything of another's through a key (issue 12,
defect 8)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from support import AUTH

from gateway.store import keys
from gateway.store.store import fingerprint

Client = TestClient[Any, Any]


def event(business: str, **data: Any) -> dict[str, Any]:
    return {"business_id": business, "type": "payment.succeeded", "data": data or {"n": 1}}


async def post(api: Client, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
    resp = await api.post("/v1/events", json=body, headers={**AUTH, "Idempotency-Key": key})
    return resp.status, await resp.json()


async def test_one_key_from_two_businesses_makes_two_events(api: Client) -> None:
    status_a, a = await post(api, event("bus_a", n=1), "order-1")
    status_b, b = await post(api, event("bus_b", n=2), "order-1")
    assert (status_a, status_b) == (202, 202)
    assert a["id"] != b["id"] and b["duplicate"] is False
    # Each business's repeat finds its own event, and only its own.
    assert (await post(api, event("bus_a", n=1), "order-1"))[1]["id"] == a["id"]
    assert (await post(api, event("bus_b", n=2), "order-1"))[1]["id"] == b["id"]


async def test_a_conflict_names_only_the_same_business_event(api: Client) -> None:
    _, a = await post(api, event("bus_a", n=1), "order-2")
    # Business B with the same key and the very same data: a new event of B's, no 409.
    status, b = await post(api, event("bus_b", n=1), "order-2")
    assert status == 202 and b["id"] != a["id"] and a["id"] not in str(b)
    # A conflict inside one business still answers 409 with that business's own event.
    status, conflict = await post(api, event("bus_b", n=9), "order-2")
    assert status == 409 and conflict["error"]["details"]["event_id"] == b["id"]
    assert a["id"] not in str(conflict)


async def test_batch_keys_are_scoped_too(api: Client) -> None:
    items = [
        {**event("bus_a"), "idempotency_key": "k-1"},
        {**event("bus_b", n=5), "idempotency_key": "k-1"},
        {**event("bus_a"), "idempotency_key": "k-1"},
    ]
    resp = await api.post("/v1/events/batch", json={"events": items}, headers=AUTH)
    results = (await resp.json())["results"]
    assert [r["status"] for r in results] == [202, 202, 202]
    assert [r["duplicate"] for r in results] == [False, False, True]
    assert results[0]["id"] == results[2]["id"] != results[1]["id"]


async def test_a_key_stored_before_scoping_still_dedups_its_own_request(
    api: Client, redis: ArqRedis
) -> None:
    """Across an upgrade: a retry of a request first stored under the unscoped layout finds
    its event; another business (or another body) using that key is not answered from it."""
    _, first = await post(api, event("bus_a", n=1), "legacy-1")
    # Move the key to where an earlier version kept it.
    value = await redis.get(keys.idempotency("bus_a", "legacy-1"))
    await redis.delete(keys.idempotency("bus_a", "legacy-1"))
    await redis.set(keys.idempotency_unscoped("legacy-1"), value, px=60_000)
    assert value.decode().startswith(fingerprint(event("bus_a", n=1)) + "|")

    status, again = await post(api, event("bus_a", n=1), "legacy-1")
    assert status == 202 and again["id"] == first["id"] and again["duplicate"] is True
    status, other = await post(api, event("bus_b", n=1), "legacy-1")
    assert status == 202 and other["id"] != first["id"] and other["duplicate"] is False
    status, changed = await post(api, event("bus_a", n=2), "legacy-1")
    assert status == 202 and changed["id"] not in (first["id"], other["id"])
