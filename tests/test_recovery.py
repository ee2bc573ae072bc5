"""Finding failed deliveries and replaying them: listing, replays, disable/enable, test
events, operational events and endpoint health, against a real Redis and real receivers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from conftest import Receiver
from standardwebhooks import Webhook
from support import AUTH

from gateway.core.settings import Settings

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"n": 0}}


class Switch:
    """A receiver behaviour that fails until it is switched on."""

    def __init__(self, status: int = 500) -> None:
        self.working = False
        self.status = status

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=200 if self.working else self.status)


async def ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def endpoint(api: Client, url: str, **over: Any) -> dict[str, Any]:
    body = {"business_id": "bus_1", "url": url, **over}
    result: dict[str, Any] = await ok(await api.post("/v1/endpoints", json=body, headers=AUTH), 201)
    return result


async def send(api: Client, n: int = 0, **over: Any) -> dict[str, Any]:
    event = {**EVENT, "data": {"n": n}, **over}
    result: dict[str, Any] = await ok(await api.post("/v1/events", json=event, headers=AUTH), 202)
    return result


async def get(api: Client, path: str) -> Any:
    return await ok(await api.get(path, headers=AUTH))


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def all_settled(api: Client, delivery_ids: list[str]) -> list[dict[str, Any]]:
    views: list[dict[str, Any]] = []

    async def check() -> bool:
        views[:] = [await get(api, f"/v1/deliveries/{d}") for d in delivery_ids]
        return all(v["status"] != "pending" for v in views)

    await until(check)
    return views


# ---- listing -----------------------------------------------------------------------------


async def test_listing_is_newest_first_and_pages_stay_stable_under_writes(api: Client) -> None:
    ep = await endpoint(api, "http://127.0.0.1:9/h")
    sent = [await send(api, i) for i in range(25)]
    expected = [s["deliveries"][0] for s in reversed(sent)]
    seen: list[str] = []
    cursor = None
    while True:
        path = f"/v1/deliveries?endpoint_id={ep['id']}&limit=10"
        page = await get(api, path + (f"&cursor={cursor}" if cursor else ""))
        seen += [d["id"] for d in page["data"]]
        await send(api, 99)  # a write between pages must not shift what comes next
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


async def test_listing_filters(api: Client, redis: ArqRedis) -> None:
    ep = await endpoint(api, "http://127.0.0.1:9/h")
    other = await endpoint(api, "http://127.0.0.1:9/other", business_id="bus_2")
    a = await send(api, 1)
    b = await send(api, 2, type="refund.failed")
    await send(api, 3, business_id="bus_2")
    await redis.hset(f"hg:dlv:{a['deliveries'][0]}", "status", "failed")

    async def ids(query: str) -> list[str]:
        return [d["id"] for d in (await get(api, "/v1/deliveries?" + query))["data"]]

    assert await ids(f"endpoint_id={ep['id']}&status=failed") == a["deliveries"]
    assert await ids("business_id=bus_1&event_type=refund.failed") == b["deliveries"]
    assert len(await ids(f"endpoint_id={other['id']}")) == 1
    assert await ids(f"event_id={b['id']}") == b["deliveries"]
    assert len(await ids("")) == 3
    assert await ids("since=1h&until=2099-01-01T00:00:00Z&business_id=bus_1") == [
        b["deliveries"][0],
        a["deliveries"][0],
    ]
    assert await ids("until=2020-01-01T00:00:00Z") == []


@pytest.mark.parametrize(
    "query",
    [
        "status=lost",
        "limit=0",
        "limit=501",
        "limit=ten",
        "since=yesterday",
        "since=5w",
        "until=2026-11-20T10:00:00",
        "since=1h&until=2h",
        "cursor=bm9wZQ",
        "endpoint_id=ep_nope",
        "event_type=not-a-type",
        "color=red",
    ],
)
async def test_bad_listing_queries_are_422(api: Client, query: str) -> None:
    resp = await api.get("/v1/deliveries?" + query, headers=AUTH)
    assert resp.status == 422, await resp.text()
    assert "field" in (await resp.json())["error"]["details"]


# ---- replays -----------------------------------------------------------------------------


async def test_one_failed_delivery_replays_with_its_webhook_id(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    switch = Switch()
    r = await receiver(switch)
    ep = await endpoint(api, r.url)
    await start_worker(settings)
    sent = await send(api)
    dlv = sent["deliveries"][0]
    [failed] = await all_settled(api, [dlv])
    assert failed["status"] == "failed"
    resp = await api.post(f"/v1/deliveries/{dlv}/replay", headers=AUTH)
    pending = await ok(resp, 202)
    assert pending["status"] == "pending" and pending["replays"] == 1
    again = await api.post(f"/v1/deliveries/{dlv}/replay", headers=AUTH)
    assert again.status == 409 and (await again.json())["error"]["code"] == "pending"
    switch.working = True
    [done] = await all_settled(api, [dlv])
    assert done["status"] == "succeeded"
    assert [(a["replay"], a["outcome"]) for a in done["attempts"]][-1] == (1, "succeeded")
    assert {q.headers["webhook-id"] for q in r.requests} == {sent["id"]}
    last = r.requests[-1]
    Webhook(ep["secret"]).verify(last.body, last.headers)
    # a succeeded delivery can be replayed too (the merchant lost it on their side)
    await ok(await api.post(f"/v1/deliveries/{dlv}/replay", headers=AUTH), 202)
    [final] = await all_settled(api, [dlv])
    assert [(a["replay"], a["outcome"]) for a in final["attempts"]][-1] == (2, "succeeded")
    # every recorded attempt reached the receiver once (the first replay's first attempt may
    # have come before the receiver was switched on: it is then retried, and recorded)
    assert len(r.requests) == len(final["attempts"]) >= settings.max_attempts + 2


async def test_replay_of_unknown_or_malformed_ids(api: Client) -> None:
    for path in (
        "/v1/deliveries/dlv_01JD00000000000000000000001/replay",
        "/v1/deliveries/nope/replay",
        "/v1/endpoints/ep_01JD0000000000000000000000/replay",
        "/v1/replays/rpl_01JD0000000000000000000000",
    ):
        method = api.get if path.startswith("/v1/replays") else api.post
        resp = await method(path, json={"since": "1h"}, headers=AUTH)
        assert resp.status == 404, path


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"since": "soon"},
        {"since": "1h", "until": "2h"},
        {"since": "1h", "status": "broken"},
        {"since": "1h", "dry_run": "yes"},
        {"since": "1h", "extra": 1},
        {"since": 3600},
        [],
    ],
)
async def test_bad_bulk_replays_are_422(api: Client, body: Any) -> None:
    ep = await endpoint(api, "http://127.0.0.1:9/h")
    resp = await api.post(f"/v1/endpoints/{ep['id']}/replay", json=body, headers=AUTH)
    assert resp.status == 422, await resp.text()


async def test_bulk_replay_after_the_receiver_is_fixed(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    switch = Switch()
    r = await receiver(switch)
    healthy = await receiver()
    ep = await endpoint(api, r.url)
    await endpoint(api, healthy.url)
    await start_worker(settings)
    sent = [await send(api, i) for i in range(30)]
    mine = [
        d
        for s in sent
        for d in s["deliveries"]
        if (await get(api, f"/v1/deliveries/{d}"))["endpoint_id"] == ep["id"]
    ]
    assert {v["status"] for v in await all_settled(api, mine)} == {"failed"}
    path = f"/v1/endpoints/{ep['id']}/replay"
    dry = await ok(await api.post(path, json={"since": "1h", "dry_run": True}, headers=AUTH))
    assert dry == {"replay_id": None, "matched": 30, "dry_run": True}
    assert len(r.requests) == 30 * settings.max_attempts
    switch.working = True
    answers = await asyncio.gather(
        *(api.post(path, json={"since": "1h"}, headers=AUTH) for _ in range(6))
    )
    replies = [await ok(answer, 202) for answer in answers]
    a = replies[0]
    # asked six times at once, run once: every answer is that one replay, whole
    assert {reply["replay_id"] for reply in replies} == {a["replay_id"]}
    assert [reply["matched"] for reply in replies] == [30] * 6
    assert sum(not reply.get("already_running") for reply in replies) <= 1
    # the losers left nothing behind
    assert {k async for k in redis.scan_iter("hg:replay:rpl_*") if b":" not in k[10:]} == {
        f"hg:replay:{a['replay_id']}".encode()
    }

    async def completed() -> bool:
        progress = await get(api, f"/v1/replays/{a['replay_id']}")
        return bool(progress["state"] == "completed")

    await until(completed)
    progress = await get(api, f"/v1/replays/{a['replay_id']}")
    assert (progress["matched"], progress["enqueued"], progress["succeeded"]) == (30, 30, 30)
    assert progress["failed"] == 0 and progress["skipped"] == 0
    all_requests = list(r.requests)
    delivered_after_fix = r.requests[30 * settings.max_attempts :]
    assert sorted(json.loads(q.body)["data"]["n"] for q in delivered_after_fix) == list(range(30))
    assert {q.headers["webhook-id"] for q in delivered_after_fix} == {s["id"] for s in sent}
    assert len(all_requests) == 30 * settings.max_attempts + 30  # nothing enqueued twice
    assert len(healthy.requests) == 30  # the healthy endpoint got nothing twice
    # the same window again finds nothing left to replay
    again = await ok(await api.post(path, json={"since": "1h"}, headers=AUTH), 202)
    assert again["matched"] == 0 and again["state"] == "completed"
    # "all" includes the ones that succeeded
    everything = await ok(
        await api.post(path, json={"since": "1h", "status": "all", "dry_run": True}, headers=AUTH)
    )
    assert everything["matched"] == 30


async def test_a_large_replay_runs_in_batches(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    ep = await endpoint(api, r.url)
    items = [{**EVENT, "data": {"n": i}} for i in range(1000)]
    for start in range(0, 1000, 500):
        await api.post(
            "/v1/events/batch", json={"events": items[start : start + 500]}, headers=AUTH
        )
    # mark them all failed without delivering (as a long outage would leave them)
    async for key in redis.scan_iter("hg:dlv:*"):
        if not key.endswith(b":attempts"):
            await redis.hset(key, "status", "failed")
    await redis.delete("arq:queue", "hg:due")
    started = await ok(
        await api.post(f"/v1/endpoints/{ep['id']}/replay", json={"since": "1h"}, headers=AUTH), 202
    )
    assert started["matched"] == 1000 and started["state"] == "enqueuing"
    await start_worker(settings)

    async def completed() -> bool:
        progress = await get(api, f"/v1/replays/{started['replay_id']}")
        return bool(progress["state"] == "completed")

    await until(completed, timeout=60)
    assert len(r.requests) == 1000
    assert sorted(json.loads(q.body)["data"]["n"] for q in r.requests) == list(range(1000))


# ---- endpoint state ----------------------------------------------------------------------


async def test_disabled_endpoints_skip_events_that_replay_after_enabling(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    ep = await endpoint(api, r.url)
    path = f"/v1/endpoints/{ep['id']}"
    disabled = await ok(
        await api.post(path + "/disable", json={"reason": "maintenance"}, headers=AUTH)
    )
    assert disabled["disabled"] and disabled["disabled_reason"] == "maintenance"
    sent = [await send(api, i) for i in range(3)]
    await start_worker(settings)
    views = [await get(api, f"/v1/deliveries/{s['deliveries'][0]}") for s in sent]
    assert {v["status"] for v in views} == {"skipped"}
    refused = await api.post(path + "/replay", json={"since": "1h"}, headers=AUTH)
    assert refused.status == 409
    assert (await api.post(path + "/test", headers=AUTH)).status == 409
    enabled = await ok(await api.post(path + "/enable", headers=AUTH))
    assert not enabled["disabled"] and enabled["disabled_reason"] is None
    replay = await ok(await api.post(path + "/replay", json={"since": "1h"}, headers=AUTH), 202)
    assert replay["matched"] == 3
    await r.wait_for(3)
    assert sorted(json.loads(q.body)["data"]["n"] for q in r.requests) == [0, 1, 2]


async def test_disable_cancels_pending_deliveries(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver(Switch())
    ep = await endpoint(api, r.url)
    await start_worker(dataclasses.replace(settings, retry_schedule=(30.0,)))
    sent = await send(api)
    await r.wait_for(1)
    await ok(await api.post(f"/v1/endpoints/{ep['id']}/disable", headers=AUTH))
    [view] = await all_settled(api, sent["deliveries"])
    assert (view["status"], view["reason"]) == ("cancelled", "endpoint_disabled")


async def test_a_test_event_goes_to_that_endpoint_alone(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r, other = await receiver(), await receiver()
    ep = await endpoint(api, r.url, event_types=["credit.added"])
    await endpoint(api, other.url)
    await start_worker(settings)
    result = await ok(await api.post(f"/v1/endpoints/{ep['id']}/test", headers=AUTH), 202)
    await r.wait_for(1)
    got = r.requests[0]
    event = Webhook(ep["secret"]).verify(got.body, got.headers)
    assert event["type"] == "hookgate.test" and event["data"]["endpoint_id"] == ep["id"]
    assert got.headers["webhook-id"] == result["event_id"]
    [view] = await all_settled(api, [result["delivery_id"]])
    assert view["status"] == "succeeded"
    assert other.requests == []


async def test_operational_events_go_to_endpoints_that_ask_for_them(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    failing = await receiver(Switch())
    gone = await receiver(Switch(status=410))
    ops = await receiver()
    everything = await receiver()
    await endpoint(api, failing.url, event_types=["payment.*"])
    gone_ep = await endpoint(api, gone.url, event_types=["refund.*"])
    await endpoint(api, ops.url, event_types=["hookgate.*"])
    await endpoint(api, everything.url)  # no filter: billing events only
    await start_worker(settings)
    sent = await send(api)
    await send(api, type="refund.failed")
    await ops.wait_for(2)
    bodies = sorted(ops.bodies(), key=lambda b: str(b["type"]))
    assert [b["type"] for b in bodies] == [
        "hookgate.delivery.exhausted",
        "hookgate.endpoint.disabled",
    ]
    exhausted, disabled = bodies
    assert exhausted["data"]["event_id"] == sent["id"]
    assert exhausted["data"]["attempts"] == settings.max_attempts
    assert disabled["data"]["endpoint_id"] == gone_ep["id"]
    assert "410" in disabled["data"]["reason"]
    assert all(not str(b["type"]).startswith("hookgate.") for b in everything.bodies())


async def test_an_endpoint_failing_for_too_long_is_disabled(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver(Switch())
    ep = await endpoint(api, r.url)
    quick = dataclasses.replace(settings, disable_after=0.3, retry_schedule=(0.2, 0.2, 0.2))
    await start_worker(quick)
    sent = await send(api)

    async def disabled() -> bool:
        return bool((await get(api, f"/v1/endpoints/{ep['id']}"))["disabled"])

    await until(disabled)
    view = await get(api, f"/v1/endpoints/{ep['id']}")
    assert view["disabled_reason"] == "no successful delivery for 300ms"
    assert view["health"]["consecutive_failures"] >= 2
    [delivery] = await all_settled(api, sent["deliveries"])
    assert delivery["status"] == "cancelled"


async def test_endpoint_health(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    async def every_other(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=500 if n % 2 else 200)

    r = await receiver(every_other)
    ep = await endpoint(api, r.url)
    fresh = await get(api, f"/v1/endpoints/{ep['id']}")
    assert fresh["health"]["success_rate_24h"] is None and fresh["health"]["attempts_24h"] == 0
    await start_worker(settings)
    sent = [await send(api, i) for i in range(3)]
    await all_settled(api, [s["deliveries"][0] for s in sent])
    health = (await get(api, f"/v1/endpoints/{ep['id']}"))["health"]
    assert health["attempts_24h"] == len(r.requests)
    assert 0 < health["success_rate_24h"] < 1
    assert health["last_success_at"] is not None
    assert sum(h["ok"] + h["failed"] for h in health["hourly"]) == len(r.requests)


async def test_index_entries_past_the_retention_are_trimmed(
    api: Client, settings: Settings, redis: ArqRedis
) -> None:
    from gateway.core.catalog import load_catalog
    from gateway.store.store import Store

    ep = await endpoint(api, "http://127.0.0.1:9/h")
    await send(api)
    old = f"{1_000:013d}:dlv_01JD00000000000000000000001"
    for key in ("hg:idx:all", "hg:idx:bus:bus_1", f"hg:idx:ep:{ep['id']}"):
        await redis.zadd(key, {old: 0})
    store = Store(redis, settings, load_catalog())
    assert await store.trim_indices() == 3
    for key in ("hg:idx:all", "hg:idx:bus:bus_1", f"hg:idx:ep:{ep['id']}"):
        assert await redis.zcard(key) == 1


async def test_overlapping_replays_never_send_a_delivery_twice(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    from gateway.core.catalog import load_catalog
    from gateway.store.recovery import Recovery
    from gateway.store.store import Store

    r = await receiver()
    ep = await endpoint(api, r.url)
    sent = [await send(api, i) for i in range(5)]
    await redis.delete("arq:queue", "hg:due")
    for s in sent:
        await redis.hset(f"hg:dlv:{s['deliveries'][0]}", "status", "succeeded")
    path = f"/v1/endpoints/{ep['id']}/replay"
    body = {"since": "1h", "status": "all"}
    first = await ok(await api.post(path, json=body, headers=AUTH), 202)
    await redis.delete(*await redis.keys("hg:replaylock:*"))  # as if the lock had expired
    second = await ok(await api.post(path, json=body, headers=AUTH), 202)
    assert first["replay_id"] != second["replay_id"]
    assert first["matched"] == second["matched"] == 5
    await redis.delete("arq:queue")  # run the batches by hand, in the worst order
    recovery = Recovery(Store(redis, settings, load_catalog()))
    assert await recovery.run_replay_batch(first["replay_id"], 0) == "done"
    await start_worker(settings)
    await r.wait_for(5)
    await all_settled(api, [s["deliveries"][0] for s in sent])
    # the second replay matched them before the first re-sent them: it must not send again
    assert await recovery.run_replay_batch(second["replay_id"], 0) == "done"
    await asyncio.sleep(0.5)
    assert sorted(json.loads(q.body)["data"]["n"] for q in r.requests) == [0, 1, 2, 3, 4]
    progress = [await get(api, f"/v1/replays/{x['replay_id']}") for x in (first, second)]
    assert [(p["enqueued"], p["skipped"]) for p in progress] == [(5, 0), (0, 5)]
