"""API keys through the API against a real Redis: creation, listing, revocation, expiry, every
bad input, what Redis holds (never a usable key), the per-process cache's bound, and two real
``hookgate serve`` processes agreeing on a revocation within a second."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from support import AUTH, redis_dump, wait_healthy

from gateway.cli.redis_server import free_port
from gateway.core.clock import iso_ms, now_ms
from gateway.core.scopes import SCOPES
from gateway.core.settings import Settings
from gateway.store import apikeys, keys
from gateway.store.scripts import Scripts
from gateway.web import access
from gateway.web.app import create_app
from gateway.web.context import ACTOR, API_KEYS

Client = TestClient[Any, Any]

KEY_RE = re.compile(r"^hgk_(key_[0-9A-Z]{26})_[A-Za-z0-9_-]{43}$")
EVENT = {"business_id": "bus_a", "type": "payment.succeeded", "data": {"n": 1}}
UNKNOWN_KEY = "key_01JD0000000000000000000000"


async def create_key(api: Client, **body: Any) -> dict[str, Any]:
    resp = await api.post("/v1/api-keys", json={"name": "k", **body}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def listed(api: Client) -> list[dict[str, Any]]:
    resp = await api.get("/v1/api-keys", headers=AUTH)
    assert resp.status == 200, await resp.text()
    found: list[dict[str, Any]] = (await resp.json())["data"]
    return found


async def refused(resp: aiohttp.ClientResponse) -> bytes:
    """A 401's body, checked to be the one answer every refused credential gets."""
    body = await resp.read()
    assert resp.status == 401, body
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="hookgate"'
    return body


# ---- creating, listing, using -------------------------------------------------------------


async def test_a_key_is_shown_once_and_listed_without_it(api: Client) -> None:
    before = now_ms()
    created = await create_key(
        api, name="billing core", scopes=["events:write", "read"], business_id="bus_a"
    )
    match = KEY_RE.match(created["key"])
    assert match and match[1] == created["id"]
    assert created["name"] == "billing core"
    assert created["scopes"] == ["events:write", "read"]
    assert created["business_id"] == "bus_a"
    assert created["status"] == "active"
    assert created["expires_at"] is None and created["revoked_at"] is None
    assert created["last_used_at"] is None and created["last_used_from"] is None
    assert iso_ms(before) <= created["created_at"] <= iso_ms(now_ms())

    [row] = await listed(api)
    assert row == {k: v for k, v in created.items() if k != "key"}
    resp = await api.get("/v1/api-keys", headers=AUTH)
    text = await resp.text()
    assert created["key"] not in text and created["key"][-43:] not in text
    assert "digest" not in text


async def test_a_key_does_what_its_scopes_allow(api: Client) -> None:
    key = (await create_key(api, scopes=["events:write"]))["key"]
    resp = await api.post("/v1/events", json=EVENT, headers=bearer(key))
    assert resp.status == 202, await resp.text()
    resp = await api.get("/v1/event-types", headers=bearer(key))
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error["code"] == "forbidden"
    assert error["details"] == {"required_scope": "read"}


async def test_scopes_may_repeat_and_come_back_sorted(api: Client) -> None:
    created = await create_key(api, scopes=["read", "events:write", "read"])
    assert created["scopes"] == ["events:write", "read"]


async def test_keys_are_listed_oldest_first_with_their_state(api: Client) -> None:
    first = await create_key(api, name="one", scopes=["read"])
    second = await create_key(
        api, name="two", scopes=["read"], expires_at=iso_ms(now_ms() + 86_400_000)
    )
    third = await create_key(api, name="three", scopes=["read"])
    assert (await api.delete(f"/v1/api-keys/{third['id']}", headers=AUTH)).status == 204
    rows = await listed(api)
    assert [r["id"] for r in rows] == [first["id"], second["id"], third["id"]]
    assert [r["status"] for r in rows] == ["active", "active", "revoked"]
    assert rows[1]["expires_at"] == second["expires_at"]
    assert rows[2]["revoked_at"] is not None


