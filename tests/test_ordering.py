"""Ordered delivery per key, in one process: the API's inputs, what ingest stores, the headers
receivers get, blocking, skipping, replaying and releasing keys (lua/lib/ordering.lua).

The guarantees under real processes, failures, ``kill -9`` and two workers are in
``test_ordering_e2e.py``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from conftest import Receiver
from hookgate_verifier import check_sequence, read_ordering
from support import AUTH, data_keys

from gateway.core.settings import Settings
from gateway.store import keys
from gateway.store.store import Store
from worker.signing import build_headers, ordering_key_header

Client = TestClient[Any, Any]
BUS = "bus_ord"


async def endpoint(api: Client, url: str, **over: Any) -> dict[str, Any]:
    body = {"business_id": BUS, "url": url, "ordered": True, "max_in_flight": 50, **over}
    resp = await api.post("/v1/endpoints", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


def event(key: str | None, n: int = 0, etype: str = "payment.succeeded") -> dict[str, Any]:
    made: dict[str, Any] = {"business_id": BUS, "type": etype, "data": {"n": n, "key": key}}
    if key is not None:
        made["ordering_key"] = key
    return made


async def send(api: Client, *events: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await api.post("/v1/events/batch", json={"events": list(events)}, headers=AUTH)
    assert resp.status == 207 or resp.status == 202, await resp.text()
    results = (await resp.json())["results"]
    assert all(r["status"] == 202 for r in results), results
    return list(results)


async def deliveries(api: Client, endpoint_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/deliveries?endpoint_id={endpoint_id}&limit=500", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return list(reversed((await resp.json())["data"]))  # oldest first


async def delivery(api: Client, delivery_id: str) -> dict[str, Any]:
    resp = await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def blocked(api: Client, endpoint_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/endpoints/{endpoint_id}/ordering/blocked", headers=AUTH)
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["data"])


async def skip(api: Client, endpoint_id: str, key: str) -> Any:
    path = f"/v1/endpoints/{endpoint_id}/ordering/keys/{urllib.parse.quote(key, safe='')}/skip"
    return await api.post(path, headers=AUTH)


@dataclasses.dataclass
class OrderWatch:
    """The receivers' side of the guarantee: per key, the sequence numbers acknowledged (a
    2xx answered) in order, and every arrival of a successor before its predecessor was
    acknowledged."""

    acked: dict[str, list[int]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    violations: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    failing: set[str] = dataclasses.field(default_factory=set)  # keys answered 500, always

    def behaviour(self) -> Callable[[web.Request, int], Awaitable[web.StreamResponse]]:
        async def answer(request: web.Request, n: int) -> web.StreamResponse:
            seen = read_ordering(request.headers)
            assert seen is not None
            done = self.acked[seen.key]
            last = done[-1] if done else None
            if check_sequence(last, seen.sequence) == "gap":
                self.violations.append((seen.key, seen.sequence, last or 0))
            if seen.key in self.failing:
                return web.Response(status=500)
            if check_sequence(last, seen.sequence) == "next":
                done.append(seen.sequence)
            return web.Response(status=204)

        return answer


# ---- bad input -------------------------------------------------------------------------------

BAD_KEYS = [
    pytest.param(5, id="a number"),
    pytest.param(None, id="null"),
    pytest.param("", id="empty"),
    pytest.param("x" * 201, id="201 characters"),
    pytest.param("sub\n1", id="a newline"),
    pytest.param("sub\x001", id="a NUL"),
    pytest.param("sub\x851", id="a C1 control"),
    pytest.param("sub\u20281", id="a line separator"),
    pytest.param(["sub_1"], id="a list"),
]


@pytest.mark.parametrize("bad", BAD_KEYS)
async def test_a_bad_ordering_key_is_a_422_naming_it_and_stores_nothing(
    api: Client, redis: ArqRedis, receiver: Callable[..., Awaitable[Receiver]], bad: Any
) -> None:
    await endpoint(api, (await receiver()).url)
    before = await data_keys(redis)
    resp = await api.post("/v1/events", json={**event(None), "ordering_key": bad}, headers=AUTH)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["details"]["field"] == "ordering_key"
    assert await data_keys(redis) == before

    batch = {"events": [event("fine"), {**event(None), "ordering_key": bad}]}
    resp = await api.post("/v1/events/batch", json=batch, headers=AUTH)
    results = (await resp.json())["results"]
    assert [r["status"] for r in results] == [202, 422]
    assert results[1]["error"]["details"]["field"] == "events[1].ordering_key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ordered": "yes"}, "ordered"),
        ({"ordered": 1}, "ordered"),
        ({"ordered": None}, "ordered"),
        ({"on_exhausted": "retry"}, "on_exhausted"),
        ({"on_exhausted": True}, "on_exhausted"),
    ],
)
async def test_bad_ordering_fields_of_an_endpoint_are_422_and_store_nothing(
    api: Client, redis: ArqRedis, body: dict[str, Any], field: str
) -> None:
    made = await endpoint(api, "http://127.0.0.1:9/hook")
    before = await data_keys(redis)
    create = {"business_id": BUS, "url": "http://127.0.0.1:9/other", **body}
    resp = await api.post("/v1/endpoints", json=create, headers=AUTH)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["details"]["field"] == field
    resp = await api.patch(f"/v1/endpoints/{made['id']}", json=body, headers=AUTH)
    assert resp.status == 422, await resp.text()
    assert (await resp.json())["error"]["details"]["field"] == field
    assert await data_keys(redis) == before


async def test_skip_with_a_bad_key_or_an_unknown_one_is_refused(api: Client) -> None:
    made = await endpoint(api, "http://127.0.0.1:9/hook")
    for bad in ("%0A", "a%00b", "%C2%85", "x" * 201):
        resp = await api.post(f"/v1/endpoints/{made['id']}/ordering/keys/{bad}/skip", headers=AUTH)
        assert resp.status == 422, (bad, await resp.text())
        assert (await resp.json())["error"]["details"]["field"] == "key"
    resp = await skip(api, made["id"], "never-seen")
    assert resp.status == 404, await resp.text()
    resp = await skip(api, "ep_01JD0000000000000000000000", "k")
    assert resp.status == 404
    resp = await api.get(
        f"/v1/endpoints/{made['id']}/ordering/blocked?cursor=bm90LWEtY3Vyc29y", headers=AUTH
    )
    assert resp.status == 422
    resp = await api.get(f"/v1/endpoints/{made['id']}/ordering/blocked?limit=0", headers=AUTH)
    assert resp.status == 422


# ---- what ingest stores -----------------------------------------------------------------------


async def test_a_keys_deliveries_get_sequence_numbers_and_wait_behind_the_first(
    api: Client,
) -> None:
    ordered = await endpoint(api, "http://127.0.0.1:9/a")
    plain = await endpoint(api, "http://127.0.0.1:9/b", ordered=False)
    assert (ordered["ordered"], plain["ordered"]) == (True, False)
    assert ordered["on_exhausted"] == "block"
    await send(api, event("sub_1", 1), event("sub_2", 1), event("sub_1", 2), event(None, 0))
    await send(api, event("sub_1", 3))

    got = await deliveries(api, ordered["id"])
    by_key = [(d["ordering_key"], d["sequence"], d["next_attempt_at"] is None) for d in got]
    assert by_key == [
        ("sub_1", 1, False),  # the head: due now
        ("sub_2", 1, False),
        ("sub_1", 2, True),  # waiting: no attempt scheduled
        (None, None, False),  # no key: unordered
        ("sub_1", 3, True),
    ]
    assert all(d["status"] == "pending" for d in got)
    assert [d["reason"] for d in got] == [None, None, "waiting", None, "waiting"]
    # the same events on an unordered endpoint: no sequence, nothing waits
    assert all(d["sequence"] is None for d in await deliveries(api, plain["id"]))
    assert all(d["next_attempt_at"] for d in await deliveries(api, plain["id"]))

    # the key is in the delivered body too, and in the event's answer
    view = await (await api.get(f"/v1/events/{got[0]['event_id']}", headers=AUTH)).json()
    assert view["payload"]["ordering_key"] == "sub_1"


async def test_an_idempotency_key_binds_the_ordering_key_too(api: Client) -> None:
    await endpoint(api, "http://127.0.0.1:9/a")
    headers = {**AUTH, "Idempotency-Key": "ord-1"}
    first = await api.post("/v1/events", json=event("sub_1"), headers=headers)
    assert first.status == 202
    again = await api.post("/v1/events", json=event("sub_1"), headers=headers)
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    other = await api.post("/v1/events", json=event("sub_2"), headers=headers)
    assert other.status == 409, await other.text()


# ---- delivery ---------------------------------------------------------------------------------


async def test_deliveries_carry_the_key_and_sequence_and_a_key_goes_in_order(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    watch = OrderWatch()
    got = await receiver(watch.behaviour())
    made = await endpoint(api, got.url)
    odd = "sub é/100% ✓"  # a space, non-ASCII, a slash and a percent sign
    events = [event(k, n) for n in range(1, 7) for k in ("sub_1", "sub_2", odd)]
    await send(api, *events)
    await start_worker(settings)
    await got.wait_for(18)
    await until(lambda: _all_settled(api, made["id"], 18))

    assert watch.violations == []
    assert {k: v for k, v in watch.acked.items()} == {k: list(range(1, 7)) for k in watch.acked}
    assert set(watch.acked) == {"sub_1", "sub_2", odd}
    sample = got.requests[0].headers
    assert sample["webhook-sequence"].isdigit()
    raw_keys = {r.headers["webhook-ordering-key"] for r in got.requests}
    assert ordering_key_header(odd) in raw_keys
    assert ordering_key_header(odd) == "sub%20%C3%A9/100%25%20%E2%9C%93"
    # the data of each key arrives in ingest order
    for key in watch.acked:
        seen = [r for r in got.bodies() if r.get("ordering_key") == key]
        assert [b["data"]["n"] for b in seen] == list(range(1, 7))


async def _all_settled(api: Client, endpoint_id: str, count: int) -> bool:
    got = await deliveries(api, endpoint_id)
    return len(got) == count and all(d["status"] == "succeeded" for d in got)


async def test_a_failing_head_holds_its_key_only_until_it_succeeds(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    seen: list[tuple[str, int]] = []

    async def flaky(request: web.Request, n: int) -> web.StreamResponse:
        got = read_ordering(request.headers)
        assert got is not None
        seen.append((got.key, got.sequence))
        # the first two arrivals of sub_1's first event fail; it succeeds on its third
        if (got.key, got.sequence) == ("sub_1", 1) and seen.count(("sub_1", 1)) <= 2:
            return web.Response(status=503)
        return web.Response(status=204)

    got = await receiver(flaky)
    made = await endpoint(api, got.url)
    await send(api, event("sub_1", 1), event("sub_1", 2), event("sub_2", 1))
    await start_worker(settings)
    await until(lambda: _all_settled(api, made["id"], 3))
    sub_1 = [s for k, s in seen if k == "sub_1"]
    assert sub_1 == [1, 1, 1, 2]  # two failures and a success, then its successor
    assert seen.index(("sub_2", 1)) < seen.index(("sub_1", 2))  # sub_2 did not wait for it


# ---- blocked keys ------------------------------------------------------------------------------


async def test_a_spent_head_blocks_only_its_key_until_it_is_replayed(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    watch = OrderWatch(failing={"sub_bad"})
    got = await receiver(watch.behaviour())
    other_rx = await receiver()
    made = await endpoint(api, got.url)
    await endpoint(api, other_rx.url)  # another endpoint of the business: it gets all five
    await send(api, event("sub_bad", 1), event("sub_ok", 1), event("sub_bad", 2))
    await send(api, event("sub_bad", 3), event("sub_ok", 2))
    await start_worker(settings)

    async def is_blocked() -> bool:
        return len(await blocked(api, made["id"])) == 1

    await until(is_blocked)
    [row] = await blocked(api, made["id"])
    assert row["key"] == "sub_bad" and row["waiting"] == 2
    head = await delivery(api, row["head_delivery_id"])
    assert (head["status"], head["reason"], head["sequence"]) == ("failed", "retries_exhausted", 1)
    assert len(head["attempts"]) == 3  # the whole schedule (0.2 s, 0.2 s) was spent
    # the key's others wait; the other key and the other endpoint flow
    await until(lambda: _count_status(api, made["id"], "succeeded", 2))
    assert watch.acked["sub_ok"] == [1, 2]
    assert len(other_rx.requests) == 5
    view = await (await api.get(f"/v1/endpoints/{made['id']}", headers=AUTH)).json()
    assert view["health"]["blocked_keys"] == 1
    # new events of the blocked key wait too
    await send(api, event("sub_bad", 4))
    await asyncio.sleep(0.5)
    assert [s for k, s in _arrivals(got) if k == "sub_bad"] == [1, 1, 1]

    # the receiver is fixed; replaying the head resumes the key, in order
    watch.failing.clear()
    resp = await api.post(f"/v1/deliveries/{head['id']}/replay", headers=AUTH)
    assert resp.status == 202, await resp.text()
    assert await blocked(api, made["id"]) == []
    await until(lambda: _count_status(api, made["id"], "succeeded", 6))
    assert watch.acked["sub_bad"] == [1, 2, 3, 4]
    assert watch.violations == []


def _arrivals(got: Receiver) -> list[tuple[str, int]]:
    out = []
    for r in got.requests:
        seen = read_ordering(r.headers)
        assert seen is not None
        out.append((seen.key, seen.sequence))
    return out


async def _count_status(api: Client, endpoint_id: str, status: str, count: int) -> bool:
    return sum(d["status"] == status for d in await deliveries(api, endpoint_id)) == count


async def test_skipping_a_blocked_key_leaves_the_head_failed_and_replayable(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    watch = OrderWatch(failing={"sub_bad"})
    got = await receiver(watch.behaviour())
    made = await endpoint(api, got.url)
    await send(api, event("sub_bad", 1), event("sub_bad", 2))
    await start_worker(settings)
    await until(lambda: _has_blocked(api, made["id"]))
    [row] = await blocked(api, made["id"])

    watch.failing.clear()
    resp = await skip(api, made["id"], "sub_bad")
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["skipped_delivery_id"] == row["head_delivery_id"]
    assert answer["next_delivery_id"] is not None
    await until(lambda: _count_status(api, made["id"], "succeeded", 1))
    head = await delivery(api, row["head_delivery_id"])
    assert head["status"] == "failed"
    assert await blocked(api, made["id"]) == []
    # the receiver saw a gap (2 after nothing acknowledged), as documented
    assert watch.violations == [("sub_bad", 2, 0)]
    # the skipped head can still be replayed: it goes (nothing of its key waits) as a repeat
    resp = await api.post(f"/v1/deliveries/{head['id']}/replay", headers=AUTH)
    assert resp.status == 202
    await until(lambda: _count_status(api, made["id"], "succeeded", 2))
    # skipping again: nothing holds the key now
    assert (await skip(api, made["id"], "sub_bad")).status == 404


async def _has_blocked(api: Client, endpoint_id: str) -> bool:
    return len(await blocked(api, endpoint_id)) > 0


async def test_an_endpoint_that_skips_moves_on_after_a_spent_head(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    seen: list[int] = []

    async def first_fails(request: web.Request, n: int) -> web.StreamResponse:
        got = read_ordering(request.headers)
        assert got is not None
        seen.append(got.sequence)
        return web.Response(status=500 if got.sequence == 1 else 204)

    got = await receiver(first_fails)
    made = await endpoint(api, got.url, on_exhausted="skip")
    assert made["on_exhausted"] == "skip"
    await send(api, event("k", 1), event("k", 2), event("k", 3))
    await start_worker(settings)
    await until(lambda: _count_status(api, made["id"], "succeeded", 2))
    assert seen == [1, 1, 1, 2, 3]
    assert await blocked(api, made["id"]) == []
    first = (await deliveries(api, made["id"]))[0]
    assert (first["status"], first["reason"]) == ("failed", "retries_exhausted")


async def test_a_head_still_being_retried_can_be_skipped(
    api: Client, redis: ArqRedis, settings: Settings
) -> None:
    made = await endpoint(api, "http://127.0.0.1:9/hook")
    await send(api, event("k", 1), event("k", 2))
    first, second = await deliveries(api, made["id"])
    # an attempt of the head is open: the skip waits for it
    await redis.zadd(keys.endpoint_inflight(made["id"]), {first["id"]: time.time() * 1000 + 60_000})
    resp = await skip(api, made["id"], "k")
    assert resp.status == 409, await resp.text()
    assert (await resp.json())["error"]["code"] == "attempt_in_flight"
    await redis.delete(keys.endpoint_inflight(made["id"]))

    resp = await skip(api, made["id"], "k")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["next_delivery_id"] == second["id"]
    first, second = await deliveries(api, made["id"])
    assert (first["status"], first["reason"]) == ("failed", "skipped")
    assert second["status"] == "pending" and second["next_attempt_at"] is not None
    # the skip is in the audit log
    log = await (await api.get("/v1/audit-log", headers=AUTH)).json()
    entries = [e for e in log["data"] if e["action"] == "endpoint.ordering_skip"]
    assert [e["outcome"] for e in entries] == ["success", "failure"]  # newest first
    entry = entries[0]
    assert first["id"] in entry["targets"]
    assert all("k" not in target.split() for target in entry["targets"])  # not the key


# ---- configuration changes and replays ---------------------------------------------------------


async def test_turning_ordering_off_lets_every_waiting_delivery_go(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    watch = OrderWatch(failing={"k"})
    got = await receiver(watch.behaviour())
    made = await endpoint(api, got.url)
    await send(api, *(event("k", n) for n in range(4)))
    await start_worker(settings)
    await until(lambda: _has_blocked(api, made["id"]))
    watch.failing.clear()
    resp = await api.patch(f"/v1/endpoints/{made['id']}", json={"ordered": False}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["ordered"] is False
    await until(lambda: _count_status(api, made["id"], "succeeded", 3))
    assert await blocked(api, made["id"]) == []
    # turned on again, new events are ordered again, after the key's earlier ones
    resp = await api.patch(f"/v1/endpoints/{made['id']}", json={"ordered": True}, headers=AUTH)
    await send(api, event("k", 10), event("k", 11))
    await until(lambda: _count_status(api, made["id"], "succeeded", 5))
    sequences = [d["sequence"] for d in await deliveries(api, made["id"])]
    assert sequences == [1, 2, 3, 4, 5, 6]


async def test_after_a_disable_a_bulk_replay_resends_each_key_in_order(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    watch = OrderWatch()
    got = await receiver(watch.behaviour())
    made = await endpoint(api, got.url)
    # all queued in the same millisecond or so: time order cannot be trusted, sequence can
    await send(api, *(event(k, n) for n in range(8) for k in ("a", "b", "c")))
    resp = await api.post(f"/v1/endpoints/{made['id']}/disable", json={}, headers=AUTH)
    assert resp.status == 200
    assert all(d["status"] == "cancelled" for d in await deliveries(api, made["id"]))
    await api.post(f"/v1/endpoints/{made['id']}/enable", headers=AUTH)
    await start_worker(settings)
    resp = await api.post(f"/v1/endpoints/{made['id']}/replay", json={"since": "1h"}, headers=AUTH)
    assert resp.status == 202, await resp.text()
    await until(lambda: _count_status(api, made["id"], "succeeded", 24))
    assert watch.violations == []
    assert dict(watch.acked) == {k: list(range(1, 9)) for k in "abc"}


async def test_the_sweeper_leaves_waiting_deliveries_alone(
    api: Client, redis: ArqRedis, settings: Settings
) -> None:
    made = await endpoint(api, "http://127.0.0.1:9/hook")
    await send(api, event("k", 1), event("k", 2))
    _, waiting = await deliveries(api, made["id"])
    # even were one listed as overdue, a new job for it would break its key's order
    await redis.zadd(keys.DUE, {waiting["id"]: 0})
    store = Store(redis, settings, frozenset())
    assert await store.scripts.rescue(waiting["id"]) == "waiting"
    assert await store.rescue_due(int(time.time() * 1000)) == 0
    assert (await delivery(api, waiting["id"]))["next_attempt_at"] is None


@pytest.mark.parametrize(
    "key",
    ["sub_1", "a b", " lead and trail ", "100%", "é", "😀/x?y#z", "~!@#$^&*()", "x" * 200],
)
def test_the_ordering_headers_read_back_with_the_verifier(key: str) -> None:
    headers = build_headers(
        msg_id="evt_1",
        timestamp=1_700_000_000,
        body=b"{}",
        secrets=("whsec_" + "A" * 44,),
        custom={},
        ordering=(key, 42),
    )
    got = read_ordering(headers)
    assert got is not None and (got.key, got.sequence) == (key, 42)
    assert all(0x21 <= ord(c) <= 0x7E for c in headers["webhook-ordering-key"])
    plain = build_headers(
        msg_id="evt_1", timestamp=1, body=b"{}", secrets=("whsec_" + "A" * 44,), custom={}
    )
    assert read_ordering(plain) is None


async def test_metrics_count_waiting_deliveries_as_pending_and_blocked_keys(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    async def gauge(name: str) -> int:
        text = await (await api.get("/metrics")).text()
        [line] = [ln for ln in text.splitlines() if ln.startswith(name + '{cell="default"} ')]
        return int(float(line.split()[1]))

    watch = OrderWatch(failing={"k"})
    made = await endpoint(api, (await receiver(watch.behaviour())).url)
    await send(api, *(event("k", n) for n in range(4)))
    assert await gauge("hookgate_deliveries_pending") == 4
    assert await gauge("hookgate_deliveries_waiting") == 3
    await start_worker(settings)
    await until(lambda: _has_blocked(api, made["id"]))
    assert await gauge("hookgate_ordering_keys_blocked_total") == 1
    assert await gauge("hookgate_deliveries_waiting") == 3
    assert await gauge("hookgate_deliveries_pending") == 3  # the head failed for good
    watch.failing.clear()
    assert (await skip(api, made["id"], "k")).status == 200
    await until(lambda: _count_status(api, made["id"], "succeeded", 3))
    assert await gauge("hookgate_deliveries_waiting") == 0
    assert await gauge("hookgate_deliveries_pending") == 0


async def test_a_410_disables_an_ordered_endpoint_and_cancels_its_waiting_deliveries(
    api: Client,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    async def gone(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=410)

    got = await receiver(gone)
    made = await endpoint(api, got.url)
    await send(api, *(event("k", n) for n in range(3)))
    await start_worker(settings)
    await until(lambda: _count_status(api, made["id"], "cancelled", 3))
    assert len(got.requests) == 1  # only the head was sent
    view = await (await api.get(f"/v1/endpoints/{made['id']}", headers=AUTH)).json()
    assert view["disabled"] is True
    assert await blocked(api, made["id"]) == []
    # enabled again, the key starts over from its first event, in order
    fine = OrderWatch()
    resp = await api.patch(
        f"/v1/endpoints/{made['id']}",
        json={"url": (await receiver(fine.behaviour())).url},
        headers=AUTH,
    )
    assert resp.status == 200
    await api.post(f"/v1/endpoints/{made['id']}/enable", headers=AUTH)
    resp = await api.post(f"/v1/endpoints/{made['id']}/replay", json={"since": "1h"}, headers=AUTH)
    assert resp.status == 202, await resp.text()
    await until(lambda: _count_status(api, made["id"], "succeeded", 3))
    assert fine.acked == {"k": [1, 2, 3]} and fine.violations == []
