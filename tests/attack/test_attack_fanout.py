"""Unbounded fan-out per business (issue 12, defect 3): 600 endpoints were created from one
merchant's portal session in 1.4 s, after which one event made 600 deliveries and a batch of
100 made 60,000. Replayed against real ``hookgate serve`` processes: floods of endpoint
creates from the API (two gateways at once) and from a portal session never pass the limit,
and a big batch never creates more deliveries than one request may."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from arq.connections import ArqRedis
from support import AUTH

from gateway.store import keys

Serve = Callable[..., Any]  # the attack suite's ``serve`` fixture (conftest.Served each)

LIMIT = 5
BUDGET = 20
URL = "http://127.0.0.1:9/hook"
SETTINGS = {
    "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS": str(LIMIT),
    "HOOKGATE_MAX_DELIVERIES_PER_REQUEST": str(BUDGET),
    "HOOKGATE_ALLOW_PRIVATE_TARGETS": "true",
    "HOOKGATE_HTTPS_ONLY": "false",
}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def create(http: aiohttp.ClientSession, base: str, business: str) -> tuple[int, Any]:
    body = {"business_id": business, "url": URL}
    async with http.post(base + "/v1/endpoints", json=body) as resp:
        return resp.status, await resp.json()


async def endpoints_of(http: aiohttp.ClientSession, base: str, business: str) -> list[str]:
    async with http.get(base + "/v1/endpoints", params={"business_id": business}) as resp:
        assert resp.status == 200
        return [e["id"] for e in (await resp.json())["data"]]


async def test_a_create_flood_through_two_gateways_never_passes_the_limit(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    gateways = [serve(**SETTINGS), serve(**SETTINGS)]
    answers = await asyncio.gather(
        *(create(http, gateways[n % 2].base, "bus_flood") for n in range(200))
    )
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] * LIMIT + [409] * (200 - LIMIT)
    refused = [body["error"] for status, body in answers if status == 409]
    assert {e["code"] for e in refused} == {"endpoint_limit"}
    assert all(e["details"] == {"limit": LIMIT} for e in refused)
    assert len(await endpoints_of(http, gateways[0].base, "bus_flood")) == LIMIT
    assert await redis.scard(keys.business_endpoints("bus_flood")) == LIMIT
    assert await redis.scard(keys.ENDPOINTS) == LIMIT
    # another business still gets its own
    assert (await create(http, gateways[1].base, "bus_other"))[0] == 201


async def test_a_portal_session_flood_never_passes_the_limit(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    async with http.post(base + "/v1/businesses/bus_portal/portal-links", json={}) as resp:
        assert resp.status == 201, await resp.text()
        link = (await resp.json())["url"]
    path = link[link.index("/portal/") :]
    # a browser of its own: cookies of 127.0.0.1 are kept only by an unsafe jar
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(path) as resp:
            token = CSRF.search(await resp.text())
        assert token is not None
        async with browser.post(path, data={"csrf": token[1]}, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        async with browser.get("/portal/endpoints") as resp:
            csrf = CSRF.search(await resp.text())
        assert csrf is not None

        async def submit() -> int:
            form = {"csrf": csrf[1], "url": URL, "business_id": "bus_else"}
            async with browser.post("/portal/endpoints", data=form) as resp:
                await resp.read()
                return resp.status

        statuses = sorted(await asyncio.gather(*(submit() for _ in range(120))))
    assert statuses == [200] * LIMIT + [409] * (120 - LIMIT)
    assert len(await endpoints_of(http, base, "bus_portal")) == LIMIT
    assert await redis.scard(keys.business_endpoints("bus_else")) == 0
    assert await redis.scard(keys.ENDPOINTS) == LIMIT


async def test_a_big_batch_creates_no_more_deliveries_than_the_budget(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    for _ in range(LIMIT):
        assert (await create(http, base, "bus_fan"))[0] == 201
    events = [
        {"business_id": "bus_fan", "type": "payment.succeeded", "data": {"n": n}}
        for n in range(1000)
    ]
    async with http.post(base + "/v1/events/batch", json={"events": events}) as resp:
        assert resp.status == 202, await resp.text()
        answer = await resp.json()
    fit = BUDGET // LIMIT
    assert (answer["accepted"], answer["rejected"]) == (fit, 1000 - fit)
    refused = answer["results"][fit:]
    assert [r["index"] for r in refused] == list(range(fit, 1000))
    assert {(r["status"], r["error"]["code"]) for r in refused} == {(422, "delivery_limit")}
    # count what was stored, through the API and in Redis
    async with http.get(
        base + "/v1/deliveries", params={"business_id": "bus_fan", "limit": "500"}
    ) as resp:
        listed = (await resp.json())["data"]
    assert len(listed) == BUDGET
    assert await redis.zcard(keys.INDEX_ALL) == BUDGET
    bodies = [k async for k in redis.scan_iter(match=keys.event_body("*"))]
    assert len(bodies) == fit
    # a batch of many businesses with no endpoint costs nothing and is stored whole
    spread = [{**e, "business_id": f"bus_n{n}"} for n, e in enumerate(events)]
    async with http.post(base + "/v1/events/batch", json={"events": spread}) as resp:
        assert (await resp.json())["accepted"] == 1000
    assert await redis.zcard(keys.INDEX_ALL) == BUDGET


async def test_one_event_fans_out_to_no_more_than_the_limit(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    await asyncio.gather(*(create(http, base, "bus_one") for _ in range(50)))
    event = {"business_id": "bus_one", "type": "payment.succeeded", "data": {}}
    async with http.post(base + "/v1/events", json=event, headers=AUTH) as resp:
        assert resp.status == 202
        assert len((await resp.json())["deliveries"]) == LIMIT