async def test_last_use_is_recorded_with_the_client_address(api: Client) -> None:
    created = await create_key(api, scopes=["read"])
    before = now_ms()
    for _ in range(3):
        assert (await api.get("/v1/event-types", headers=bearer(created["key"]))).status == 200
    await api.app[API_KEYS].flush_uses()
    [row] = await listed(api)
    assert iso_ms(before) <= row["last_used_at"] <= iso_ms(now_ms())
    assert row["last_used_from"] == "127.0.0.1"


async def test_last_use_is_written_at_most_once_a_second(
    settings: Settings, redis: ArqRedis
) -> None:
    store = apikeys.ApiKeys(redis, Scripts(redis, settings))
    record, token = await store.create(
        name="k", scopes=frozenset({"read"}), business_id=None, expires_at_ms=None
    )
    flushing = asyncio.create_task(store.flush_uses_forever(interval=0.2))
    try:
        writes = 0
        last = None
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert await store.verify(token) is not None
            store.note_use(record.id, "10.0.0.1")
            seen = await redis.hget(keys.api_key(record.id), "last_used_at")
            if seen != last:
                writes, last = writes + 1, seen
            await asyncio.sleep(0.01)
    finally:
        flushing.cancel()
        await asyncio.gather(flushing, return_exceptions=True)
    assert 3 <= writes <= 7  # one write per flush (every 0.2 s), not one per use (~100)


# ---- refused credentials: one answer for every reason -------------------------------------


async def test_every_refused_credential_gets_the_same_401(api: Client, redis: ArqRedis) -> None:
    good = (await create_key(api, scopes=["read"]))["key"]
    key_id = KEY_RE.match(good)[1]  # type: ignore[index]
    revoked = await create_key(api, scopes=["read"])
    assert (await api.delete(f"/v1/api-keys/{revoked['id']}", headers=AUTH)).status == 204
    expires_ms = now_ms() + 1000
    expiring = (await create_key(api, scopes=["read"], expires_at=iso_ms(expires_ms)))["key"]
    assert (await api.get("/v1/event-types", headers=bearer(expiring))).status == 200

    wrong_secret = good[:-43] + ("A" if good[-43] != "A" else "B") + good[-42:]
    unknown = f"hgk_{UNKNOWN_KEY}_{good[-43:]}"
    await asyncio.sleep(max(0, expires_ms - now_ms()) / 1000 + 0.05)
    headers = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic abc"},
        bearer("hgk_"),
        bearer("hgk_nope"),
        bearer(good[:-1]),  # one character short
        bearer(good + "A"),  # one too many
        bearer(good.replace("hgk_", "hgx_")),
        bearer(key_id),  # the id alone
        bearer(wrong_secret),
        bearer(unknown),
        bearer(revoked["key"]),
        bearer(expiring),  # expired a moment ago
    ]
    bodies = {await refused(await api.get("/v1/event-types", headers=h)) for h in headers}
    assert len(bodies) == 1
    [body] = bodies
    assert b'"code":"unauthorized"' in body
    assert (await api.get("/v1/event-types", headers=bearer(good))).status == 200


async def test_revocation_is_immediate_on_the_gateway_that_revoked(api: Client) -> None:
    created = await create_key(api, scopes=["read"])
    assert (await api.get("/v1/event-types", headers=bearer(created["key"]))).status == 200
    assert (await api.delete(f"/v1/api-keys/{created['id']}", headers=AUTH)).status == 204
    await refused(await api.get("/v1/event-types", headers=bearer(created["key"])))
    # revoking again changes nothing
    assert (await api.delete(f"/v1/api-keys/{created['id']}", headers=AUTH)).status == 204
    [row] = await listed(api)
    assert row["status"] == "revoked"


@pytest.mark.parametrize("key_id", [UNKNOWN_KEY, "key_nope", "hgk_x"])
async def test_revoking_an_unknown_key_is_404(api: Client, key_id: str) -> None:
    resp = await api.delete(f"/v1/api-keys/{key_id}", headers=AUTH)
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error["code"] == "not_found"
    if key_id == UNKNOWN_KEY:
        assert error["message"] == f"no API key {key_id!r}"


