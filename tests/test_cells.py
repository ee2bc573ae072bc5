"""Cells in one process: two real redis-servers of the tests' own as cells c1 and c2, the
gateway app over both, in-process workers per cell. Placement, ids, moves, merged listings,
metrics, readiness, and bad input (the processes and outages are tests/test_cells_e2e.py's)."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from support import AUTH, own_redis, run_cli

from gateway.core import cells as core_cells
from gateway.core.cells import CellSpec, cell_of_id, parse_cells, rendezvous
from gateway.core.errors import ConfigError
from gateway.core.settings import Settings
from gateway.store.recovery import EventFilter
from gateway.web.app import create_app
from gateway.web.context import RECOVERY
from worker.main import build_worker, stop_worker

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
def second_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with own_redis(tmp_path_factory.mktemp("redis-c2")) as port:
        yield port


@dataclasses.dataclass
class TwoCells:
    settings: Settings
    c1: ArqRedis
    c2: ArqRedis
    api: Client

    def pool(self, cell: str) -> ArqRedis:
        return self.c1 if cell == "c1" else self.c2


@pytest.fixture
async def two(
    settings: Settings, redis: ArqRedis, redis_url: str, second_redis: int
) -> AsyncIterator[TwoCells]:
    url2 = f"redis://127.0.0.1:{second_redis}/0"
    c2 = ArqRedis.from_url(url2)
    await c2.flushall()
    cells = (CellSpec("c1", redis_url), CellSpec("c2", url2))
    two_settings = dataclasses.replace(settings, cells=cells)
    api = TestClient(TestServer(create_app(two_settings, {"c1": redis, "c2": c2})))
    await api.start_server()
    yield TwoCells(two_settings, redis, c2, api)
    await api.close()
    await c2.aclose()


@pytest.fixture
async def workers() -> AsyncIterator[Callable[[Settings, str], Awaitable[None]]]:
    running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(settings: Settings, cell: str) -> None:
        [spec] = [s for s in settings.cell_specs if s.name == cell]
        own = settings.for_cell(spec)
        worker = build_worker(own, ArqRedis.from_url(own.redis_url), cell=cell)
        running.append((worker, asyncio.create_task(worker.async_run())))

    yield start
    for worker, task in running:
        worker.handle_sig(signal.SIGTERM)
        await stop_worker(worker, task)


def businesses_in(cell: str, n: int) -> list[str]:
    """``n`` business ids rendezvous hashing places in ``cell`` (of c1, c2)."""
    found = []
    i = 0
    while len(found) < n:
        business = f"bus_{i}"
        if rendezvous(business, ("c1", "c2")) == cell:
            found.append(business)
        i += 1
    return found


async def make_endpoint(api: Client, business: str, url: str, **extra: Any) -> dict[str, Any]:
    resp = await api.post(
        "/v1/endpoints",
        json={"business_id": business, "url": url, "event_types": ["payment.*"], **extra},
        headers=AUTH,
    )
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def send(api: Client, business: str, n: int = 0, key: str | None = None) -> dict[str, Any]:
    headers = {**AUTH, **({"Idempotency-Key": key} if key else {})}
    resp = await api.post(
        "/v1/events",
        json={"business_id": business, "type": "payment.succeeded", "data": {"n": n}},
        headers=headers,
    )
    assert resp.status in (200, 202), await resp.text()
    return dict(await resp.json())


async def settle(api: Client, delivery_ids: list[str], status: str) -> None:
    """Waits (at most 15 s) until every delivery has ``status``."""
    async with asyncio.timeout(15):
        while True:
            states = [
                (await (await api.get(f"/v1/deliveries/{d}", headers=AUTH)).json())["status"]
                for d in delivery_ids
            ]
            if states == [status] * len(delivery_ids):
                return
            await asyncio.sleep(0.1)


# ---- pure parts ---------------------------------------------------------------------------


def test_rendezvous_moves_only_what_hashes_to_a_new_cell() -> None:
    ids = [f"bus_{i}" for i in range(2000)]
    before = {b: rendezvous(b, ("c1", "c2")) for b in ids}
    after = {b: rendezvous(b, ("c1", "c2", "c3")) for b in ids}
    moved = [b for b in ids if before[b] != after[b]]
    assert moved and all(after[b] == "c3" for b in moved)
    # about a third moves, to the new cell only; each old cell keeps about half of the rest
    assert 500 < len(moved) < 830
    assert 700 < sum(1 for b in ids if before[b] == "c1") < 1300
    assert rendezvous("bus_x", ("only",)) == "only"


def test_ids_carry_their_cell() -> None:
    assert cell_of_id("evt_01JD0000000000000000000000") == "default"
    assert cell_of_id("evt_01JD0000000000000000000000.c2") == "c2"
    assert cell_of_id("dlv_01JD0000000000000000000000a1.eu-west") == "eu-west"
    assert core_cells.id_suffix("default") == "" and core_cells.id_suffix("c2") == ".c2"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no cell is listed"),
        ("c1=redis://h:7001/0,c1=redis://h:7002/0", "'c1' is listed twice"),
        ("C1=redis://h:7001/0", "cell name 'C1' must be"),
        ("c1=http://h:7001", "cell 'c1': unknown scheme 'http'"),
        ("c1=redis://h:7001/0,c2", "cell 'c1': its URL holds a comma"),
        ("=redis://h:7001/0", "cell name '' must be"),
        ("c1", "entry 1 is not name=url"),
        ("c1=redis://:secret-pw@h:99999/0", "cell 'c1'"),
    ],
)
def test_bad_cell_lists_are_refused_naming_the_problem(text: str, says: str) -> None:
    if text:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"HOOKGATE_CELLS": text})
        assert says in str(caught.value)
        assert "secret-pw" not in str(caught.value)
    with pytest.raises(ValueError, match=says):
        parse_cells(text)


def test_a_sentinel_cell_keeps_its_commas() -> None:
    parsed = parse_cells("c1=redis+sentinel://h1:26379,h2:26379/m1,c2=redis://h3:7003/0")
    assert [c.name for c in parsed] == ["c1", "c2"]
    assert parsed[0].target.sentinels == (("h1", 26379), ("h2", 26379))
    assert Settings().cell_specs[0].name == "default"


# ---- placement and routing ----------------------------------------------------------------


async def test_each_business_lives_in_one_cell_and_ids_route_there(
    two: TwoCells, receiver: Any, workers: Callable[[Settings, str], Awaitable[None]]
) -> None:
    r = await receiver()
    placed: dict[str, str] = {}
    for business in [*businesses_in("c1", 3), *businesses_in("c2", 3)]:
        ep = await make_endpoint(two.api, business, r.url)
        placed[business] = rendezvous(business, ("c1", "c2"))
        assert cell_of_id(ep["id"]) == placed[business]
    await workers(two.settings, "c1")
    await workers(two.settings, "c2")
    sent = {b: await send(two.api, b) for b in placed}
    await r.wait_for(len(placed))
    for business, event in sent.items():
        cell = placed[business]
        assert event["id"].endswith("." + cell)
        assert all(d.endswith("." + cell) for d in event["deliveries"])
        other = two.pool("c2" if cell == "c1" else "c1")
        assert await two.pool(cell).exists(f"hg:evt:{event['id']}:body")
        assert not await other.exists(f"hg:evt:{event['id']}:body")
        got = await (await two.api.get(f"/v1/events/{event['id']}", headers=AUTH)).json()
        assert got["business_id"] == business
        where = await (await two.api.get(f"/v1/businesses/{business}/cell", headers=AUTH)).json()
        assert where == {
            "business_id": business,
            "cell": cell,
            "previous_cells": [],
            "pinned": True,
            "pending_in_previous_cells": {},
        }
    delivery = sent[businesses_in("c2", 1)[0]]["deliveries"][0]
    resp = await two.api.get(f"/v1/deliveries/{delivery}", headers=AUTH)
    assert (await resp.json())["status"] == "succeeded"


async def test_an_id_of_an_unknown_cell_is_not_found(two: TwoCells) -> None:
    resp = await two.api.get("/v1/events/evt_01JD0000000000000000000000.c9", headers=AUTH)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    # no default cell here: an id without a cell names nothing either
    resp = await two.api.get("/v1/deliveries/dlv_01JD0000000000000000000000a1", headers=AUTH)
    assert resp.status == 404


async def test_registered_types_are_read_from_the_first_cell(two: TwoCells, receiver: Any) -> None:
    r = await receiver()
    business = businesses_in("c2", 1)[0]
    await make_endpoint(two.api, business, r.url)
    event = {"business_id": business, "type": "custom.thing", "data": {}}
    resp = await two.api.post("/v1/events", json=event, headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "unknown_event_type"
    resp = await two.api.post(
        "/v1/event-types", json={"name": "custom.thing", "description": "d"}, headers=AUTH
    )
    assert resp.status == 201
    resp = await two.api.post("/v1/events", json=event, headers=AUTH)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["id"].endswith(".c2")


# ---- moving a business --------------------------------------------------------------------


async def test_a_move_sends_new_events_to_the_new_cell_and_old_ones_finish(
    two: TwoCells, receiver: Any, workers: Callable[[Settings, str], Awaitable[None]]
) -> None:
    r = await receiver()
    business = businesses_in("c1", 1)[0]
    ep = await make_endpoint(two.api, business, r.url)
    before = [await send(two.api, business, n) for n in range(5)]
    assert all(e["id"].endswith(".c1") for e in before)
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    moved = await resp.json()
    assert moved == {
        "business_id": business,
        "cell": "c2",
        "previous_cells": ["c1"],
        "moved": True,
        "from_cell": "c1",
        "endpoints": 1,
        "pending_in_previous_cell": 5,
    }
    after = [await send(two.api, business, n) for n in range(5, 8)]
    assert all(e["id"].endswith(".c2") for e in after)
    where = await (await two.api.get(f"/v1/businesses/{business}/cell", headers=AUTH)).json()
    assert where["previous_cells"] == ["c1"] and where["pending_in_previous_cells"] == {"c1": 5}
    # the endpoint, found by its id (which names c1), is the one in c2 now; its secret moved
    got = await (await two.api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH)).json()
    assert got["url"] == r.url
    assert await two.c2.hget(f"hg:ep:{ep['id']}", "secrets") == await two.c1.hget(
        f"hg:ep:{ep['id']}", "secrets"
    )
    await workers(two.settings, "c1")
    await workers(two.settings, "c2")
    await r.wait_for(8)
    await asyncio.sleep(0.3)
    ids = [req.headers["webhook-id"] for req in r.requests]
    assert sorted(ids) == sorted(e["id"] for e in [*before, *after])  # each once
    # listings find both cells' deliveries
    page = await (
        await two.api.get("/v1/deliveries", params={"business_id": business}, headers=AUTH)
    ).json()
    assert len(page["data"]) == 8
    page = await (
        await two.api.get("/v1/deliveries", params={"endpoint_id": ep["id"]}, headers=AUTH)
    ).json()
    assert len(page["data"]) == 8
    # a change after the move reaches the copy the old cell's deliveries use
    resp = await two.api.patch(
        f"/v1/endpoints/{ep['id']}", json={"description": "after"}, headers=AUTH
    )
    assert resp.status == 200
    assert await two.c1.hget(f"hg:ep:{ep['id']}", "description") == b"after"
    assert await two.c1.hget(f"hg:ep:{ep['id']}", "moved_to") == b"c2"
    # moving to where it is moves nothing
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    assert (await resp.json())["moved"] is False
    # both are in the audit log (kept in the first cell), with where from and to
    log = await (
        await two.api.get("/v1/audit-log", params={"action": "business.*"}, headers=AUTH)
    ).json()
    assert [(e["action"], e["business_id"], e["detail"], e["outcome"]) for e in log["data"]] == [
        ("business.move_cell", business, "already there", "success"),
        ("business.move_cell", business, "c1->c2", "success"),
    ]


async def test_a_stale_gateway_is_turned_away_by_the_old_cell(
    two: TwoCells, redis: ArqRedis, second_redis: int, receiver: Any
) -> None:
    """A second gateway that read the placement before the move sends the next event to the
    old cell, which refuses it; the gateway reads the directory again and stores it in the new
    cell."""
    r = await receiver()
    business = businesses_in("c1", 1)[0]
    await make_endpoint(two.api, business, r.url)
    other_c2 = ArqRedis.from_url(f"redis://127.0.0.1:{second_redis}/0")
    other = TestClient(TestServer(create_app(two.settings, {"c1": redis, "c2": other_c2})))
    await other.start_server()
    try:
        assert (await send(other, business, 0))["id"].endswith(".c1")
        await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
        event = await send(other, business, 1)  # its cached placement still says c1
        assert event["id"].endswith(".c2")
        assert await two.c1.get(f"hg:bus:{business}:moved") == b"c2"
    finally:
        await other.close()
        await other_c2.aclose()


async def test_an_idempotency_key_used_before_a_move_answers_after_it(
    two: TwoCells, receiver: Any
) -> None:
    r = await receiver()
    business = businesses_in("c1", 1)[0]
    await make_endpoint(two.api, business, r.url)
    first = await send(two.api, business, 0, key="order-1")
    await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    again = await send(two.api, business, 0, key="order-1")
    assert again["id"] == first["id"] and again["duplicate"] is True
    resp = await two.api.post(
        "/v1/events",
        json={"business_id": business, "type": "payment.succeeded", "data": {"n": 9}},
        headers={**AUTH, "Idempotency-Key": "order-1"},
    )
    assert resp.status == 409
    assert (await resp.json())["error"]["details"]["event_id"] == first["id"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/businesses/bus_1/cell", {"cell": "c9"}, 404, "cell"),
        ("/v1/businesses/bus_1/cell", {"cell": "C1"}, 422, "cell"),
        ("/v1/businesses/bus_1/cell", {"cell": 3}, 422, "cell"),
        ("/v1/businesses/bus_1/cell", {}, 422, "cell"),
        ("/v1/businesses/bus_1/cell", {"cell": "c2", "x": 1}, 422, "x"),
        ("/v1/businesses/bad%20id/cell", {"cell": "c2"}, 422, "business_id"),
    ],
)
async def test_a_bad_move_is_refused_and_changes_nothing(
    two: TwoCells, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    resp = await two.api.put(path, json=body, headers=AUTH)
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    assert error["details"]["field"] == field
    assert not await two.c1.exists("hg:cells:directory")


async def test_a_move_needs_the_admin_scope(two: TwoCells) -> None:
    resp = await two.api.put("/v1/businesses/bus_1/cell", json={"cell": "c2"})
    assert resp.status == 401
    resp = await two.api.post(
        "/v1/api-keys", json={"name": "ops", "scopes": ["read", "endpoints:write"]}, headers=AUTH
    )
    key = (await resp.json())["key"]
    resp = await two.api.put(
        "/v1/businesses/bus_1/cell",
        json={"cell": "c2"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status == 403


# ---- listings across cells ----------------------------------------------------------------


async def test_pages_across_cells_neither_skip_nor_repeat_while_events_arrive(
    two: TwoCells, receiver: Any
) -> None:
    r = await receiver()
    ones, twos = businesses_in("c1", 2), businesses_in("c2", 2)
    for business in [*ones, *twos]:
        await make_endpoint(two.api, business, r.url)
    made = []
    for n in range(40):
        made.append(await send(two.api, [*ones, *twos][n % 4], n))
    expected = {d for e in made for d in e["deliveries"]}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = await (await two.api.get("/v1/deliveries", params=params, headers=AUTH)).json()
        seen += [d["id"] for d in page["data"]]
        times = [(d["created_at"], d["id"]) for d in page["data"]]
        assert times == sorted(times, reverse=True)  # newest first, across both cells
        await send(two.api, ones[0], 100 + pages)  # arrives while paging: above every cursor
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen))  # nothing twice
    assert expected <= set(seen)  # nothing skipped
    assert {cell_of_id(d) for d in seen} == {"c1", "c2"}
    # events too (the portal's Events page), a page cut inside neither
    recovery = two.api.app[RECOVERY]
    seen_events: list[str] = []
    cursor = None
    while True:
        found, cursor = await recovery.list_events(EventFilter(), limit=6, cursor=cursor)
        seen_events += [e["id"] for e in found]
        assert all(e["deliveries"] == 1 for e in found)
        await send(two.api, twos[0], 200 + len(seen_events))
        if not cursor:
            break
    assert len(seen_events) == len(set(seen_events))
    assert {e["id"] for e in made} <= set(seen_events)


async def test_metrics_and_readiness_report_each_cell(two: TwoCells) -> None:
    ready = await (await two.api.get("/readyz")).json()
    assert ready["status"] == "ready"
    assert [(c["name"], c["first"], c["ready"]) for c in ready["cells"]] == [
        ("c1", True, True),
        ("c2", False, True),
    ]
    text = await (await two.api.get("/metrics")).text()
    assert 'hookgate_cell_up{cell="c1"} 1' in text
    assert 'hookgate_cell_up{cell="c2"} 1' in text
    assert 'hookgate_events_ingested_total{cell="c2"} 0' in text
    listed = await (await two.api.get("/v1/cells", headers=AUTH)).json()
    assert [c["name"] for c in listed["data"]] == ["c1", "c2"]


async def test_a_bulk_replay_after_a_move_replays_in_both_cells(
    two: TwoCells, receiver: Any, workers: Callable[[Settings, str], Awaitable[None]]
) -> None:
    failing = True

    async def behaviour(request: Any, n: int) -> Any:
        from aiohttp import web

        return web.json_response({}, status=500 if failing else 200)

    r = await receiver(behaviour)
    business = businesses_in("c1", 1)[0]
    ep = await make_endpoint(two.api, business, r.url)
    before = [await send(two.api, business, n) for n in range(2)]
    await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    after = [await send(two.api, business, n) for n in range(2, 4)]
    await workers(two.settings, "c1")
    await workers(two.settings, "c2")
    ids = [d for e in [*before, *after] for d in e["deliveries"]]
    await settle(two.api, ids, "failed")
    body = {"since": "1h", "dry_run": True}
    resp = await two.api.post(f"/v1/endpoints/{ep['id']}/replay", json=body, headers=AUTH)
    assert (await resp.json())["matched"] == 4
    failing = False
    resp = await two.api.post(
        f"/v1/endpoints/{ep['id']}/replay", json={"since": "1h"}, headers=AUTH
    )
    assert resp.status == 202, await resp.text()
    started = await resp.json()
    assert started["replay_id"].endswith(".c2") and started["matched"] == 2
    [other] = started["other_replays"]
    assert other.endswith(".c1")
    await settle(two.api, ids, "succeeded")
    replay = await (await two.api.get(f"/v1/replays/{other}", headers=AUTH)).json()
    assert replay["matched"] == 2 and replay["endpoint_id"] == ep["id"]


async def test_every_endpoint_is_listed_once_after_a_move(two: TwoCells, receiver: Any) -> None:
    r = await receiver()
    moving, staying = businesses_in("c1", 2)
    moved = await make_endpoint(two.api, moving, r.url)
    kept = await make_endpoint(two.api, staying, r.url)
    await two.api.put(f"/v1/businesses/{moving}/cell", json={"cell": "c2"}, headers=AUTH)
    listed = await (await two.api.get("/v1/endpoints", headers=AUTH)).json()
    assert sorted(e["id"] for e in listed["data"]) == sorted([moved["id"], kept["id"]])
    mine = await (
        await two.api.get("/v1/endpoints", params={"business_id": moving}, headers=AUTH)
    ).json()
    assert [e["id"] for e in mine["data"]] == [moved["id"]]
    # deleted after the move: gone from both cells, its old cell's copy too
    resp = await two.api.delete(f"/v1/endpoints/{moved['id']}", headers=AUTH)
    assert resp.status == 204
    assert not await two.c1.exists(f"hg:ep:{moved['id']}")
    assert not await two.c2.exists(f"hg:ep:{moved['id']}")
    resp = await two.api.get(f"/v1/endpoints/{moved['id']}", headers=AUTH)
    assert resp.status == 404


async def test_the_portal_of_a_moved_business_shows_both_cells(
    two: TwoCells, receiver: Any
) -> None:
    """A merchant's portal session (kept in the first cell) sees its deliveries in the cell
    it left and in the one it lives in now, its endpoint, and each delivery's page."""
    from test_portal import open_link, portal_link

    r = await receiver()
    business = businesses_in("c1", 1)[0]
    ep = await make_endpoint(two.api, business, r.url)
    before = await send(two.api, business, 0)
    await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    after = await send(two.api, business, 1)
    browser = TestClient(TestServer(two.api.app))
    await browser.start_server()
    try:
        resp = await open_link(browser, await portal_link(two.api, business))
        assert resp.status == 303
        page = await (await browser.get("/portal/deliveries")).text()
        for delivery in [*before["deliveries"], *after["deliveries"]]:
            assert delivery in page
            resp = await browser.get(f"/portal/deliveries/{delivery}")
            assert resp.status == 200, delivery
        resp = await browser.get(f"/portal/endpoints/{ep['id']}")
        assert resp.status == 200 and r.url in await resp.text()
        # another business's delivery, in either cell, is not found from this session
        other = businesses_in("c2", 1)[0]
        await make_endpoint(two.api, other, r.url)
        theirs = (await send(two.api, other, 2))["deliveries"][0]
        assert (await browser.get(f"/portal/deliveries/{theirs}")).status == 404
    finally:
        await browser.close()


