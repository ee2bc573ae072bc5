"""Security wiring: secrets sealed at rest, the SSRF guard in the worker, capped responses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable
from ipaddress import ip_network
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from conftest import Receiver
from standardwebhooks import Webhook
from support import AUTH, redis_dump

from gateway.core.secretbox import SecretBox
from gateway.core.settings import Settings

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"n": 1}}


async def endpoint(api: Client, url: str) -> dict[str, Any]:
    resp = await api.post("/v1/endpoints", json={"business_id": "bus_1", "url": url}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def settled(api: Client, delivery_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            resp = await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
            d: dict[str, Any] = await resp.json()
            if d["status"] != "pending":
                return d
            await asyncio.sleep(0.05)


async def test_signing_secrets_are_sealed_at_rest(
    api: Client, redis: ArqRedis, receiver: MakeReceiver
) -> None:
    r = await receiver()
    created = await endpoint(api, r.url)
    rotated = await (
        await api.post(f"/v1/endpoints/{created['id']}/rotate-secret", headers=AUTH)
    ).json()
    dump = await redis_dump(redis)
    for secret in (created["secret"], rotated["secret"]):
        assert secret.encode() not in dump
        assert secret.removeprefix("whsec_").encode() not in dump
    sealed = json.loads(await redis.hget(f"hg:ep:{created['id']}", "secrets"))
    assert all(s["secret"].startswith("v1.") for s in sealed)


async def test_a_wrong_secret_key_costs_an_attempt_not_the_delivery(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    await endpoint(api, r.url)
    sent = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    await start_worker(dataclasses.replace(settings, secret_key=SecretBox.generate_key()))
    d = await settled(api, sent["deliveries"][0])
    assert d["status"] == "failed" and len(d["attempts"]) == settings.max_attempts
    assert all(a["error"].startswith("secret_unavailable") for a in d["attempts"])
    assert r.requests == []  # nothing unsigned or wrongly signed ever left


async def test_a_sealed_secret_copied_to_another_endpoint_does_not_open(
    api: Client, redis: ArqRedis, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    victim = await endpoint(api, "http://127.0.0.1:9/victim")
    attacker = await endpoint(api, r.url)
    stolen = await redis.hget(f"hg:ep:{victim['id']}", "secrets")
    await redis.hset(f"hg:ep:{attacker['id']}", "secrets", stolen)
    await start_worker(settings)
    sent = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    mine = [d for d in sent["deliveries"]]
    results = [await settled(api, d) for d in mine]
    attacker_result = next(d for d in results if d["endpoint_id"] == attacker["id"])
    assert attacker_result["attempts"][0]["error"].startswith("secret_unavailable")
    assert r.requests == []


async def test_the_worker_refuses_private_destinations(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    port = r.url.split(":")[2].split("/")[0]
    await endpoint(api, r.url)  # 127.0.0.1 literal: checked before connecting
    await endpoint(api, f"http://localhost:{port}/hook")  # a name: checked after DNS
    strict = dataclasses.replace(settings, allow_private_targets=False, retry_schedule=(0.1,))
    await start_worker(strict)
    sent = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    results = [await settled(api, d) for d in sent["deliveries"]]
    assert all(d["status"] == "failed" for d in results)
    errors = {a["error"] for d in results for a in d["attempts"]}
    assert all(e.startswith("blocked_destination") for e in errors), errors
    assert any("loopback" in e for e in errors)
    assert r.requests == []


async def test_an_allowed_network_is_let_through(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    created = await endpoint(api, r.url)
    allowed = dataclasses.replace(
        settings, allow_private_targets=False, allowed_networks=(ip_network("127.0.0.0/8"),)
    )
    await start_worker(allowed)
    await api.post("/v1/events", json=EVENT, headers=AUTH)
    await r.wait_for(1)
    Webhook(created["secret"]).verify(r.requests[0].body, r.requests[0].headers)


async def test_response_bodies_are_capped_and_stored_as_text(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    async def huge(request: web.Request, n: int) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"\xff\xfe bad bytes ")
        for _ in range(64):  # 4 MB that must never be read whole
            await response.write(b"x" * 65536)
        await response.write_eof()
        return response

    r = await receiver(huge)
    await endpoint(api, r.url)
    await start_worker(settings)
    sent = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    d = await settled(api, sent["deliveries"][0])
    body = d["attempts"][0]["response_body"]
    assert d["status"] == "succeeded"
    assert len(body.encode("utf-8")) <= 4096 + 8 and body.startswith("\ufffd\ufffd bad bytes x")