async def test_another_gateway_process_sees_a_revocation_within_the_cache_bound(
    settings: Settings, redis: ArqRedis
) -> None:
    """Two applications over one Redis, as two gateway processes: each has its own cache."""
    one = TestClient(TestServer(create_app(settings, redis)))
    two = TestClient(TestServer(create_app(settings, redis)))
    await one.start_server()
    await two.start_server()
    try:
        created = await create_key(one, scopes=["read"])
        key = bearer(created["key"])
        assert (await two.get("/v1/event-types", headers=key)).status == 200  # cached in two
        assert (await one.delete(f"/v1/api-keys/{created['id']}", headers=AUTH)).status == 204
        revoked_at = time.monotonic()
        while (await two.get("/v1/event-types", headers=key)).status == 200:
            await asyncio.sleep(0.01)
        assert time.monotonic() - revoked_at < apikeys.CACHE_TTL + 0.2
    finally:
        await one.close()
        await two.close()


async def hgetall_calls(redis: ArqRedis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_concurrent_requests_share_one_read_and_a_record_in_use_refreshes_early(
    settings: Settings, redis: ArqRedis
) -> None:
    store = apikeys.ApiKeys(redis, Scripts(redis, settings))
    record, token = await store.create(
        name="k", scopes=frozenset({"read"}), business_id=None, expires_at_ms=None
    )
    before = await hgetall_calls(redis)
    found = await asyncio.gather(*(store.verify(token) for _ in range(64)))
    assert found == [record] * 64
    assert await hgetall_calls(redis) - before == 1  # one read for 64 requests
    # Used past REFRESH_AFTER, the record is read again in the background: no request waits.
    await asyncio.sleep(apikeys.REFRESH_AFTER + 0.05)
    before = await hgetall_calls(redis)
    assert await store.verify(token) == record
    await asyncio.sleep(0.05)
    assert await hgetall_calls(redis) - before == 1
    # Unused past CACHE_TTL, it is read again before it is trusted.
    await asyncio.sleep(apikeys.CACHE_TTL + 0.05)
    await redis.hset(keys.api_key(record.id), "revoked_at", now_ms())
    assert await store.verify(token) is None


@pytest.mark.e2e
async def test_two_serve_processes_agree_on_a_revocation_within_a_second(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> None:
    bases = []
    for _ in range(2):
        port = free_port()
        process = spawn("serve", {**env, "HOOKGATE_PORT": str(port)})
        bases.append((f"http://127.0.0.1:{port}", process))
    for base, process in bases:
        await wait_healthy(base, process)
    (one, _), (two, _) = bases
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{one}/v1/api-keys", json={"name": "k", "scopes": ["read"]}, headers=AUTH
        ) as resp:
            assert resp.status == 201, await resp.text()
            created = await resp.json()
        key = bearer(created["key"])
        for base in (one, two):  # both gateways now hold the key in their cache
            async with http.get(f"{base}/v1/event-types", headers=key) as resp:
                assert resp.status == 200
        async with http.delete(f"{one}/v1/api-keys/{created['id']}", headers=AUTH) as resp:
            assert resp.status == 204
        revoked_at = time.monotonic()
        while True:
            async with http.get(f"{two}/v1/event-types", headers=key) as resp:
                if resp.status == 401:
                    break
                assert resp.status == 200
            assert time.monotonic() - revoked_at < 1.0, "still accepted a second later"
            await asyncio.sleep(0.01)
    assert time.monotonic() - revoked_at < 1.0


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["read"]}, "name"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["read"]}, "name"),
        ({"name": "a\nb", "scopes": ["read"]}, "name"),
        ({"name": 1, "scopes": ["read"]}, "name"),
        ({"name": "k"}, "scopes"),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": "read"}, "scopes"),
        ({"name": "k", "scopes": ["read", "superuser"]}, "scopes[1]"),
        ({"name": "k", "scopes": ["READ"]}, "scopes[0]"),
        ({"name": "k", "scopes": ["admin"], "business_id": "bus_a"}, "scopes"),
        ({"name": "k", "scopes": ["read", "admin"], "business_id": "bus_a"}, "scopes"),
        ({"name": "k", "scopes": ["read"], "business_id": "bus a"}, "business_id"),
        ({"name": "k", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": "30d"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": "2999-02-30T00:00:00Z"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at": 1}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "key": "hgk_mine"}, "key"),
    ],
)
async def test_bad_keys_are_422_naming_the_field_and_store_nothing(
    api: Client, redis: ArqRedis, body: dict[str, Any], field: str
) -> None:
    resp = await api.post("/v1/api-keys", json=body, headers=AUTH)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {"field": field}
    assert await redis.keys(keys.api_key("*")) == []
    assert await redis.scard(keys.API_KEYS) == 0