@pytest.mark.parametrize(
    ("cells", "args", "says"),
    [
        ("c1=redis://127.0.0.1:1/0,c2=redis://127.0.0.1:2/0", (), "name one with --cell"),
        ("c1=redis://127.0.0.1:1/0", ("--cell", "c3"), "--cell 'c3' is not a configured cell"),
        ("", ("--cell", "c2"), "the cells are default"),
        ("c1=redis://127.0.0.1:1/0,c1=redis://127.0.0.1:2/0", (), "'c1' is listed twice"),
        ("c1=redis://127.0.0.1:1/0,c2=ftp://x", ("--cell", "c1"), "cell 'c2': unknown scheme"),
    ],
)
def test_a_worker_with_a_bad_cell_exits_2_naming_it(
    env: dict[str, str], cells: str, args: tuple[str, ...], says: str
) -> None:
    done = run_cli("worker", *args, env={**env, "HOOKGATE_CELLS": cells})
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr


def test_each_cells_worker_has_its_own_heartbeat(env: dict[str, str], tmp_path: Any) -> None:
    cells = {**env, "HOOKGATE_CELLS": "c1=redis://127.0.0.1:1/0,c2=redis://127.0.0.1:2/0"}
    cells.pop("HOOKGATE_WORKER_HEARTBEAT", None)
    cells["TMPDIR"] = str(tmp_path)
    done = run_cli("worker", "--check", "--cell", "c2", env=cells)
    assert done.returncode == 1 and "hookgate-worker-c2.heartbeat" in done.stderr


