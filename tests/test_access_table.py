"""The route table of scopes (``gateway/web/access.py``) against every /v1 route of the real
app, and business scoping on every route, table-driven.

A /v1 route added without a row in ``access.RULES`` fails here (and is refused at run time), as
does one without a sample request in ``REQUESTS``: then every route is tried without its
scope (403 naming it), with it (a success), and, for a key bound to one business, with
another business's ids (404, byte for byte the answer an unknown id gets) or another business
named in its path or body (403).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from support import AUTH

from gateway.core.scopes import ADMIN, SCOPES
from gateway.core.settings import Settings
from gateway.web import access
from gateway.web.app import create_app

Client = TestClient[Any, Any]
Route = tuple[str, str]

MINE, THEIRS = "bus_mine", "bus_theirs"
NOWHERE = "http://127.0.0.1:9/hook"
UNKNOWN = {
    "evt": "evt_01JD0000000000000000000000",
    "ep": "ep_01JD0000000000000000000000",
    "dlv": "dlv_01JD00000000000000000000001",
    "rpl": "rpl_01JD0000000000000000000000",
}
NOT_ADMIN = [s for s in SCOPES if s != ADMIN]


@dataclasses.dataclass
class Objects:
    """One business's event, endpoint, delivery (replayable: skipped), replay and listen
    session."""

    business: str
    evt: str
    ep: str
    dlv: str
    rpl: str
    keyed: str = ""  # the delivery of an event of ordering key k1, pending
    listen: str = ""  # a listen session (an endpoint of kind listen), taking refund.* only


@dataclasses.dataclass
class World:
    api: Client
    mine: Objects
    theirs: Objects
    key_id: str  # an API key that exists (for its DELETE)

    async def key(self, scopes: list[str], business: str | None = None) -> dict[str, str]:
        body: dict[str, Any] = {"name": "t", "scopes": scopes}
        if business is not None:
            body["business_id"] = business
        resp = await self.api.post("/v1/api-keys", json=body, headers=AUTH)
        assert resp.status == 201, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['key']}"}


async def _ok(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json() if resp.status != 204 else None


async def objects_of(api: Client, business: str) -> Objects:
    ep = await _ok(
        await api.post(
            "/v1/endpoints",
            json={"business_id": business, "url": NOWHERE, "ordered": True},
            headers=AUTH,
        ),
        201,
    )
    # Disabled while the event arrives, its delivery is skipped: replayable once enabled.
    await _ok(await api.post(f"/v1/endpoints/{ep['id']}/disable", headers=AUTH), 200)
    event = {"business_id": business, "type": "payment.succeeded", "data": {}}
    evt = await _ok(await api.post("/v1/events", json=event, headers=AUTH), 202)
    await _ok(await api.post(f"/v1/endpoints/{ep['id']}/enable", headers=AUTH), 200)
    # An event of ordering key k1, pending at the endpoint (no worker runs): k1 can be skipped.
    keyed = {**event, "ordering_key": "k1"}
    keyed_evt = await _ok(await api.post("/v1/events", json=keyed, headers=AUTH), 202)
    keyed_view = await _ok(await api.get(f"/v1/events/{keyed_evt['id']}", headers=AUTH), 200)
    [keyed_dlv] = [d["id"] for d in keyed_view["deliveries"] if d["endpoint_id"] == ep["id"]]
    view = await _ok(await api.get(f"/v1/events/{evt['id']}", headers=AUTH), 200)
    [dlv] = [d["id"] for d in view["deliveries"] if d["endpoint_id"] == ep["id"]]
    rpl = await _ok(
        await api.post(
            f"/v1/endpoints/{ep['id']}/replay", json={"since": "1h", "status": "all"}, headers=AUTH
        ),
        202,
    )
    # subscribed to types no request here sends: it adds no delivery to the listings below
    # (made now, or found: a business's objects may be made twice)
    resp = await api.put(
        "/v1/listen-sessions/laptop",
        json={"business_id": business, "event_types": ["refund.*"]},
        headers=AUTH,
    )
    session = await _ok(resp, 201 if resp.status != 200 else 200)
    return Objects(business, evt["id"], ep["id"], dlv, rpl["replay_id"], keyed_dlv, session["id"])


@pytest.fixture
async def world(api: Client) -> AsyncIterator[World]:
    key = await _ok(
        await api.post("/v1/api-keys", json={"name": "x", "scopes": ["read"]}, headers=AUTH), 201
    )
    yield World(api, await objects_of(api, MINE), await objects_of(api, THEIRS), key["id"])


# What each route is sent: (path, JSON body or None), for the business ``o``. Every request
# succeeds for a caller with the route's scope (and, bound to a business, for ``o``'s own).
Sample = Callable[[World, Objects], tuple[str, Any]]
REQUESTS: dict[Route, Sample] = {
    ("POST", "/v1/events"): lambda w, o: (
        "/v1/events",
        {"business_id": o.business, "type": "payment.succeeded", "data": {}},
    ),
    ("POST", "/v1/events/batch"): lambda w, o: (
        "/v1/events/batch",
        {"events": [{"business_id": o.business, "type": "payment.succeeded", "data": {}}]},
    ),
    ("GET", "/v1/events/{id}"): lambda w, o: (f"/v1/events/{o.evt}", None),
    ("GET", "/v1/event-types"): lambda w, o: ("/v1/event-types", None),
    ("POST", "/v1/event-types"): lambda w, o: ("/v1/event-types", {"name": "custom.thing"}),
    ("POST", "/v1/endpoints"): lambda w, o: (
        "/v1/endpoints",
        {"business_id": o.business, "url": NOWHERE},
    ),
    ("GET", "/v1/endpoints"): lambda w, o: ("/v1/endpoints", None),
    ("GET", "/v1/endpoints/{id}"): lambda w, o: (f"/v1/endpoints/{o.ep}", None),
    ("PATCH", "/v1/endpoints/{id}"): lambda w, o: (
        f"/v1/endpoints/{o.ep}",
        {"description": "changed"},
    ),
    ("DELETE", "/v1/endpoints/{id}"): lambda w, o: (f"/v1/endpoints/{o.ep}", None),
    ("POST", "/v1/endpoints/{id}/rotate-secret"): lambda w, o: (
        f"/v1/endpoints/{o.ep}/rotate-secret",
        None,
    ),
    ("POST", "/v1/endpoints/{id}/disable"): lambda w, o: (f"/v1/endpoints/{o.ep}/disable", {}),
    ("POST", "/v1/endpoints/{id}/enable"): lambda w, o: (f"/v1/endpoints/{o.ep}/enable", None),
    ("POST", "/v1/endpoints/{id}/test"): lambda w, o: (f"/v1/endpoints/{o.ep}/test", None),
    ("GET", "/v1/endpoints/{id}/ordering/blocked"): lambda w, o: (
        f"/v1/endpoints/{o.ep}/ordering/blocked",
        None,
    ),
    ("POST", "/v1/endpoints/{id}/ordering/keys/{key}/skip"): lambda w, o: (
        f"/v1/endpoints/{o.ep}/ordering/keys/k1/skip",
        None,
    ),
    ("POST", "/v1/endpoints/{id}/replay"): lambda w, o: (
        f"/v1/endpoints/{o.ep}/replay",
        {"since": "1h", "dry_run": True},
    ),
    ("GET", "/v1/endpoints/{id}/listen"): lambda w, o: (f"/v1/endpoints/{o.listen}/listen", None),
    ("PUT", "/v1/listen-sessions/{name}"): lambda w, o: (
        "/v1/listen-sessions/laptop",
        {"business_id": o.business, "event_types": ["refund.*"]},
    ),
    ("GET", "/v1/deliveries"): lambda w, o: ("/v1/deliveries", None),
    ("GET", "/v1/deliveries/{id}"): lambda w, o: (f"/v1/deliveries/{o.dlv}", None),
    ("POST", "/v1/deliveries/{id}/replay"): lambda w, o: (f"/v1/deliveries/{o.dlv}/replay", None),
    ("GET", "/v1/replays/{id}"): lambda w, o: (f"/v1/replays/{o.rpl}", None),
    ("POST", "/v1/businesses/{id}/portal-links"): lambda w, o: (
        f"/v1/businesses/{o.business}/portal-links",
        {"ttl": "1h"},
    ),
    ("GET", "/v1/api-keys"): lambda w, o: ("/v1/api-keys", None),
    ("POST", "/v1/api-keys"): lambda w, o: ("/v1/api-keys", {"name": "n", "scopes": ["read"]}),
    ("DELETE", "/v1/api-keys/{id}"): lambda w, o: (f"/v1/api-keys/{w.key_id}", None),
    ("GET", "/v1/audit-log"): lambda w, o: ("/v1/audit-log", None),
    ("GET", "/v1/cells"): lambda w, o: ("/v1/cells", None),
    ("GET", "/v1/businesses/{id}/cell"): lambda w, o: (f"/v1/businesses/{o.business}/cell", None),
    # to the cell it is in (the only one): a move that moves nothing
    ("PUT", "/v1/businesses/{id}/cell"): lambda w, o: (
        f"/v1/businesses/{o.business}/cell",
        {"cell": "default"},
    ),
}

# Routes whose request names a business in its body: another one is a 403 naming the field.
BUSINESS_IN_BODY = {
    ("POST", "/v1/events"),
    ("POST", "/v1/endpoints"),
    ("PUT", "/v1/listen-sessions/{name}"),
}
# Routes that list a business's things: a bound key gets its own only (see test_listings_…).
LISTINGS = {("GET", "/v1/endpoints"), ("GET", "/v1/deliveries"), ("GET", "/v1/audit-log")}
# Not any business's: the same for every caller with the scope.
SHARED = {("GET", "/v1/event-types")}
# WebSocket routes: sent as an upgrade, which succeeds with 101 Switching Protocols (the
# connection is closed at once).
UPGRADES = {("GET", "/v1/endpoints/{id}/listen")}
WEBSOCKET_UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
# What a route's {id} is taken from, when not the Objects field its owner names.
ID_FIELD = {("GET", "/v1/endpoints/{id}/listen"): "listen"}


def app_routes(app: web.Application) -> set[Route]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/v1/")
        and route.method != "HEAD"
    }


async def send(w: World, route: Route, headers: dict[str, str], o: Objects) -> Any:
    path, body = REQUESTS[route](w, o)
    if route in UPGRADES:
        headers = {**headers, **WEBSOCKET_UPGRADE}
    resp = await w.api.request(route[0], path, json=body, headers=headers)
    if resp.status == 101:
        resp.close()  # the session's connection: closed at once
    return resp


def succeeded(route: Route, status: int) -> bool:
    return status == 101 if route in UPGRADES else 200 <= status < 300


# ---- the table ----------------------------------------------------------------------------


def test_every_v1_route_has_one_rule_and_a_sample_request(
    settings: Settings, redis: ArqRedis
) -> None:
    routes = app_routes(create_app(settings, redis))
    assert routes == set(access.RULES), "a /v1 route without a rule, or a rule without a route"
    assert set(REQUESTS) == routes
    for (_, path), rule in access.RULES.items():
        assert rule.scope in SCOPES
        if "{id}" in path:
            # what the id names is known, so a bound key cannot reach another business's
            assert rule.owner is not None or rule.scope == ADMIN, path
        else:
            assert rule.owner is None, path


async def test_a_head_request_needs_what_its_get_needs(world: World) -> None:
    heads = [
        r
        for r in world.api.app.router.routes()
        if r.method == "HEAD" and r.resource is not None and r.resource.canonical.startswith("/v1/")
    ]
    assert heads
    for route in heads:
        assert route.resource is not None
        assert (
            access.rule_of("HEAD", route.resource.canonical)
            == access.RULES[("GET", route.resource.canonical)]
        )
    assert (
        await world.api.head("/v1/event-types", headers=await world.key(["read"]))
    ).status == 200
    resp = await world.api.head("/v1/event-types", headers=await world.key(["events:write"]))
    assert resp.status == 403


def test_every_route_is_covered_by_a_business_scoping_test() -> None:
    for route, rule in access.RULES.items():
        covered = (
            rule.owner is not None
            or rule.scope == ADMIN  # a bound key never has it
            or route in BUSINESS_IN_BODY | LISTINGS | SHARED
            or route == ("POST", "/v1/events/batch")
        )
        assert covered, route


async def test_a_v1_route_without_a_rule_is_refused_to_everyone(
    settings: Settings, redis: ArqRedis
) -> None:
    async def handler(request: web.Request) -> web.Response:
        raise AssertionError("reached a route that has no rule")

    app = create_app(settings, redis)
    app.router.add_get("/v1/unlisted", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/v1/unlisted", headers=AUTH)
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
        assert (await client.get("/v1/unlisted")).status == 401
    finally:
        await client.close()


@pytest.mark.parametrize("route", sorted(access.RULES), ids=" ".join)
async def test_without_its_scope_a_route_is_403_naming_the_scope(
    world: World, route: Route
) -> None:
    needed = access.RULES[route].scope
    headers = await world.key([s for s in NOT_ADMIN if s != needed])
    resp = await send(world, route, headers, world.mine)
    assert resp.status == 403, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == {"required_scope": needed}


# Each route with a key of its scope alone, for every business and (but admin, which is never
# bound) for the business of the objects it names.
WITH_SCOPE = [
    pytest.param(route, business, id=f"{' '.join(route)} {business or 'any business'}")
    for route, rule in sorted(access.RULES.items())
    for business in ((None,) if rule.scope == ADMIN else (None, MINE))
]


@pytest.mark.parametrize(("route", "business"), WITH_SCOPE)
async def test_with_its_scope_a_route_succeeds(
    world: World, route: Route, business: str | None
) -> None:
    headers = await world.key([access.RULES[route].scope], business)
    resp = await send(world, route, headers, world.mine)
    assert succeeded(route, resp.status), await resp.text()


async def test_admin_and_the_bootstrap_token_may_use_every_route(world: World) -> None:
    admin = await world.key([ADMIN])
    for n, route in enumerate(sorted(access.RULES)):
        for headers in (admin, AUTH):
            # fresh: a DELETE may take the last ones; a business of its own per route, so the
            # endpoints made stay under the per-business limit
            mine = await objects_of(world.api, f"{MINE}_{n}")
            resp = await send(world, route, headers, mine)
            assert succeeded(route, resp.status), (route, await resp.text())


# ---- business scoping ---------------------------------------------------------------------

OWNED = sorted(route for route, rule in access.RULES.items() if rule.owner in UNKNOWN)


@pytest.mark.parametrize("route", OWNED, ids=" ".join)
async def test_another_businesss_id_is_404_exactly_as_an_unknown_one(
    world: World, route: Route
) -> None:
    rule = access.RULES[route]
    assert rule.owner is not None
    headers = await world.key(NOT_ADMIN, MINE)
    field = ID_FIELD.get(route, rule.owner)
    foreign_id = getattr(world.theirs, field)
    unknown_id = UNKNOWN[rule.owner]
    unknown = dataclasses.replace(world.theirs, **{field: unknown_id})
    answers = []
    for o, named in ((world.theirs, foreign_id), (unknown, unknown_id)):
        resp = await send(world, route, headers, o)
        assert resp.status == 404, await resp.text()
        body = await resp.read()
        assert named.encode() in body
        answers.append((body.replace(named.encode(), b"<id>"), dict(resp.headers)))
    (foreign, foreign_headers), (absent, absent_headers) = answers
    assert foreign == absent
    for name in ("Content-Type", "Content-Length"):
        assert foreign_headers[name] == absent_headers[name]
    # and the other business's object is untouched by the attempt
    resp = await send(world, route, AUTH, world.theirs)
    assert resp.status < 300, await resp.text()


@pytest.mark.parametrize("route", sorted(BUSINESS_IN_BODY), ids=" ".join)
async def test_a_body_naming_another_business_is_403(world: World, route: Route) -> None:
    headers = await world.key(NOT_ADMIN, MINE)
    resp = await send(world, route, headers, world.theirs)
    assert resp.status == 403, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "forbidden" and error["details"] == {"field": "business_id"}


async def test_a_portal_link_for_another_business_is_403(world: World) -> None:
    headers = await world.key(["portal-links:create"], MINE)
    route = ("POST", "/v1/businesses/{id}/portal-links")
    resp = await send(world, route, headers, world.theirs)
    assert resp.status == 403
    assert (await resp.json())["error"]["details"] == {"field": "business_id"}
    assert (await send(world, route, headers, world.mine)).status == 201


async def test_a_batch_refuses_each_item_of_another_business(world: World) -> None:
    headers = await world.key(["events:write"], MINE)
    item = {"type": "payment.succeeded", "data": {}}
    batch = {
        "events": [
            {**item, "business_id": MINE},
            {**item, "business_id": THEIRS},
            {**item, "business_id": MINE},
        ]
    }
    resp = await world.api.post("/v1/events/batch", json=batch, headers=headers)
    assert resp.status == 202, await resp.text()
    result = await resp.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert [r["status"] for r in result["results"]] == [202, 403, 202]
    error = result["results"][1]["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == {"field": "events[1].business_id"}


async def test_listings_show_a_bound_key_its_own_business_only(world: World) -> None:
    headers = await world.key(["read"], MINE)
    api = world.api

    async def listed(path: str) -> list[dict[str, Any]]:
        resp = await api.get(path, headers=headers)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        if "next_cursor" in page:
            assert page["next_cursor"] is None
        data: list[dict[str, Any]] = page["data"]
        return data

    everything = await (await api.get("/v1/deliveries", headers=AUTH)).json()
    assert {d["business_id"] for d in everything["data"]} == {MINE, THEIRS}

    own = {world.mine.ep, world.mine.listen}
    assert {e["id"] for e in await listed("/v1/endpoints")} == own
    assert {e["id"] for e in await listed(f"/v1/endpoints?business_id={MINE}")} == own
    assert await listed(f"/v1/endpoints?business_id={THEIRS}") == []
    assert {d["id"] for d in await listed("/v1/deliveries")} == {world.mine.dlv, world.mine.keyed}
    assert await listed(f"/v1/deliveries?business_id={THEIRS}") == []
    assert await listed(f"/v1/deliveries?endpoint_id={world.theirs.ep}") == []
    assert await listed(f"/v1/deliveries?event_id={world.theirs.evt}") == []
    assert await listed(f"/v1/deliveries?endpoint_id={UNKNOWN['ep']}") == []
    mine = await listed(f"/v1/deliveries?endpoint_id={world.mine.ep}&event_id={world.mine.evt}")
    assert [d["id"] for d in mine] == [world.mine.dlv]

    everything = await (await api.get("/v1/audit-log", headers=AUTH)).json()
    assert {e["business_id"] for e in everything["data"]} >= {MINE, THEIRS}
    entries = await listed("/v1/audit-log")
    assert entries and {e["business_id"] for e in entries} == {MINE}
    assert await listed(f"/v1/audit-log?business_id={THEIRS}") == []


async def test_a_key_bound_to_a_business_cannot_create_keys_or_event_types(world: World) -> None:
    headers = await world.key(NOT_ADMIN, MINE)
    for route in (("POST", "/v1/api-keys"), ("POST", "/v1/event-types")):
        resp = await send(world, route, headers, world.mine)
        assert resp.status == 403
        assert (await resp.json())["error"]["details"] == {"required_scope": ADMIN}
