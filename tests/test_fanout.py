"""Fan-out is bounded: endpoints per business (on every path that creates one, concurrent
creates included), deliveries one batch may create, and attempts one endpoint holds open
(a larger cap stored before the bound is clamped by the worker's claim)."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from conftest import Receiver
from support import AUTH, run_cli, wait_healthy
from test_portal import csrf_of, message_of

from gateway.core.catalog import load_catalog
from gateway.core.errors import Conflict
from gateway.core.model import EndpointFields, EventIn, Ingested, PreparedEvent
from gateway.core.settings import Settings
from gateway.store import keys, queue
from gateway.store.store import Store
from gateway.web.app import create_app

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
Start = Callable[[Settings], Awaitable[None]]

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
async def client(settings: Settings, redis: ArqRedis) -> AsyncIterator[MakeClient]:
    """Factory: a gateway (aiohttp test client) with ``settings`` changed by ``over``."""
    made: list[Client] = []

    async def make(**over: Any) -> Client:
        app = create_app(dataclasses.replace(settings, **over), redis)
        c = TestClient(TestServer(app))
        await c.start_server()
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


def store_with(redis: ArqRedis, settings: Settings, **over: Any) -> Store:
    return Store(redis, dataclasses.replace(settings, **over), load_catalog())


async def create(api: Client, business: str = "bus_a", **body: Any) -> Any:
    return await api.post(
        "/v1/endpoints", json={"business_id": business, "url": URL, **body}, headers=AUTH
    )


async def created(api: Client, business: str = "bus_a", **body: Any) -> dict[str, Any]:
    resp = await create(api, business, **body)
    assert resp.status == 201, await resp.text()
    view: dict[str, Any] = await resp.json()
    return view


async def endpoint_ids(api: Client, business: str) -> list[str]:
    resp = await api.get("/v1/endpoints", params={"business_id": business}, headers=AUTH)
    return [e["id"] for e in (await resp.json())["data"]]


async def endpoint_hashes(redis: ArqRedis) -> int:
    """Endpoint hashes in Redis (``hg:ep:{id}`` exactly, not its stats or in-flight keys)."""
    found = [k async for k in redis.scan_iter(match=keys.endpoint("*"))]
    return sum(1 for k in found if k.count(b":") == 2)


def assert_limit_error(body: dict[str, Any], limit: int) -> None:
    error = body["error"]
    assert error["code"] == "endpoint_limit"
    assert error["details"] == {"limit": limit}
    assert f"at most {limit} endpoints" in error["message"]
    assert "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS" in error["message"]


# ---- the setting -------------------------------------------------------------------------


def test_the_bounds_default_and_are_read_from_the_environment() -> None:
    s = Settings.from_env({})
    assert (s.max_endpoints_per_business, s.max_deliveries_per_request, s.max_in_flight) == (
        50,
        10_000,
        100,
    )
    s = Settings.from_env(
        {
            "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS": "7",
            "HOOKGATE_MAX_DELIVERIES_PER_REQUEST": "70",
            "HOOKGATE_MAX_IN_FLIGHT": "1000",
        }
    )
    assert (s.max_endpoints_per_business, s.max_deliveries_per_request, s.max_in_flight) == (
        7,
        70,
        1000,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS", "0"),
        ("HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS", "10001"),
        ("HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS", "many"),
        ("HOOKGATE_MAX_DELIVERIES_PER_REQUEST", "0"),
        ("HOOKGATE_MAX_DELIVERIES_PER_REQUEST", "2.5"),
        ("HOOKGATE_MAX_IN_FLIGHT", "0"),
        ("HOOKGATE_MAX_IN_FLIGHT", "1001"),
    ],
)
def test_a_bad_bound_stops_serve_with_exit_2_naming_it(
    env: dict[str, str], name: str, value: str
) -> None:
    result = run_cli("serve", env={**env, name: value})
    assert result.returncode == 2, result.stderr
    assert name in result.stderr and result.stderr.count("\n") == 1


# ---- endpoints per business --------------------------------------------------------------


async def test_a_business_gets_at_most_its_limit_and_a_delete_frees_a_slot(
    client: MakeClient,
) -> None:
    api = await client(max_endpoints_per_business=3)
    made = [await created(api) for _ in range(3)]
    resp = await create(api)
    assert resp.status == 409
    assert_limit_error(await resp.json(), 3)
    assert sorted(await endpoint_ids(api, "bus_a")) == sorted(e["id"] for e in made)
    # another business is unaffected
    await created(api, "bus_b")
    # a delete frees a slot, and only one
    resp = await api.delete(f"/v1/endpoints/{made[0]['id']}", headers=AUTH)
    assert resp.status == 204
    await created(api)
    assert (await create(api)).status == 409
    assert len(await endpoint_ids(api, "bus_a")) == 3


async def test_concurrent_creates_never_pass_the_limit(redis: ArqRedis, settings: Settings) -> None:
    store = store_with(redis, settings, max_endpoints_per_business=5)
    fields = EndpointFields(business_id="bus_race", url=URL)
    results = await asyncio.gather(
        *(store.create_endpoint(fields) for _ in range(20)), return_exceptions=True
    )
    stored = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert (len(stored), len(refused)) == (5, 15), results
    assert {r.code for r in refused} == {"endpoint_limit"}
    assert await redis.scard(keys.business_endpoints("bus_race")) == 5
    assert await redis.scard(keys.ENDPOINTS) == 5
    # a refused create writes nothing: no endpoint hash without its set entries
    assert await endpoint_hashes(redis) == 5


async def test_concurrent_api_creates_never_pass_the_limit(
    client: MakeClient, redis: ArqRedis
) -> None:
    api = await client(max_endpoints_per_business=5)
    answers = await asyncio.gather(*(create(api, "bus_race") for _ in range(30)))
    statuses = sorted(r.status for r in answers)
    assert statuses == [201] * 5 + [409] * 25
    assert len(await endpoint_ids(api, "bus_race")) == 5
    assert await endpoint_hashes(redis) == 5


async def test_a_business_above_a_new_limit_keeps_its_endpoints_but_adds_none(
    client: MakeClient, redis: ArqRedis, settings: Settings
) -> None:
    before = store_with(redis, settings, max_endpoints_per_business=10)
    for _ in range(4):
        await before.create_endpoint(EndpointFields(business_id="bus_old", url=URL))
    api = await client(max_endpoints_per_business=2)
    assert len(await endpoint_ids(api, "bus_old")) == 4
    resp = await api.post(
        "/v1/events",
        json={"business_id": "bus_old", "type": "payment.succeeded", "data": {}},
        headers=AUTH,
    )
    assert resp.status == 202 and len((await resp.json())["deliveries"]) == 4
    assert (await create(api, "bus_old")).status == 409
    # a delete leaves it at 3, still over 2: no room yet
    first = (await endpoint_ids(api, "bus_old"))[0]
    assert (await api.delete(f"/v1/endpoints/{first}", headers=AUTH)).status == 204
    resp = await create(api, "bus_old")
    assert resp.status == 409
    assert_limit_error(await resp.json(), 2)
    assert len(await endpoint_ids(api, "bus_old")) == 3


# ---- the CLI -----------------------------------------------------------------------------


async def test_the_cli_says_why_in_one_line_and_exits_2(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> None:
    env = {**env, "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS": "1"}
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    await wait_healthy(base, spawn("serve", env))
    cli = {**env, "HOOKGATE_URL": base}
    args = ("endpoints", "create", URL, "--business", "bus_cli")
    first = await asyncio.to_thread(run_cli, *args, env=cli)
    assert first.returncode == 0, first.stderr
    second = await asyncio.to_thread(run_cli, *args, env=cli)
    assert second.returncode == 2
    assert second.stdout == ""
    lines = second.stderr.splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("hookgate: a business may have at most 1 endpoints")
    assert "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS" in lines[0]
    assert lines[0].endswith("(endpoint_limit)")
    assert await redis.scard(keys.business_endpoints("bus_cli")) == 1
    # a cap above the gateway's bound: the same, with the field named
    over = await asyncio.to_thread(
        run_cli, *args[:3], "--business", "bus_other", "--max-in-flight", "101", env=cli
    )
    assert over.returncode == 2
    assert over.stderr.strip() == (
        "hookgate: max_in_flight: must be at most 100 (HOOKGATE_MAX_IN_FLIGHT) (validation_failed)"
    )
    assert await redis.scard(keys.business_endpoints("bus_other")) == 0


# ---- the portal --------------------------------------------------------------------------


async def merchant_session(api: Client, business: str) -> tuple[Client, str]:
    """A browser signed in to the portal through a link for ``business``, and its CSRF token."""
    resp = await api.post(f"/v1/businesses/{business}/portal-links", json={}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    url = (await resp.json())["url"]
    browser = TestClient(TestServer(api.app))
    await browser.start_server()
    path = url[url.index("/portal/") :]
    page = await (await browser.get(path)).text()
    resp = await browser.post(path, data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await (await browser.get("/portal/endpoints")).text()
    return browser, csrf_of(page)


async def test_the_portal_form_shows_the_limit_and_creates_nothing(
    client: MakeClient, redis: ArqRedis
) -> None:
    api = await client(max_endpoints_per_business=2)
    browser, csrf = await merchant_session(api, "bus_p")
    try:
        form = {"csrf": csrf, "url": URL, "description": "third one"}
        for _ in range(2):
            assert (await browser.post("/portal/endpoints", data=form)).status == 200
        resp = await browser.post("/portal/endpoints", data=form)
        page = await resp.text()
        assert resp.status == 409, page[:2000]
        message = message_of(page)
        assert "at most 2 endpoints" in message
        assert "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS" in message
        # the form comes back with what was typed
        assert f'value="{html.escape(URL)}"' in page and "third one" in page
        assert len(await endpoint_ids(api, "bus_p")) == 2
        assert await endpoint_hashes(redis) == 2
        # a flood from the same session passes it no more
        flood = await asyncio.gather(
            *(browser.post("/portal/endpoints", data=form) for _ in range(10))
        )
        assert {r.status for r in flood} == {409}
        assert len(await endpoint_ids(api, "bus_p")) == 2
        # a cap above the bound is refused on the form as well
        resp = await browser.post("/portal/endpoints", data={**form, "max_in_flight": "101"})
        assert resp.status == 422
        assert message_of(await resp.text()) == (
            "max_in_flight: must be at most 100 (HOOKGATE_MAX_IN_FLIGHT)"
        )
    finally:
        await browser.close()


# ---- deliveries per request --------------------------------------------------------------


def batch_of(*businesses: str) -> dict[str, Any]:
    return {
        "events": [
            {"business_id": b, "type": "payment.succeeded", "data": {"n": n}}
            for n, b in enumerate(businesses)
        ]
    }


async def stored_events(redis: ArqRedis) -> int:
    return len([k async for k in redis.scan_iter(match=keys.event_body("*"))])


async def test_a_batch_stores_items_within_the_delivery_budget_and_refuses_the_rest(
    client: MakeClient, redis: ArqRedis
) -> None:
    api = await client(max_deliveries_per_request=10)
    for _ in range(3):
        await created(api, "bus_big")
    await created(api, "bus_small")
    # 3 + 3 + 1 + 3 = 10 deliveries fit; the fifth item would make 13; the sixth, of a
    # business with no endpoint, comes after the cut and is refused too.
    body = batch_of("bus_big", "bus_big", "bus_small", "bus_big", "bus_big", "bus_none")
    resp = await api.post("/v1/events/batch", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    answer = await resp.json()
    assert (answer["accepted"], answer["rejected"]) == (4, 2)
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [len(r["deliveries"]) for r in results[:4]] == [3, 3, 1, 3]
    for r in results[4:]:
        assert r["status"] == 422
        error = r["error"]
        assert error["code"] == "delivery_limit"
        assert error["details"] == {"limit": 10}
        assert "10 deliveries" in error["message"] and "split the batch" in error["message"]
        assert "HOOKGATE_MAX_DELIVERIES_PER_REQUEST" in error["message"]
        assert "id" not in r and "deliveries" not in r
    # nothing of the refused items is stored
    assert await stored_events(redis) == 4
    assert await redis.zcard(keys.INDEX_ALL) == 10
    assert await redis.zcard(keys.index_business("bus_none")) == 0
    assert await redis.zcard(queue.QUEUE) == 10


async def test_a_batch_whose_first_item_passes_the_budget_stores_nothing(
    client: MakeClient, redis: ArqRedis
) -> None:
    api = await client(max_deliveries_per_request=2)
    for _ in range(3):
        await created(api, "bus_big")
    resp = await api.post("/v1/events/batch", json=batch_of("bus_big", "bus_big"), headers=AUTH)
    answer = await resp.json()
    assert (answer["accepted"], answer["rejected"]) == (0, 2)
    assert {r["error"]["code"] for r in answer["results"]} == {"delivery_limit"}
    assert await stored_events(redis) == 0 and await redis.zcard(keys.INDEX_ALL) == 0


async def test_a_single_event_is_bounded_by_the_endpoint_limit_not_the_budget(
    client: MakeClient,
) -> None:
    api = await client(max_deliveries_per_request=2)
    for _ in range(3):
        await created(api, "bus_big")
    event = {"business_id": "bus_big", "type": "payment.succeeded", "data": {}}
    resp = await api.post("/v1/events", json=event, headers=AUTH)
    assert resp.status == 202 and len((await resp.json())["deliveries"]) == 3
    resp = await api.post("/v1/events/batch", json={"events": [event]}, headers=AUTH)
    assert len((await resp.json())["results"][0]["deliveries"]) == 3


async def test_a_batch_within_the_budget_is_stored_whole(client: MakeClient) -> None:
    api = await client(max_deliveries_per_request=6)
    for _ in range(2):
        await created(api, "bus_a")
    resp = await api.post("/v1/events/batch", json=batch_of(*["bus_a"] * 3), headers=AUTH)
    answer = await resp.json()
    assert (answer["accepted"], answer["rejected"]) == (3, 0)


# ---- attempts in flight per endpoint -----------------------------------------------------


async def test_max_in_flight_above_the_bound_is_refused_on_create_and_patch(
    client: MakeClient,
) -> None:
    api = await client()  # the default bound: 100
    resp = await create(api, max_in_flight=101)
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"field": "max_in_flight"}
    assert error["message"] == "max_in_flight: must be at most 100 (HOOKGATE_MAX_IN_FLIGHT)"
    assert await endpoint_ids(api, "bus_a") == []
    made = await created(api, max_in_flight=100)
    assert made["max_in_flight"] == 100
    resp = await api.patch(f"/v1/endpoints/{made['id']}", json={"max_in_flight": 101}, headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"] == {"field": "max_in_flight"}
    view = await (await api.get(f"/v1/endpoints/{made['id']}", headers=AUTH)).json()
    assert view["max_in_flight"] == 100
    # a gateway with a higher bound takes more, up to the schema's ceiling
    wide = await client(max_in_flight=300)
    assert (await created(wide, max_in_flight=300))["max_in_flight"] == 300


async def test_an_endpoint_without_a_cap_gets_the_default_within_the_bound(
    client: MakeClient,
) -> None:
    assert (await created(await client()))["max_in_flight"] == 10
    assert (await created(await client(max_in_flight=4)))["max_in_flight"] == 4


async def ingest(store: Store, count: int) -> list[str]:
    """``count`` events of bus_legacy, straight into the store; returns their deliveries."""
    events = [
        PreparedEvent(
            EventIn("bus_legacy", "payment.succeeded", "2024-01-01T00:00:00Z", {"n": n}), None, ""
        )
        for n in range(count)
    ]
    found: list[str] = []
    for result in await store.ingest(events):
        assert isinstance(result, Ingested)
        found += result.deliveries
    return found


async def legacy_endpoint(redis: ArqRedis, settings: Settings, cap: int, url: str) -> str:
    """An endpoint stored before the bound, with a cap above it."""
    store = store_with(redis, settings, max_in_flight=1000)
    view, _ = await store.create_endpoint(
        EndpointFields(business_id="bus_legacy", url=url, max_in_flight=cap)
    )
    return str(view["id"])


async def test_the_claim_clamps_a_stored_cap_above_the_bound(
    redis: ArqRedis, settings: Settings
) -> None:
    endpoint_id = await legacy_endpoint(redis, settings, 500, URL)
    store = store_with(redis, settings, max_in_flight=3)
    await ingest(store, 8)
    jobs = await redis.zrange(queue.QUEUE, 0, -1)
    assert len(jobs) == 8
    taken = await store.take_and_claim(jobs, wanted=8, in_progress_ms=60_000, busy_defer_ms=1000)
    claims = [what for _, what in taken if not isinstance(what, int)]
    assert len(claims) == 3
    assert await redis.zcard(keys.endpoint_inflight(endpoint_id)) == 3
    # the endpoint's own figure is left as it was stored
    assert (await store.get_endpoint(endpoint_id))["max_in_flight"] == 500


async def test_a_worker_holds_no_more_attempts_open_than_the_bound(
    redis: ArqRedis,
    settings: Settings,
    receiver: MakeReceiver,
    start_worker: Start,
) -> None:
    release = asyncio.Event()
    open_now = 0
    most = 0

    async def hold(request: web.Request, n: int) -> web.StreamResponse:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            await release.wait()
        finally:
            open_now -= 1
        return web.json_response({"ok": True})

    target = await receiver(hold)
    await legacy_endpoint(redis, settings, 50, target.url)
    bounded = dataclasses.replace(settings, max_in_flight=2, delivery_timeout=10.0)
    delivery_ids = await ingest(store_with(redis, bounded), 10)
    await start_worker(bounded)

    async def redeferred() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hget(keys.delivery(delivery_id), "redefers")
            counts = await pipe.execute()
        return sum(1 for c in counts if int(c or 0) > 0)

    # Every delivery is either open at the receiver or was turned away as busy: without the
    # clamp all ten would be open here.
    async with asyncio.timeout(20):
        while len(target.requests) + await redeferred() < 10:
            await asyncio.sleep(0.02)
    assert most == 2 and len(target.requests) == 2
    release.set()
    async with asyncio.timeout(30):
        await target.wait_for(10, timeout=30)
    assert most == 2