async def test_a_deployment_growing_from_one_redis_keeps_its_businesses_in_it(
    settings: Settings,
    redis: ArqRedis,
    redis_url: str,
    second_redis: int,
    api: Client,
    receiver: Any,
) -> None:
    """One Redis first (the cell ``default``), then a second cell listed beside it: the
    businesses that had endpoints stay in ``default`` (pinned when their first endpoint was
    made, or, made before pinning, found there), though they hash to the new cell."""
    r = await receiver()
    to_c2 = [
        b for b in (f"grow_{i}" for i in range(40)) if rendezvous(b, ("default", "c2")) == "c2"
    ]
    pinned, unpinned, newcomer = to_c2[:3]
    await make_endpoint(api, pinned, r.url)
    await make_endpoint(api, unpinned, r.url)
    assert await redis.hget("hg:cells:directory", pinned) == b"default"
    await redis.hdel("hg:cells:directory", unpinned)  # as made before businesses were pinned
    c2 = ArqRedis.from_url(f"redis://127.0.0.1:{second_redis}/0")
    await c2.flushall()
    grown = dataclasses.replace(
        settings,
        cells=(
            CellSpec("default", redis_url),
            CellSpec("c2", f"redis://127.0.0.1:{second_redis}/0"),
        ),
    )
    both = TestClient(TestServer(create_app(grown, {"default": redis, "c2": c2})))
    await both.start_server()
    try:
        for business in (pinned, unpinned):
            event = await send(both, business)
            assert "." not in event["id"] and len(event["deliveries"]) == 1  # in default
        assert await redis.hget("hg:cells:directory", unpinned) == b"default"
        ep = await make_endpoint(both, newcomer, r.url)  # a new business goes where it hashes
        assert ep["id"].endswith(".c2")
        assert (await send(both, newcomer))["id"].endswith(".c2")
    finally:
        await both.close()
        await c2.aclose()


