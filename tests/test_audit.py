"""The audit log against a real Redis: an entry for every change made through the API, with
the right actor (the bootstrap token, an API key, a business-bound key), refused and failed
attempts, hookgate's own auto-disables written by a real worker's Lua, business scoping of
readers, filters and cursor pages, the bound on what one page scans, retention, bad query
input, a failed write that is logged instead of lost, never a secret in an entry, and
``hookgate audit ls`` as a real process."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import subprocess
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from conftest import Receiver
from support import AUTH, TOKEN, run_cli, wait_healthy
from test_portal import csrf_of, fresh_client, open_link, portal_link, sign_in, text

from gateway.core import audit as core_audit
from gateway.core.audit import FIELDS, SYSTEM, Entry
from gateway.core.clock import now_ms
from gateway.core.settings import Settings
from gateway.store import audit as store_audit
from gateway.store import keys, scripts
from gateway.store.audit import AuditFilter, AuditLog
from gateway.store.scripts import Scripts
from gateway.web import audit as web_audit
from gateway.web.app import create_app

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]

BOOTSTRAP = {"kind": "token", "id": "bootstrap", "name": ""}
HOOKGATE = {"kind": "system", "id": "system", "name": "hookgate"}
NO_SUCH_ENDPOINT = "ep_01JD0000000000000000000000"


# ---- helpers ------------------------------------------------------------------------------


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def page_of(api: Client, headers: dict[str, str] = AUTH, **query: Any) -> dict[str, Any]:
    resp = await api.get("/v1/audit-log", params=query, headers=headers)
    assert resp.status == 200, await resp.text()
    page: dict[str, Any] = await resp.json()
    return page


async def entries(api: Client, headers: dict[str, str] = AUTH, **query: Any) -> list[Any]:
    """Every entry the filters select, newest first, following the cursors."""
    found: list[Any] = []
    cursor = None
    while True:
        params = {"limit": 500, **query, **({"cursor": cursor} if cursor else {})}
        page = await page_of(api, headers, **params)
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def only(found: list[Any], action: str) -> dict[str, Any]:
    matching = [e for e in found if e["action"] == action]
    assert len(matching) == 1, (action, found)
    entry: dict[str, Any] = matching[0]
    return entry


async def create_endpoint(
    api: Client, url: str = "http://127.0.0.1:9/hook", business: str = "bus_a", **over: Any
) -> str:
    headers = over.pop("headers", AUTH)
    body = {"business_id": business, "url": url, **over}
    resp = await api.post("/v1/endpoints", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    endpoint_id: str = (await resp.json())["id"]
    return endpoint_id


async def create_key(api: Client, **body: Any) -> dict[str, Any]:
    resp = await api.post("/v1/api-keys", json={"name": "k", **body}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def send_event(api: Client, business: str = "bus_a") -> dict[str, Any]:
    body = {"business_id": business, "type": "payment.succeeded", "data": {"n": 1}}
    resp = await api.post("/v1/events", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    accepted: dict[str, Any] = await resp.json()
    return accepted


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def settled(api: Client, delivery_id: str) -> None:
    async def done() -> bool:
        resp = await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
        return bool((await resp.json())["status"] != "pending")

    await until(done)


def stream_order(entry_id: str) -> tuple[int, int]:
    found = core_audit.parse_stream_id(entry_id)
    assert found is not None
    return found


# ---- the vocabulary, and the tables of what is recorded ----------------------------------


def test_every_route_that_changes_something_is_recorded_or_said_not_to_be(
    settings: Settings, redis: ArqRedis
) -> None:
    app = create_app(settings, redis)
    changes = set()
    portal_forms = set()
    for route in app.router.routes():
        if route.method in ("GET", "HEAD", "OPTIONS") or route.resource is None:
            continue
        path = route.resource.canonical
        if path.startswith("/v1/"):
            changes.add((route.method, path))
        elif path.startswith("/portal"):
            portal_forms.add(route.name)
    assert changes == set(web_audit.API_ACTIONS) | web_audit.NOT_RECORDED
    assert portal_forms == set(web_audit.PORTAL_ACTIONS)
    named = {a.name for a in [*web_audit.API_ACTIONS.values(), *web_audit.PORTAL_ACTIONS.values()]}
    assert named | {"endpoint.auto_disable"} == set(core_audit.ACTIONS)


def test_actions_families_and_stream_ids() -> None:
    families = {a.split(".")[0] + ".*" for a in core_audit.ACTIONS}
    assert set(core_audit.ACTION_FILTERS) == set(core_audit.ACTIONS) | families
    assert core_audit.matches_action("endpoint.create", "endpoint.*")
    assert core_audit.matches_action("endpoint.create", "endpoint.create")
    assert not core_audit.matches_action("endpoint.create", "endpoint.patch")
    assert not core_audit.matches_action("endpoint.create", "delivery.*")
    assert not core_audit.matches_action("portal_link.create", "portal.*")
    assert core_audit.parse_stream_id("1700000000000-3") == (1700000000000, 3)
    for bad in ("", "1700000000000", "-1", "1-", "a-1", "1-1\n", "1234567890123456-0", "1 -1"):
        assert core_audit.parse_stream_id(bad) is None, bad
    assert (core_audit.outcome_of(303), core_audit.outcome_of(404)) == ("success", "failure")
    entry = Entry(SYSTEM, "endpoint.disable", ("ep_1", "dlv_1"), None, "failure", 409, "x")
    assert entry.fields()[::2] == list(FIELDS)
    assert dict(zip(FIELDS, entry.fields()[1::2], strict=True)) == {
        "actor_kind": "system",
        "actor_id": "system",
        "actor_name": "hookgate",
        "business_id": "",
        "client": "",
        "action": "endpoint.disable",
        "targets": "ep_1 dlv_1",
        "outcome": "failure",
        "status": "409",
        "detail": "x",
    }


# ---- every change through the API --------------------------------------------------------


async def test_every_api_change_is_recorded_once_with_the_bootstrap_token(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    await start_worker(settings)
    merchant = await receiver()
    ep = await create_endpoint(api, merchant.url)
    done: list[tuple[str, list[str], int]] = [("endpoint.create", [ep], 201)]

    async def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
        resp = await api.request(method, path, headers=AUTH, **kwargs)
        assert resp.status == status, await resp.text()
        return await resp.json() if resp.status != 204 else None

    await call("PATCH", f"/v1/endpoints/{ep}", 200, json={"description": "orders"})
    done.append(("endpoint.patch", [ep], 200))
    await call("POST", f"/v1/endpoints/{ep}/rotate-secret", 200)
    done.append(("endpoint.rotate_secret", [ep], 200))
    [dlv] = (await send_event(api))["deliveries"]  # ingest: not recorded
    await settled(api, dlv)
    await call("POST", f"/v1/deliveries/{dlv}/replay", 202)
    done.append(("delivery.replay", [dlv], 202))
    await call("POST", f"/v1/endpoints/{ep}/replay", 200, json={"since": "1h", "dry_run": True})
    bulk = await call("POST", f"/v1/endpoints/{ep}/replay", 202, json={"since": "1h"})
    done.append(("endpoint.replay", [ep, bulk["replay_id"]], 202))
    sent = await call("POST", f"/v1/endpoints/{ep}/test", 202)
    done.append(("endpoint.test", [ep, sent["event_id"], sent["delivery_id"]], 202))
    await call("POST", f"/v1/endpoints/{ep}/disable", 200, json={"reason": "migrating"})
    done.append(("endpoint.disable", [ep], 200))
    await call("POST", f"/v1/endpoints/{ep}/enable", 200)
    done.append(("endpoint.enable", [ep], 200))
    await call("POST", "/v1/businesses/bus_a/portal-links", 201)
    done.append(("portal_link.create", ["bus_a"], 201))
    await call("POST", "/v1/event-types", 201, json={"name": "invoice.audited"})
    done.append(("event_type.register", ["invoice.audited"], 201))
    key = await create_key(api, scopes=["read"])
    done.append(("api_key.create", [key["id"]], 201))
    await call("DELETE", f"/v1/api-keys/{key['id']}", 204)
    done.append(("api_key.revoke", [key["id"]], 204))
    await call("DELETE", f"/v1/endpoints/{ep}", 204)
    done.append(("endpoint.delete", [ep], 204))

    found = await entries(api)
    assert [(e["action"], e["targets"], e["status"]) for e in found] == list(reversed(done))
    global_actions = {"event_type.register", "api_key.create", "api_key.revoke"}
    for e in found:
        assert e["actor"] == BOOTSTRAP
        assert e["outcome"] == "success" and e["detail"] is None
        assert e["client"] == "127.0.0.1"
        assert e["business_id"] == (None if e["action"] in global_actions else "bus_a")
    ids = [stream_order(e["id"]) for e in found]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    assert all(datetime.fromisoformat(e["at"].replace("Z", "+00:00")) for e in found)


async def test_an_api_keys_changes_and_refusals_name_it_and_stay_in_its_business(
    api: Client,
) -> None:
    writer = await create_key(
        api, name="billing ops", scopes=["endpoints:write"], business_id="bus_a"
    )
    as_writer = bearer(writer["key"])
    other = await create_endpoint(api, business="bus_b")
    mine = await create_endpoint(api, business="bus_a", headers=as_writer)
    refused = [
        ("POST", f"/v1/endpoints/{other}/disable", None, 404, "not_found"),
        ("POST", f"/v1/deliveries/dlv_{'0' * 26}1/replay", None, 403, "forbidden"),
        ("POST", "/v1/endpoints", {"business_id": "bus_b", "url": "http://x.y/"}, 403, "forbidden"),
        ("POST", "/v1/endpoints", {"business_id": "bus_a", "url": "ftp://x"}, 422, None),
    ]
    for method, path, body, status, _ in refused:
        resp = await api.request(method, path, json=body, headers=as_writer)
        assert resp.status == status, await resp.text()
    # never past authentication: nothing recorded
    for credential in ("Bearer wrong-token-0123456789", f"Bearer {writer['key']}x"):
        resp = await api.post(
            f"/v1/endpoints/{mine}/disable", headers={"Authorization": credential}
        )
        assert resp.status == 401

    found = await entries(api, actor=writer["id"])
    actor = {"kind": "key", "id": writer["id"], "name": "billing ops"}
    assert all(e["actor"] == actor and e["business_id"] == "bus_a" for e in found)
    got = [(e["action"], e["targets"], e["outcome"], e["status"], e["detail"]) for e in found]
    assert got == [
        ("endpoint.create", [], "failure", 422, got[0][4]),
        ("endpoint.create", [], "failure", 403, "forbidden"),
        ("delivery.replay", [f"dlv_{'0' * 26}1"], "failure", 403, "forbidden"),
        ("endpoint.disable", [other], "failure", 404, "not_found"),
        ("endpoint.create", [mine], "success", 201, None),
    ]
    assert got[0][4] in ("validation_failed", "insecure_url")
    # bus_b hears nothing of bus_a's key probing it
    assert [e["action"] for e in await entries(api, business_id="bus_b")] == ["endpoint.create"]
    assert len(await entries(api)) == len(found) + 2  # and the key's creation, bus_b's endpoint


async def test_failed_changes_are_recorded_with_the_code_they_were_answered(api: Client) -> None:
    ep = await create_endpoint(api)
    resp = await api.post(f"/v1/endpoints/{NO_SUCH_ENDPOINT}/enable", headers=AUTH)
    assert resp.status == 404
    resp = await api.post(f"/v1/endpoints/{ep}/disable", headers=AUTH)
    assert resp.status == 200
    resp = await api.post(f"/v1/endpoints/{ep}/test", headers=AUTH)
    assert resp.status == 409
    resp = await api.patch(f"/v1/endpoints/{ep}", data=b"{not json", headers=AUTH)
    assert resp.status == 400
    resp = await api.post("/v1/event-types", json={"name": "hookgate.mine"}, headers=AUTH)
    assert resp.status == 422
    resp = await api.post("/v1/endpoints/not-an-id/disable", headers=AUTH)  # no such route
    assert resp.status == 404

    found = await entries(api)
    got = [(e["action"], e["targets"], e["outcome"], e["status"], e["detail"]) for e in found]
    assert got == [
        ("event_type.register", [], "failure", 422, "reserved"),
        ("endpoint.patch", [ep], "failure", 400, "invalid_json"),
        ("endpoint.test", [ep], "failure", 409, "endpoint_disabled"),
        ("endpoint.disable", [ep], "success", 200, None),
        ("endpoint.enable", [NO_SUCH_ENDPOINT], "failure", 404, "not_found"),
        ("endpoint.create", [ep], "success", 201, None),
    ]
    assert [e["business_id"] for e in found] == [None, "bus_a", "bus_a", "bus_a", None, "bus_a"]


# ---- hookgate's own changes: written by the worker's Lua ---------------------------------


async def gone(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(status=410)


async def failing(request: web.Request, n: int) -> web.StreamResponse:
    return web.Response(status=500)


async def disabled(api: Client, endpoint_id: str) -> None:
    async def check() -> bool:
        resp = await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)
        return bool((await resp.json())["disabled"])

    await until(check)


async def test_an_endpoint_disabled_after_a_410_is_recorded_as_hookgates_own(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    merchant = await receiver(gone)
    ep = await create_endpoint(api, merchant.url, business="bus_g")
    await start_worker(settings)
    [dlv] = (await send_event(api, "bus_g"))["deliveries"]
    await disabled(api, ep)

    entry = only(await entries(api), "endpoint.auto_disable")
    assert entry["actor"] == HOOKGATE
    assert entry["targets"] == [ep, dlv]
    assert entry["business_id"] == "bus_g"
    assert (entry["outcome"], entry["status"], entry["client"]) == ("success", None, None)
    assert entry["detail"] == "endpoint answered 410 Gone"
    # in the business's own stream too, under the same id
    assert await entries(api, business_id="bus_g", action="endpoint.auto_disable") == [entry]


async def test_an_endpoint_disabled_after_failing_too_long_is_recorded_as_hookgates_own(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    merchant = await receiver(failing)
    ep = await create_endpoint(api, merchant.url, business="bus_f")
    await start_worker(dataclasses.replace(settings, disable_after=0.3))
    await send_event(api, "bus_f")
    await disabled(api, ep)

    entry = only(await entries(api, business_id="bus_f"), "endpoint.auto_disable")
    assert entry["actor"] == HOOKGATE and entry["targets"][0] == ep
    assert entry["detail"] == "no successful delivery for 300ms"
    # disabling twice (the 410 path and the streak both) records once
    assert len(await entries(api, action="endpoint.auto_disable")) == 1


async def test_lua_writes_the_fields_python_reads(redis: ArqRedis) -> None:
    source = scripts.compose(
        "--@include lib/audit.lua\n"
        "return audit_system(tonumber(ARGV[6]), 'bus_l', 'endpoint.auto_disable', "
        "'ep_1 dlv_1', 'why')"
    )
    entry_id = (await redis.eval(source, 0, now_ms(), 1, "", 0, "", 86_400_000)).decode()
    [(main_id, fields)] = await redis.xrange(keys.AUDIT)
    [(business_id, same)] = await redis.xrange(keys.audit_business("bus_l"))
    assert main_id.decode() == business_id.decode() == entry_id
    assert [k.decode() for k in fields] == list(FIELDS) and same == fields
    python = Entry(SYSTEM, "endpoint.auto_disable", ("ep_1", "dlv_1"), "bus_l", detail="why")
    assert [v.decode() for v in fields.values()] == python.fields()[1::2]
    assert 0 < await redis.pttl(keys.audit_business("bus_l")) <= 86_400_000


# ---- reading: scoping, filters, pages ----------------------------------------------------


async def test_a_business_bound_reader_sees_its_own_business_only(api: Client) -> None:
    await create_endpoint(api, business="bus_a")
    await create_endpoint(api, business="bus_b")
    resp = await api.post("/v1/event-types", json={"name": "invoice.read"}, headers=AUTH)
    assert resp.status == 201
    reader = bearer((await create_key(api, scopes=["read"], business_id="bus_a"))["key"])
    everyone = bearer((await create_key(api, scopes=["read"]))["key"])

    mine = await entries(api, reader)
    # the endpoint, and the key made for the business (not the other business's, not the
    # type registered for all)
    assert [(e["action"], e["business_id"]) for e in mine] == [
        ("api_key.create", "bus_a"),
        ("endpoint.create", "bus_a"),
    ]
    assert await entries(api, reader, business_id="bus_a") == mine
    assert await page_of(api, reader, business_id="bus_b") == {"data": [], "next_cursor": None}
    assert await entries(api, reader, actor="bootstrap") == mine

    every = await entries(api)
    assert await entries(api, everyone) == every
    assert {e["business_id"] for e in every} == {"bus_a", "bus_b", None}
    assert [e["business_id"] for e in await entries(api, business_id="bus_b")] == ["bus_b"]
    # no read scope: refused, and a read is no change to record
    writer = bearer((await create_key(api, scopes=["events:write"]))["key"])
    resp = await api.get("/v1/audit-log", headers=writer)
    assert resp.status == 403 and (await resp.json())["error"]["details"] == {
        "required_scope": "read"
    }
    assert len(await entries(api)) == len(every) + 1  # the writer key's creation


async def test_filters_and_cursor_pages_newest_first_with_no_skips_or_repeats(
    api: Client,
) -> None:
    key = await create_key(api, scopes=["endpoints:write"])
    made = []
    for n in range(12):
        headers = bearer(key["key"]) if n % 3 == 0 else AUTH
        ep = await create_endpoint(api, business=f"bus_{n % 2}", headers=headers)
        made.append(ep)
        if n % 2:
            resp = await api.patch(f"/v1/endpoints/{ep}", json={"description": "x"}, headers=AUTH)
            assert resp.status == 200
    full = await entries(api)
    assert len(full) == 1 + 12 + 6

    pages: list[Any] = []
    cursor = None
    while True:
        page = await page_of(api, limit=4, **({"cursor": cursor} if cursor else {}))
        pages.append(page["data"])
        if len(pages) == 1:  # a change meanwhile sorts before every cursor: no repeat
            await create_endpoint(api, business="bus_late")
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 4, 4, 3]
    assert [e for p in pages for e in p] == full

    patches = await entries(api, action="endpoint.patch")
    assert [e["targets"] for e in patches] == [[ep] for ep in reversed(made[1::2])]
    created = await entries(api, action="endpoint.*")
    assert {e["action"] for e in created} == {"endpoint.create", "endpoint.patch"}
    # all but the key's creation, and the endpoint created while paging
    assert len(created) == len(full) - 1 + 1
    by_key = await entries(api, actor=key["id"])
    assert [e["targets"] for e in by_key] == [[ep] for ep in reversed(made[0::3])]
    paged = []
    cursor = None
    while True:
        extra = {"cursor": cursor} if cursor else {}
        page = await page_of(api, limit=2, action="endpoint.patch", **extra)
        paged += page["data"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == patches

    # since / until are inclusive, to the millisecond
    newest = await entries(api)
    middle = newest[len(newest) // 2]["at"]
    older = await entries(api, until=middle)
    later = await entries(api, since=middle)
    assert older == [e for e in newest if e["at"] <= middle] and older
    assert later == [e for e in newest if e["at"] >= middle] and later
    assert await entries(api, since="1h", until="30m") == []


async def test_a_filtered_page_looks_at_a_bounded_number_of_entries(
    redis: ArqRedis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_audit, "SCAN_LIMIT", 10)
    monkeypatch.setattr(store_audit, "SCAN_BATCH", 4)
    log = AuditLog(redis, Scripts(redis, settings), settings.audit_retention)
    await log.append(Entry(SYSTEM, "endpoint.delete", ("ep_first",)))
    for n in range(25):
        await log.append(Entry(SYSTEM, "endpoint.patch", (f"ep_{n}",)))
    wanted = AuditFilter(action="endpoint.delete")
    await redis.config_resetstat()
    found, cursor = await log.page(wanted, limit=5, cursor=None)
    stats = await redis.info("commandstats")
    # 10 entries at most: 4 + 4 + 2, in three reads, and a cursor to go on from
    assert found == [] and cursor is not None
    assert stats["cmdstat_xrevrange"]["calls"] == 3
    pages = [found]
    while cursor is not None:
        found, cursor = await log.page(wanted, limit=5, cursor=cursor)
        pages.append(found)
    assert len(pages) == 3 and [e["targets"] for p in pages for e in p] == [["ep_first"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"action": "endpoint.explode"}, "action"),
        ({"action": "endpoint"}, "action"),
        ({"actor": "key 1"}, "actor"),
        ({"actor": "x" * 65}, "actor"),
        ({"cursor": "garbage"}, "cursor"),
        ({"cursor": "1234567890123456-0"}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01T00:00:00Z"}, "until"),
        ({"since": "1h", "until": "2h"}, "until"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"business_id": "bus a"}, "business_id"),
        ({"who": "me"}, "who"),
    ],
)
async def test_bad_query_input_is_a_422_naming_the_field(
    api: Client, query: dict[str, str], field: str
) -> None:
    resp = await api.get("/v1/audit-log", params=query, headers=AUTH)
    body = await resp.json()
    assert resp.status == 422, body
    assert body["error"]["details"]["field"] == field


async def test_the_first_cursor_there_can_be_ends_the_log(api: Client) -> None:
    await create_endpoint(api)
    assert await page_of(api, cursor="0-0") == {"data": [], "next_cursor": None}


# ---- retention ---------------------------------------------------------------------------


async def test_entries_past_retention_are_trimmed_and_never_shown(
    api: Client, redis: ArqRedis, settings: Settings
) -> None:
    retention_ms = int(settings.audit_retention * 1000)
    old_ms = now_ms() - retention_ms - 3_600_000
    pairs = Entry(SYSTEM, "endpoint.disable", ("ep_old",), "bus_a").fields()
    fields = dict(zip(pairs[::2], pairs[1::2], strict=True))
    for n in range(300):
        for stream in (keys.AUDIT, keys.audit_business("bus_a")):
            await redis.xadd(stream, fields, id=f"{old_ms}-{n}")
    ep = await create_endpoint(api, business="bus_a")  # its entry trims both streams

    for stream in (keys.AUDIT, keys.audit_business("bus_a")):
        assert await redis.xlen(stream) < 300  # whole stream nodes of old entries went
    assert 0 < await redis.pttl(keys.audit_business("bus_a")) <= retention_ms
    for query in ({}, {"business_id": "bus_a"}, {"since": "1000d"}):
        assert [e["targets"] for e in await entries(api, **query)] == [[ep]]


async def test_audit_retention_is_its_own_setting() -> None:
    assert Settings().audit_retention == 90 * 86400 > Settings().retention
    env = {"HOOKGATE_AUDIT_RETENTION": "400d"}
    assert Settings.from_env(env).audit_retention == 400 * 86400
    with pytest.raises(Exception, match="HOOKGATE_AUDIT_RETENTION"):
        Settings.from_env({"HOOKGATE_AUDIT_RETENTION": "0s"})


# ---- a write that fails is logged, not lost -----------------------------------------------


async def test_an_entry_that_cannot_be_stored_is_logged_in_full(
    api: Client, redis: ArqRedis
) -> None:
    await redis.set(keys.AUDIT, "not a stream")  # every XADD to it fails
    with structlog.testing.capture_logs() as logs:
        resp = await api.post(
            "/v1/endpoints",
            json={"business_id": "bus_a", "url": "http://127.0.0.1:9/hook"},
            headers=AUTH,
        )
    assert resp.status == 201  # the change was made: it is answered as made
    created = await resp.json()
    [line] = [x for x in logs if x["event"] == "hookgate.audit.not_written"]
    assert line["log_level"] == "error"
    assert line["action"] == "endpoint.create" and line["targets"] == [created["id"]]
    assert (line["actor_kind"], line["actor_id"]) == ("token", "bootstrap")
    assert line["business_id"] == "bus_a" and line["outcome"] == "success"
    assert created["secret"] not in repr(logs) and TOKEN not in repr(logs)


async def test_an_entry_no_replica_confirmed_is_kept_and_logged(
    settings: Settings, redis: ArqRedis
) -> None:
    lonely = dataclasses.replace(settings, redis_wait_replicas=1, redis_wait_timeout=0.01)
    client = TestClient(TestServer(create_app(lonely, redis)))
    await client.start_server()
    try:
        with structlog.testing.capture_logs() as logs:
            resp = await client.post(
                "/v1/event-types", json={"name": "invoice.lonely"}, headers=AUTH
            )
    finally:
        await client.close()
    assert resp.status == 503  # the change itself could not be confirmed either
    [line] = [x for x in logs if x["event"] == "hookgate.audit.not_replicated"]
    assert line["log_level"] == "error" and line["action"] == "event_type.register"
    [(_, fields)] = await redis.xrange(keys.AUDIT)  # on the primary all the same
    assert fields[b"outcome"] == b"failure" and fields[b"status"] == b"503"
    assert fields[b"detail"] == b"store_unavailable"


# ---- never a secret ----------------------------------------------------------------------


async def test_no_entry_holds_a_secret_key_token_body_or_header_value(
    api: Client, redis: ArqRedis
) -> None:
    header_value = "tenant-header-value-31e7"
    description = "description-text-a41f"
    created = await api.post(
        "/v1/endpoints",
        json={
            "business_id": "bus_s",
            "url": "http://127.0.0.1:9/hook",
            "headers": {"X-Tenant": header_value},
            "description": description,
        },
        headers=AUTH,
    )
    ep = await created.json()
    rotated = await (await api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", headers=AUTH)).json()
    key = await create_key(api, name="secret-name-check", scopes=["endpoints:write"])
    await api.post(
        "/v1/endpoints",
        json={"business_id": "bus_s", "url": "http://body-marker-9c2d.example/"},
        headers=bearer(key["key"]),
    )
    await api.post(
        "/v1/endpoints",
        json={"business_id": "bus_s", "url": "ftp://x", "description": "refused-body-77aa"},
        headers=AUTH,
    )
    link = await portal_link(api, "bus_s")
    merchant = await fresh_client(api)
    operator = await fresh_client(api)
    guesser = await fresh_client(api)
    try:
        assert (await open_link(merchant, link)).status == 303
        await sign_in(operator)
        page = await text(await guesser.get("/portal/login"))
        resp = await guesser.post(
            "/portal/login",
            data={"csrf": csrf_of(page), "token": "wrong-guess-5b8e0c1d", "next": ""},
        )
        assert resp.status == 401
        cookies = [
            c.value
            for client in (merchant, operator)
            for c in client.session.cookie_jar
            if c.key == "hg_portal"
        ]
    finally:
        for client in (merchant, operator, guesser):
            await client.close()
    assert len(cookies) == 2
    secrets = [
        ep["secret"],
        rotated["secret"],
        key["key"],
        key["key"].rsplit("_", 1)[1],
        TOKEN,
        link.rsplit("/", 1)[1],
        header_value,
        description,
        "body-marker-9c2d",
        "refused-body-77aa",
        "wrong-guess-5b8e0c1d",
        *cookies,
        *(hashlib.sha256(c.encode()).hexdigest() for c in cookies),
    ]
    streams = [k async for k in redis.scan_iter(match=keys.AUDIT + "*")]
    assert len(streams) == 2  # the log and bus_s's
    values = []
    for stream in streams:
        for _, fields in await redis.xrange(stream):
            values += [v.decode() for pair in fields.items() for v in pair]
    everything = "\n".join(values)
    assert "portal.sign_in" in everything and "api_key.create" in everything
    for secret in secrets:
        assert secret not in everything, secret
    assert not re.search(r"whsec_|hgk_", everything)


# ---- hookgate audit ls --------------------------------------------------------------------


@pytest.mark.e2e
async def test_hookgate_audit_ls_against_a_real_gateway(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> None:
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    await wait_healthy(base, spawn("serve", env))
    cli_env = {**env, "HOOKGATE_URL": base}

    async def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, *args, env={**cli_env, **extra}, timeout=60)

    made = await cli("endpoints", "create", "http://127.0.0.1:9/hook", "--business", "bus_c")
    assert made.returncode == 0, made.stderr
    ep = made.stdout.split()[0]
    assert (await cli("endpoints", "disable", ep)).returncode == 0
    # a business key, through the CLI too: its changes name it
    async with aiohttp.ClientSession() as session:
        body = {"name": "ops", "scopes": ["endpoints:write", "read"], "business_id": "bus_c"}
        async with session.post(base + "/v1/api-keys", json=body, headers=AUTH) as resp:
            assert resp.status == 201, await resp.text()
            key = await resp.json()
    assert (await cli("endpoints", "enable", ep, HOOKGATE_API_KEY=key["key"])).returncode == 0

    listed = await cli("audit", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)["data"]
    assert [(e["action"], e["actor"]["id"]) for e in data] == [
        ("endpoint.enable", key["id"]),
        ("api_key.create", "bootstrap"),
        ("endpoint.disable", "bootstrap"),
        ("endpoint.create", "bootstrap"),
    ]
    assert all(e["client"] == "127.0.0.1" and e["targets"] for e in data)

    table = await cli("audit", "ls", "--action", "endpoint.*", "--business", "bus_c")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = ["TIME", "(UTC)", "ACTOR", "ACTION", "TARGETS", "BUSINESS", "CLIENT", "OUTCOME"]
    assert lines[0].split() == header
    assert len(lines) == 4 and f"key:{key['id']}" in lines[1] and ep in lines[1]
    assert "token:bootstrap" in lines[3] and "endpoint.create" in lines[3]
    assert "success 201" in lines[3]

    first = await cli("audit", "ls", "--limit", "1", "--actor", "bootstrap")
    cursor = first.stdout.splitlines()[-1].removeprefix("more: --cursor ")
    rest = await cli("audit", "ls", "--actor", "bootstrap", "--cursor", cursor, "--json")
    assert [e["action"] for e in json.loads(rest.stdout)["data"]] == [
        "endpoint.disable",
        "endpoint.create",
    ]
    # the business key reads its business only
    scoped = await cli("audit", "ls", "--json", HOOKGATE_API_KEY=key["key"])
    assert {e["business_id"] for e in json.loads(scoped.stdout)["data"]} == {"bus_c"}

    bad = [
        ["audit", "ls", "--action", "endpoint.explode"],
        ["audit", "ls", "--since", "yesterday"],
        ["audit", "ls", "--cursor", "garbage"],
        ["audit", "ls", "--actor", "not an id"],
        ["audit", "ls", "--limit", "0"],
        ["audit", "ls", "--business", "bus c"],
    ]
    results = await asyncio.gather(*(cli(*args) for args in bad))
    for args, result in zip(bad, results, strict=True):
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and ("hookgate:" in lines[-1] or "Error:" in lines[-1]), (args, lines)
        assert "Traceback" not in result.stderr