async def test_a_key_that_expires_now_is_refused(api: Client) -> None:
    resp = await api.post(
        "/v1/api-keys",
        json={"name": "k", "scopes": ["read"], "expires_at": iso_ms(now_ms())},
        headers=AUTH,
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["message"] == "expires_at: is not in the future"


async def test_an_expiry_past_year_9999_is_kept_as_the_end_of_9999(api: Client) -> None:
    created = await create_key(api, scopes=["read"], expires_at="9999-12-31T23:59:59-23:59")
    assert created["expires_at"] == "9999-12-31T23:59:59.999Z"


async def test_the_api_keys_routes_are_admin_only(api: Client) -> None:
    every = [s for s in SCOPES if s != "admin"]
    key = bearer((await create_key(api, scopes=every))["key"])
    for method, path in (
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/api-keys"),
        ("DELETE", f"/v1/api-keys/{UNKNOWN_KEY}"),
    ):
        resp = await api.request(method, path, json={"name": "k", "scopes": ["read"]}, headers=key)
        assert resp.status == 403
        assert (await resp.json())["error"]["details"] == {"required_scope": "admin"}
    admin = bearer((await create_key(api, scopes=["admin"]))["key"])
    assert (await api.get("/v1/api-keys", headers=admin)).status == 200


# ---- who is asking: request[ACTOR] --------------------------------------------------------


async def test_every_v1_request_knows_its_actor(
    settings: Settings, redis: ArqRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def whoami(request: web.Request) -> web.Response:
        actor = request[ACTOR]
        return web.json_response(
            {
                "kind": actor.kind,
                "id": actor.id,
                "name": actor.name,
                "business_id": actor.business_id,
                "scopes": sorted(actor.scopes),
                "client": actor.client,
            }
        )

    monkeypatch.setitem(access.RULES, ("GET", "/v1/whoami"), access.Rule("read"))
    app = create_app(settings, redis)
    app.router.add_get("/v1/whoami", whoami)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/v1/whoami", headers=AUTH)
        assert await resp.json() == {
            "kind": "token",
            "id": "bootstrap",
            "name": "",
            "business_id": None,
            "scopes": ["admin"],
            "client": "127.0.0.1",
        }
        created = await create_key(
            client, name="support", scopes=["read", "deliveries:replay"], business_id="bus_a"
        )
        resp = await client.get("/v1/whoami", headers=bearer(created["key"]))
        assert await resp.json() == {
            "kind": "key",
            "id": created["id"],
            "name": "support",
            "business_id": "bus_a",
            "scopes": ["deliveries:replay", "read"],
            "client": "127.0.0.1",
        }
    finally:
        await client.close()


# ---- at rest ------------------------------------------------------------------------------


async def dump_with_aof(redis: ArqRedis) -> bytes:
    """Every key name and value in Redis (``support.redis_dump``) and its append-only file:
    what a dump, or a copy of the disk, shows."""
    out = bytearray(await redis_dump(redis))
    config = await redis.config_get("dir")
    aof_dir = Path(config["dir"]) / (await redis.config_get("appenddirname"))["appenddirname"]
    for path in sorted(aof_dir.iterdir()):
        out += path.read_bytes()
    return bytes(out)


async def test_a_redis_dump_holds_no_usable_key(api: Client, redis: ArqRedis) -> None:
    made = [
        (await create_key(api, name=f"k{n}", scopes=["read", "events:write"]))["key"]
        for n in range(3)
    ]
    for key in made:  # used, so their last use is written too
        assert (await api.post("/v1/events", json=EVENT, headers=bearer(key))).status == 202
    await api.app[API_KEYS].flush_uses()
    dump = await dump_with_aof(redis)
    assert b"last_used_at" in dump and b"digest" in dump
    for key in made:
        secret = key[-43:]
        assert key.encode() not in dump
        assert secret.encode() not in dump
        assert secret[:20].encode() not in dump and secret[-20:].encode() not in dump