async def test_sequences_go_on_across_a_move_and_pending_ordered_deliveries_hold_it(
    two: TwoCells, receiver: Any, workers: Callable[[Settings, str], Awaitable[None]]
) -> None:
    from hookgate_verifier import read_ordering

    r = await receiver()
    business = businesses_in("c1", 1)[0]
    await make_endpoint(two.api, business, r.url, ordered=True)

    async def keyed(n: int) -> dict[str, Any]:
        resp = await two.api.post(
            "/v1/events",
            json={
                "business_id": business,
                "type": "payment.succeeded",
                "data": {"n": n},
                "ordering_key": "sub_1",
            },
            headers=AUTH,
        )
        assert resp.status == 202, await resp.text()
        return dict(await resp.json())

    for n in range(3):
        await keyed(n)
    move = {"cell": "c2"}
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json=move, headers=AUTH)
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "ordered_deliveries_pending"
    assert error["details"] == {"pending": 3, "blocked_keys": 0, "cell": "c1"}
    assert (await send_placement(two, business)) == "c1"  # nothing moved
    await workers(two.settings, "c1")
    await r.wait_for(3)
    await asyncio.sleep(0.2)
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json=move, headers=AUTH)
    assert resp.status == 200, await resp.text()
    await workers(two.settings, "c2")
    for n in range(3, 5):
        assert (await keyed(n))["id"].endswith(".c2")
    await r.wait_for(5)
    sequences = [read_ordering(req.headers).sequence for req in r.requests]
    assert sequences == [1, 2, 3, 4, 5]


