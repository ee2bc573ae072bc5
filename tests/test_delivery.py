"""The worker against a real Redis and real receivers on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
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

EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"payment_id": "pay_1"}}


async def endpoint(api: Client, url: str, **over: Any) -> dict[str, Any]:
    resp = await api.post(
        "/v1/endpoints", json={"business_id": "bus_1", "url": url, **over}, headers=AUTH
    )
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def send(api: Client, event: dict[str, Any] = EVENT) -> dict[str, Any]:
    resp = await api.post("/v1/events", json=event, headers=AUTH)
    assert resp.status == 202, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def delivery(api: Client, delivery_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await (
        await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
    ).json()
    return body


async def settled(api: Client, delivery_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The delivery once it is no longer pending."""
    async with asyncio.timeout(timeout):
        while True:
            d = await delivery(api, delivery_id)
            if d["status"] != "pending":
                return d
            await asyncio.sleep(0.05)


def status(code: int, headers: dict[str, str] | None = None) -> Any:
    async def answer(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=code, headers=headers, text=f"answer {n}")

    return answer


async def test_a_delivery_is_signed_and_verifies(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    ep = await endpoint(api, r.url, headers={"X-Tenant": "t1"})
    await start_worker(settings)
    sent = await send(api)
    await r.wait_for(1)
    got = r.requests[0]
    assert Webhook(ep["secret"]).verify(got.body, got.headers) == json.loads(got.body)
    assert got.headers["webhook-id"] == sent["id"]
    assert got.headers["X-Tenant"] == "t1"
    assert got.headers["User-Agent"].startswith("hookgate/")
    stored = await api.get(f"/v1/events/{sent['id']}", headers=AUTH)
    assert json.loads(got.body) == (await stored.json())["payload"]
    d = await settled(api, sent["deliveries"][0])
    assert d["status"] == "succeeded" and d["attempt_count"] == 1
    assert d["attempts"][0]["status_code"] == 200
    assert d["attempts"][0]["response_body"] == '{"ok": true}'


async def test_failures_are_retried_on_the_schedule_with_the_same_webhook_id(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    async def flaky(request: web.Request, n: int) -> web.StreamResponse:
        return web.Response(status=500 if n <= 2 else 204)

    r = await receiver(flaky)
    await endpoint(api, r.url)
    await start_worker(settings)
    sent = await send(api)
    d = await settled(api, sent["deliveries"][0])
    assert d["status"] == "succeeded"
    assert [a["status_code"] for a in d["attempts"]] == [500, 500, 204]
    assert [a["outcome"] for a in d["attempts"]] == ["retry", "retry", "succeeded"]
    assert {req.headers["webhook-id"] for req in r.requests} == {sent["id"]}
    assert len({req.body for req in r.requests}) == 1
    # attempts are spaced by the schedule (0.2 s each, no jitter in tests)
    times = [a["at"] for a in d["attempts"]]
    assert times == sorted(times)


async def test_a_spent_schedule_ends_failed(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver(status(500))
    await endpoint(api, r.url)
    await start_worker(settings)
    sent = await send(api)
    d = await settled(api, sent["deliveries"][0])
    assert (d["status"], d["reason"], d["next_attempt_at"]) == ("failed", "retries_exhausted", None)
    assert len(d["attempts"]) == settings.max_attempts == 3
    assert d["attempts"][-1]["error"] == "HTTP 500"
    assert await redis.zcard("hg:due") == 0
    text = await (await api.get("/metrics")).text()
    assert 'hookgate_deliveries_total{cell="default",outcome="failed"} 1' in text
    assert 'hookgate_attempts_total{cell="default",result="failure"} 3' in text


async def test_redirects_are_failures_and_not_followed(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    target = await receiver()
    r = await receiver(status(302, {"Location": target.url}))
    await endpoint(api, r.url)
    await start_worker(settings)
    sent = await send(api)
    d = await settled(api, sent["deliveries"][0])
    assert d["status"] == "failed" and {a["status_code"] for a in d["attempts"]} == {302}
    assert target.requests == []


async def test_410_disables_the_endpoint_and_cancels_its_pending_deliveries(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver(status(410))
    ep = await endpoint(api, r.url, max_in_flight=1)
    sent = [await send(api) for _ in range(3)]
    await start_worker(settings)
    results = [await settled(api, s["deliveries"][0]) for s in sent]
    assert {d["status"] for d in results} == {"cancelled"}
    assert {d["reason"] for d in results} == {"endpoint_gone"}
    got = await (await api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH)).json()
    assert got["disabled"] is True and "410" in got["disabled_reason"]
    assert len(r.requests) == 1  # the others were cancelled before their attempt
    later = await send(api)
    assert (await delivery(api, later["deliveries"][0]))["status"] == "skipped"


async def test_retry_after_is_honoured(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    async def busy_once(request: web.Request, n: int) -> web.StreamResponse:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=200)

    r = await receiver(busy_once)
    await endpoint(api, r.url)
    # step 5 s: without Retry-After the second attempt would come 5 s later
    await start_worker(dataclasses.replace(settings, retry_schedule=(5.0, 5.0)))
    sent = await send(api)
    started = time.monotonic()
    d = await settled(api, sent["deliveries"][0], timeout=8)
    elapsed = time.monotonic() - started
    assert d["status"] == "succeeded" and len(d["attempts"]) == 2
    assert 0.9 <= elapsed < 4.0


async def test_timeouts_and_refused_connections_are_recorded_and_retried(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    from gateway.cli.redis_server import free_port

    async def hang(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response()

    slow = await receiver(hang)
    await endpoint(api, slow.url)
    await endpoint(api, f"http://127.0.0.1:{free_port()}/closed")
    fast = dataclasses.replace(settings, delivery_timeout=0.3, retry_schedule=(0.1,))
    await start_worker(fast)
    sent = await send(api)
    results = [await settled(api, d) for d in sent["deliveries"]]
    errors = sorted(a["error"] for d in results for a in d["attempts"])
    assert all(d["status"] == "failed" for d in results)
    assert sum(e.startswith("connection failed") for e in errors) == 2
    assert sum(e == "timeout after 0.3s" for e in errors) == 2


async def test_a_dead_endpoint_does_not_hold_back_a_healthy_one(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    async def hang(request: web.Request, n: int) -> web.StreamResponse:
        await asyncio.sleep(10)
        return web.Response()

    dead = await receiver(hang)
    healthy = await receiver()
    await endpoint(api, dead.url, max_in_flight=2)
    await endpoint(api, healthy.url)
    # 4 worker slots: without the cap, 20 hanging attempts would take them all
    await start_worker(dataclasses.replace(settings, worker_concurrency=4, delivery_timeout=5.0))
    for _ in range(20):
        await send(api)
    await healthy.wait_for(20, timeout=4.0)  # well before the dead endpoint's first timeout
    assert len(dead.requests) <= 2


async def test_during_rotation_both_secrets_sign(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    ep = await endpoint(api, r.url)
    rotated = await (await api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", headers=AUTH)).json()
    await start_worker(settings)
    await send(api)
    await r.wait_for(1)
    got = r.requests[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (ep["secret"], rotated["secret"]):
        Webhook(secret).verify(got.body, got.headers)


async def test_an_expired_old_secret_stops_signing(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    ep = await endpoint(api, r.url)
    rotated = await (await api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", headers=AUTH)).json()
    secrets = json.loads(await redis.hget(f"hg:ep:{ep['id']}", "secrets"))
    secrets[1]["expires_at"] = int(time.time() * 1000) - 1
    await redis.hset(f"hg:ep:{ep['id']}", "secrets", json.dumps(secrets))
    await start_worker(settings)
    await send(api)
    await r.wait_for(1)
    got = r.requests[0]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    Webhook(rotated["secret"]).verify(got.body, got.headers)


async def test_the_sweeper_requeues_a_delivery_whose_job_vanished(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    await endpoint(api, r.url)
    sent = await send(api)
    # what a crash between storing and enqueuing leaves: a pending delivery with no job
    await redis.delete(*await redis.keys("arq:job:*"))
    await redis.delete("arq:queue")
    quick = dataclasses.replace(settings, delivery_timeout=0.1)  # sweeper grace = timeout + 20 s
    await redis.zadd("hg:due", {sent["deliveries"][0]: 1})  # overdue since 1970
    await start_worker(quick)
    await r.wait_for(1, timeout=5)
    d = await settled(api, sent["deliveries"][0])
    assert d["status"] == "succeeded"


async def test_a_stale_job_does_nothing(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    await endpoint(api, r.url)
    sent = await send(api)
    dlv = sent["deliveries"][0]
    await start_worker(settings)
    await settled(api, dlv)
    # a duplicate of an old job (say, re-run after a crash) finds the delivery done
    job = '{"t":null,"f":"deliver","a":["' + dlv + '"],"k":{},"et":1}'
    await redis.set(f"arq:job:attempt:{dlv}:1.99", job)
    await redis.zadd("arq:queue", {f"attempt:{dlv}:1.99": 1})
    await asyncio.sleep(0.5)
    assert len(r.requests) == 1
    assert (await delivery(api, dlv))["attempt_count"] == 1


async def test_every_event_reaches_every_endpoint_with_two_workers(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    receivers = [await receiver() for _ in range(3)]
    for r in receivers:
        await endpoint(api, r.url)
    await start_worker(settings)
    await start_worker(settings)
    items = [{**EVENT, "data": {"n": i}} for i in range(100)]
    resp = await api.post("/v1/events/batch", json={"events": items}, headers=AUTH)
    assert (await resp.json())["accepted"] == 100
    for r in receivers:
        await r.wait_for(100)
        assert sorted(b["data"]["n"] for b in r.bodies()) == list(range(100))


async def test_deliveries_verify_with_hookgate_verifier(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    from hookgate_verifier import InvalidSignature, Verifier

    r = await receiver()
    ep = await endpoint(api, r.url)
    await start_worker(settings)
    sent = await send(api)
    await r.wait_for(1)
    first = r.requests[0]
    event = Verifier(ep["secret"]).verify(first.body, first.headers)
    assert event["type"] == "payment.succeeded" and first.headers["webhook-id"] == sent["id"]
    # during a rotation a receiver holding either secret accepts the delivery
    rotated = await (await api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", headers=AUTH)).json()
    await send(api)
    await r.wait_for(2)
    second = r.requests[1]
    for secret in (ep["secret"], rotated["secret"]):
        assert Verifier(secret).verify(second.body, second.headers)["type"] == "payment.succeeded"
    with pytest.raises(InvalidSignature):
        Verifier("whsec_" + "A" * 43).verify(second.body, second.headers)


async def test_metrics_add_up_when_many_attempts_are_recorded_together(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    """Counters are summed over each script call (a batch of 200 events, a group of attempts
    finished together) and written once: the totals must still be exact."""
    r = await receiver()
    await endpoint(api, r.url)
    await endpoint(api, r.url + "?second")  # two deliveries per event
    events = [{**EVENT, "data": {"n": i}} for i in range(200)]
    resp = await api.post("/v1/events/batch", json={"events": events}, headers=AUTH)
    assert resp.status == 202, await resp.text()
    dlvs = [d for item in (await resp.json())["results"] for d in item["deliveries"]]
    assert len(dlvs) == 400
    await start_worker(settings)
    for d in dlvs:
        assert (await settled(api, d))["status"] == "succeeded"
    text = await (await api.get("/metrics")).text()
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert values['hookgate_events_ingested_total{cell="default"}'] == "200"
    assert values['hookgate_deliveries_total{cell="default",outcome="succeeded"}'] == "400"
    assert values['hookgate_attempts_total{cell="default",result="success"}'] == "400"
    assert values['hookgate_attempt_latency_seconds_count{cell="default"}'] == "400"
    assert values['hookgate_attempt_latency_seconds_bucket{cell="default",le="+Inf"}'] == "400"
    assert 0 < float(values['hookgate_attempt_latency_seconds_sum{cell="default"}']) < 400 * 5
    assert len(r.requests) == 400