async def send_placement(two: TwoCells, business: str) -> str:
    resp = await two.api.get(f"/v1/businesses/{business}/cell", headers=AUTH)
    return str((await resp.json())["cell"])


async def test_a_forced_move_goes_on_with_ordered_deliveries_pending(
    two: TwoCells, receiver: Any
) -> None:
    r = await receiver()
    business = businesses_in("c1", 1)[0]
    await make_endpoint(two.api, business, r.url, ordered=True)
    resp = await two.api.post(
        "/v1/events",
        json={
            "business_id": business,
            "type": "payment.succeeded",
            "data": {},
            "ordering_key": "k",
        },
        headers=AUTH,
    )
    assert resp.status == 202
    body = {"cell": "c2", "force": True}
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json=body, headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["pending_in_previous_cell"] == 1


async def test_a_cell_that_stops_reading_early_holds_the_page_back(
    two: TwoCells, receiver: Any
) -> None:
    """A filtered listing: c1 reads its scan limit of newer non-matching deliveries and
    stops with nothing; c2's older matching ones must wait for the next pages (else c1's own
    older match, past where it stopped, would be skipped, or c2's listed twice)."""
    from gateway.store.recovery import SCAN_LIMIT

    r = await receiver()
    one, other = businesses_in("c1", 1)[0], businesses_in("c2", 1)[0]
    for business in (one, other):
        resp = await two.api.post(
            "/v1/endpoints",
            json={"business_id": business, "url": r.url},
            headers=AUTH,
        )
        assert resp.status == 201

    async def typed(business: str, kind: str, count: int) -> list[str]:
        made: list[str] = []
        while len(made) < count:
            n = min(1000, count - len(made))
            item = {"business_id": business, "type": kind, "data": {}}
            resp = await two.api.post("/v1/events/batch", json={"events": [item] * n}, headers=AUTH)
            assert resp.status == 202
            made += [d for res in (await resp.json())["results"] for d in res["deliveries"]]
        return made

    wanted = await typed(one, "refund.succeeded", 1)
    await asyncio.sleep(0.01)
    wanted += await typed(other, "refund.succeeded", 2)
    await asyncio.sleep(0.01)
    await typed(one, "payment.succeeded", SCAN_LIMIT + 100)
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {
            "event_type": "refund.succeeded",
            "limit": "5",
            **({"cursor": cursor} if cursor else {}),
        }
        page = await (await two.api.get("/v1/deliveries", params=params, headers=AUTH)).json()
        seen += [d["id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(wanted)  # each once, none skipped


async def test_a_bad_business_id_to_find_is_refused(two: TwoCells) -> None:
    resp = await two.api.get("/v1/businesses/bad%20id/cell", headers=AUTH)
    assert resp.status == 422
    assert (await resp.json())["error"]["details"]["field"] == "business_id"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("cells", "where", "bad id"), "BUSINESS_ID must be"),
        (("cells", "move", "bad id", "c2"), "BUSINESS_ID must be"),
        (("cells", "move", "bus_1", "C2"), "CELL must be"),
        (("cells", "move", "bus_1"), "Missing argument 'CELL'"),
    ],
)
def test_the_cells_commands_refuse_bad_arguments_before_asking(
    env: dict[str, str], args: tuple[str, ...], says: str
) -> None:
    # a gateway nowhere: the argument is refused before any request
    done = run_cli(*args, env={**env, "HOOKGATE_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2, done.stderr
    assert says in done.stderr


async def test_one_move_of_a_business_at_a_time(two: TwoCells, receiver: Any) -> None:
    r = await receiver()
    business = businesses_in("c1", 1)[0]
    for _ in range(3):
        await make_endpoint(two.api, business, r.url)
    await two.c1.set(f"hg:bus:{business}:moving", "another gateway's")
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "move_in_progress"
    assert await send_placement(two, business) == "c1"
    await two.c1.delete(f"hg:bus:{business}:moving")
    answers = await asyncio.gather(
        *(
            two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
            for _ in range(4)
        )
    )
    moved = [(await a.json()).get("moved") for a in answers if a.status == 200]
    assert moved.count(True) == 1, [a.status for a in answers]
    assert all(a.status in (200, 409) for a in answers)
    assert not await two.c1.exists(f"hg:bus:{business}:moving")  # let go after
    assert await send_placement(two, business) == "c2"


def test_a_cell_left_is_read_until_its_deliveries_have_expired() -> None:
    from gateway.store.cells import Placement

    placed = Placement("c1", pinned=True).moved_to("c2", until=1_000)
    assert placed.encode() == "c2 c1@1000"
    back = Placement.decode(placed.encode(), now_ms=999).moved_to("c1", until=5_000)
    assert back.encode() == "c1 c2@5000"  # the cell it returns to is not a previous one
    assert Placement.decode("c3 c2@5000 c1@1000", now_ms=999).previous == ("c2", "c1")
    assert Placement.decode("c3 c2@5000 c1@1000", now_ms=1_001).previous == ("c2",)
    assert Placement.decode("c3 c2@5000 c1@1000", now_ms=6_000).cells == ("c3",)
    assert Placement.decode("c2 c1", now_ms=10**15).previous == ("c1",)  # no time: kept


async def test_a_move_records_until_when_the_old_cell_is_read(two: TwoCells, receiver: Any) -> None:
    r = await receiver()
    business = businesses_in("c1", 1)[0]
    await make_endpoint(two.api, business, r.url)
    before = int(time.time() * 1000)
    await two.api.put(f"/v1/businesses/{business}/cell", json={"cell": "c2"}, headers=AUTH)
    value = (await two.c1.hget("hg:cells:directory", business)).decode()
    cell, old = value.split()
    name, _, until = old.partition("@")
    assert (cell, name) == ("c2", "c1")
    retention_ms = int(two.settings.retention * 1000)
    assert before + retention_ms <= int(until) <= int(time.time() * 1000) + retention_ms


async def test_a_blocked_key_holds_a_move_until_its_head_is_skipped(
    two: TwoCells, receiver: Any, workers: Callable[[Settings, str], Awaitable[None]]
) -> None:
    from aiohttp import web

    async def refuse(request: Any, n: int) -> Any:
        return web.json_response({}, status=500)

    r = await receiver(refuse)
    business = businesses_in("c1", 1)[0]
    ep = await make_endpoint(two.api, business, r.url, ordered=True)
    resp = await two.api.post(
        "/v1/events",
        json={
            "business_id": business,
            "type": "payment.succeeded",
            "data": {},
            "ordering_key": "k",
        },
        headers=AUTH,
    )
    [head] = (await resp.json())["deliveries"]
    await workers(two.settings, "c1")
    await settle(two.api, [head], "failed")
    move = {"cell": "c2"}
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json=move, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json())["error"]["details"] == {
        "pending": 0,
        "blocked_keys": 1,
        "cell": "c1",
    }
    resp = await two.api.post(f"/v1/endpoints/{ep['id']}/ordering/keys/k/skip", headers=AUTH)
    assert resp.status == 200, await resp.text()
    resp = await two.api.put(f"/v1/businesses/{business}/cell", json=move, headers=AUTH)
    assert resp.status == 200, await resp.text()
