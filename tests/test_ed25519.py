"""ed25519 endpoints: Standard Webhooks' asymmetric signatures (``v1a``) checked by merchants
with the endpoint's ``whpk_`` public key, through a real worker, a real Redis and
hookgate-verifier; the private key sealed at rest and never shown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from conftest import Receiver
from hookgate_verifier import InvalidSignature, Verifier, generate_ed25519_keypair, sign
from hookgate_verifier.keys import load_ed25519_private_key
from support import AUTH, data_keys, redis_dump, run_cli, wait_healthy
from test_schemas import answer_validator
from test_security import settled

from gateway.cli.dev import receiver_app
from gateway.cli.redis_server import free_port
from gateway.core.secretbox import SecretBox, SecretBoxError
from gateway.core.settings import Settings
from gateway.core.signing_keys import load_private_key, new_private_key, public_key_of
from gateway.store.store import Store
from gateway.web.app import create_app
from gateway.web.openapi import openapi_document
from worker import signing

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]

EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"payment_id": "pay_1"}}


async def call(api: Client, method: str, path: str, template: str, status: int, **kw: Any) -> Any:
    """The API's answer, checked against the document's schema of its status and for any
    private key: none may ever leave the gateway."""
    resp = await api.request(method, path, headers=AUTH, **kw)
    text = await resp.text()
    assert resp.status == status, text
    assert "whsk_" not in text
    body = json.loads(text)
    answer_validator(method.lower(), template, status).validate(body)
    return body


async def create(api: Client, url: str, **over: Any) -> dict[str, Any]:
    body = {"business_id": "bus_1", "url": url, **over}
    made: dict[str, Any] = await call(api, "POST", "/v1/endpoints", "/v1/endpoints", 201, json=body)
    return made


async def rotate(api: Client, endpoint_id: str) -> dict[str, Any]:
    path = f"/v1/endpoints/{endpoint_id}/rotate-secret"
    rotated: dict[str, Any] = await call(api, "POST", path, "/v1/endpoints/{id}/rotate-secret", 200)
    return rotated


async def read(api: Client, endpoint_id: str) -> dict[str, Any]:
    path = f"/v1/endpoints/{endpoint_id}"
    got: dict[str, Any] = await call(api, "GET", path, "/v1/endpoints/{id}", 200)
    return got


async def send(api: Client) -> dict[str, Any]:
    resp = await api.post("/v1/events", json=EVENT, headers=AUTH)
    assert resp.status == 202, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def one_signature(headers: dict[str, str], entry: str) -> dict[str, str]:
    """The delivery's headers with ``entry`` as its only signature."""
    return {**headers, "webhook-signature": entry}


# ---- delivery ------------------------------------------------------------------------------


async def test_a_delivery_verifies_with_the_endpoints_public_key(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    r = await receiver()
    ep = await create(api, r.url, signing="ed25519", headers={"X-Tenant": "t1"})
    assert ep["signing"] == "ed25519" and ep["secret"] is None
    assert ep["public_key"].startswith("whpk_") and ep["public_keys"] == [ep["public_key"]]
    assert ep["secret_count"] == 1
    await start_worker(settings)
    sent = await send(api)
    await r.wait_for(1)
    got = r.requests[0]
    [entry] = got.headers["webhook-signature"].split(" ")
    assert entry.startswith("v1a,")
    event = Verifier(ep["public_key"]).verify(got.body, got.headers)
    assert event == json.loads(got.body) and event["type"] == "payment.succeeded"
    assert got.headers["webhook-id"] == sent["id"] and got.headers["X-Tenant"] == "t1"
    with pytest.raises(InvalidSignature):  # another key pair's public key does not verify it
        Verifier(generate_ed25519_keypair()[1]).verify(got.body, got.headers)
    d = await settled(api, sent["deliveries"][0])
    assert d["status"] == "succeeded" and d["attempt_count"] == 1
    # every read shows the scheme and the public key, never a private key (``call``)
    assert (await read(api, ep["id"]))["public_keys"] == [ep["public_key"]]
    listed = await call(api, "GET", "/v1/endpoints?business_id=bus_1", "/v1/endpoints", 200)
    assert [(e["signing"], e["public_key"]) for e in listed["data"]] == [
        ("ed25519", ep["public_key"])
    ]
    patched = await call(
        api,
        "PATCH",
        f"/v1/endpoints/{ep['id']}",
        "/v1/endpoints/{id}",
        200,
        json={"description": "signed with ed25519"},
    )
    assert (patched["signing"], patched["public_keys"]) == ("ed25519", [ep["public_key"]])


async def test_rotation_signs_with_both_key_pairs_until_the_grace_period_ends(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    ep = await create(api, r.url, signing="ed25519")
    old = ep["public_key"]
    before = int(time.time() * 1000)
    rotated = await rotate(api, ep["id"])
    after = int(time.time() * 1000)
    new = rotated["public_key"]
    assert rotated["secret"] is None and new.startswith("whpk_") and new != old
    assert rotated["public_keys"] == [new, old] and rotated["secret_count"] == 2
    assert (await read(api, ep["id"]))["public_keys"] == [new, old]
    # the old key pair signs until the grace period ends, counted from the rotation
    entries = json.loads(await redis.hget(f"hg:ep:{ep['id']}", "secrets"))
    grace_ms = int(settings.rotation_grace * 1000)
    assert [e["public_key"] for e in entries] == [new, old]
    assert entries[0]["expires_at"] is None
    assert before + grace_ms <= entries[1]["expires_at"] <= after + grace_ms

    await start_worker(settings)
    await send(api)
    await r.wait_for(1)
    got = r.requests[0]
    first, second = got.headers["webhook-signature"].split(" ")
    assert first.startswith("v1a,") and second.startswith("v1a,")
    # each signature verifies with its own key pair's public key, and only with it
    Verifier(new).verify(got.body, one_signature(got.headers, first))
    Verifier(old).verify(got.body, one_signature(got.headers, second))
    with pytest.raises(InvalidSignature):
        Verifier(old).verify(got.body, one_signature(got.headers, first))
    with pytest.raises(InvalidSignature):
        Verifier(new).verify(got.body, one_signature(got.headers, second))
    for key in (old, new):  # a receiver holding either public key accepts the delivery
        Verifier(key).verify(got.body, got.headers)

    # the grace period ends (its end moved to the past): only the new key pair signs
    entries[1]["expires_at"] = int(time.time() * 1000) - 1
    await redis.hset(f"hg:ep:{ep['id']}", "secrets", json.dumps(entries))
    assert (await read(api, ep["id"]))["public_keys"] == [new]
    await send(api)
    await r.wait_for(2)
    later = r.requests[1]
    [only] = later.headers["webhook-signature"].split(" ")
    Verifier(new).verify(later.body, later.headers)
    with pytest.raises(InvalidSignature):
        Verifier(old).verify(later.body, later.headers)
    assert only.startswith("v1a,")


async def test_after_a_short_grace_period_only_the_new_key_pair_signs(
    settings: Settings, redis: ArqRedis, start_worker: Start, receiver: MakeReceiver
) -> None:
    short = dataclasses.replace(settings, rotation_grace=0.2)
    async with TestClient(TestServer(create_app(short, redis))) as api:
        r = await receiver()
        ep = await create(api, r.url, signing="ed25519")
        rotated = await rotate(api, ep["id"])
        await asyncio.sleep(0.4)  # past the grace period
        assert (await read(api, ep["id"]))["public_keys"] == [rotated["public_key"]]
        await start_worker(short)
        await send(api)
        await r.wait_for(1)
        got = r.requests[0]
        assert len(got.headers["webhook-signature"].split(" ")) == 1
        Verifier(rotated["public_key"]).verify(got.body, got.headers)
        with pytest.raises(InvalidSignature):
            Verifier(ep["public_key"]).verify(got.body, got.headers)
        # a second rotation drops the expired key pair and keeps the one that signed
        again = await rotate(api, ep["id"])
        assert again["public_keys"] == [again["public_key"], rotated["public_key"]]
        assert again["secret_count"] == 2


# ---- at rest -------------------------------------------------------------------------------


async def test_a_redis_dump_holds_no_private_key(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    ep = await create(api, r.url, signing="ed25519", headers={"Authorization": "Bearer t"})
    rotated = await rotate(api, ep["id"])
    await start_worker(settings)
    sent = await send(api)
    assert (await settled(api, sent["deliveries"][0]))["status"] == "succeeded"
    dump = await redis_dump(redis)
    assert b"whsk_" not in dump
    # what the store sealed opens, with the gateway's key and the endpoint id, to the private
    # keys of the public keys shown; none of them, in any encoding, is in the dump
    entries = json.loads(await redis.hget(f"hg:ep:{ep['id']}", "secrets"))
    box = SecretBox.from_text(settings.secret_key)
    private = [box.open(e["secret"], context=ep["id"].encode()) for e in entries]
    assert [public_key_of(p) for p in private] == rotated["public_keys"]
    for key in private:
        seed = base64.b64decode(key.removeprefix("whsk_"))
        assert len(seed) == 32
        for form in (key.encode(), key.removeprefix("whsk_").encode(), seed):
            assert form not in dump
    assert all(e["secret"].startswith("v1.") for e in entries)
    # sealed for this endpoint only: another endpoint's id does not open it
    other = await create(api, r.url, signing="ed25519")
    with pytest.raises(SecretBoxError):
        box.open(entries[0]["secret"], context=other["id"].encode())


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize("signing", ["rsa", 1, None, "ED25519", ["ed25519"], ""])
async def test_a_bad_signing_scheme_is_422_and_stores_nothing(
    api: Client, redis: ArqRedis, signing: Any
) -> None:
    body = {"business_id": "bus_1", "url": "http://127.0.0.1:9/", "signing": signing}
    resp = await api.post("/v1/endpoints", json=body, headers=AUTH)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert (error["code"], error["details"]) == ("validation_failed", {"field": "signing"})
    assert error["message"].startswith("signing: must be ")
    assert await data_keys(redis) == set()


@pytest.mark.parametrize("scheme", ["hmac", "ed25519"])
async def test_signing_cannot_be_changed_by_patch(
    api: Client, redis: ArqRedis, scheme: str
) -> None:
    ep = await create(api, "http://127.0.0.1:9/", signing=scheme)
    before = await redis.hgetall(f"hg:ep:{ep['id']}")
    for body in (
        {"signing": "ed25519"},
        {"signing": "hmac"},
        {"signing": "rsa"},
        {"signing": scheme, "description": "x"},
    ):
        resp = await api.patch(f"/v1/endpoints/{ep['id']}", json=body, headers=AUTH)
        assert resp.status == 422, await resp.text()
        error = (await resp.json())["error"]
        assert error["details"] == {"field": "signing"}
        assert error["message"] == (
            "signing: cannot be changed; create an endpoint with the other scheme instead"
        )
    assert await redis.hgetall(f"hg:ep:{ep['id']}") == before


# ---- HMAC endpoints ------------------------------------------------------------------------


async def test_hmac_stays_the_default_and_shows_no_public_key(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    r = await receiver()
    default = await create(api, r.url)
    explicit = await create(api, r.url, signing="hmac")
    for ep in (default, explicit):
        assert ep["signing"] == "hmac" and ep["secret"].startswith("whsec_")
        assert ep["public_key"] is None and ep["public_keys"] == []
    rotated = await rotate(api, default["id"])
    assert rotated["secret"].startswith("whsec_") and rotated["public_keys"] == []
    # an endpoint stored before endpoints had a scheme reads, and signs, as hmac
    await redis.hdel(f"hg:ep:{explicit['id']}", "signing")
    legacy = await read(api, explicit["id"])
    assert (legacy["signing"], legacy["public_key"]) == ("hmac", None)
    await start_worker(settings)
    await send(api)
    await r.wait_for(2)
    for got in r.requests:
        entries = got.headers["webhook-signature"].split(" ")
        assert all(e.startswith("v1,") for e in entries)
        secrets = (
            [default["secret"], rotated["secret"]] if len(entries) == 2 else [explicit["secret"]]
        )
        for secret in secrets:
            Verifier(secret).verify(got.body, got.headers)


def test_the_document_states_the_scheme_and_refuses_it_in_a_patch() -> None:
    schemas = openapi_document()["components"]["schemas"]
    signing = schemas["EndpointIn"]["properties"]["signing"]
    assert signing["enum"] == ["ed25519", "hmac"] and signing["default"] == "hmac"
    assert "signing" not in schemas["EndpointPatch"]["properties"]
    endpoint = schemas["Endpoint"]
    assert {"signing", "public_key", "public_keys"} <= set(endpoint["required"])
    assert "null" in json.dumps(schemas["EndpointWithSecret"]["properties"]["secret"])


# ---- signing -------------------------------------------------------------------------------


def test_signatures_are_the_verifier_librarys_and_loaded_keys_are_kept() -> None:
    """ed25519 signatures are deterministic: the worker's equal hookgate-verifier's own."""
    keys = [new_private_key(), new_private_key()]
    body = b'{"business_id":"bus_1","type":"payment.succeeded","data":{}}'
    signing._ed25519.cache_clear()
    made = signing.signature("evt_1", 1_763_640_000, body, keys)
    assert made == sign(keys, msg_id="evt_1", timestamp=1_763_640_000, body=body)
    assert signing._ed25519.cache_info().misses == 2
    signing.signature("evt_2", 1_763_640_001, body, keys)
    assert signing._ed25519.cache_info().hits == 2  # the next attempt loads no key again


def test_keys_are_encoded_as_the_verifier_library_reads_them() -> None:
    private = new_private_key()
    raw = base64.b64decode(private.removeprefix("whsk_"), validate=True)
    assert private.startswith("whsk_") and len(raw) == 32
    public = public_key_of(private)
    assert len(base64.b64decode(public.removeprefix("whpk_"), validate=True)) == 32
    assert load_ed25519_private_key(private).private_bytes_raw() == raw
    theirs_private, theirs_public = generate_ed25519_keypair()
    assert public_key_of(theirs_private) == theirs_public
    for bad in (
        "",
        "whsec_" + private[5:],
        "whsk_" + private[5:-2] + "!!",
        "whsk_" + base64.b64encode(raw[:31]).decode(),
        "whsk_" + base64.b64encode(raw + raw).decode(),
    ):
        with pytest.raises(ValueError) as caught:
            load_private_key(bad)
        assert private[5:] not in str(caught.value)


# ---- hookgate dev's sample receiver ----------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int) -> AsyncIterator[str]:
    """``app`` on loopback at ``port``; yields the URL of its ``/webhooks``."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/webhooks"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("with_verifier", [True, False], ids=["verifier", "reference-library"])
async def test_the_dev_receiver_verifies_ed25519_endpoints(
    api: Client,
    settings: Settings,
    start_worker: Start,
    redis: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
    with_verifier: bool,
) -> None:
    if not with_verifier:  # hookgate-verifier not installed: the receiver's other path
        monkeypatch.setitem(sys.modules, "hookgate_verifier", None)
    store = Store(redis, settings, frozenset())
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks"
    stranger = generate_ed25519_keypair()[1]

    async def wrong_keys() -> list[str]:
        return [stranger]

    async with (
        serving(receiver_app(lambda: store.verification_keys_for_url(url)), port) as good,
        serving(receiver_app(wrong_keys), free_port()) as bad,
    ):
        ed25519 = await create(api, good, signing="ed25519")
        hmac = await create(api, good)
        await rotate(api, ed25519["id"])  # two v1a signatures, each with its own public key
        refused = await create(api, bad, signing="ed25519")
        assert len(await store.verification_keys_for_url(good)) == 3
        await start_worker(settings)
        sent = await send(api)
        outcomes = {}
        for delivery_id in sent["deliveries"]:
            d = await settled(api, delivery_id)
            outcomes[d["endpoint_id"]] = (d["status"], {a["status_code"] for a in d["attempts"]})
        assert outcomes == {
            ed25519["id"]: ("succeeded", {200}),
            hmac["id"]: ("succeeded", {200}),
            refused["id"]: ("failed", {401}),
        }


async def test_the_cli_creates_an_ed25519_endpoint_and_prints_its_public_key(
    env: dict[str, str], spawn: Any
) -> None:
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    await wait_healthy(base, spawn("serve", env))
    cli_env = {**env, "HOOKGATE_URL": base}
    args = ("endpoints", "create", "--business", "bus_cli", "http://127.0.0.1:9/hook", "--signing")
    made = run_cli(*args, "ed25519", env=cli_env)
    assert made.returncode == 0, made.stderr
    assert "public key whpk_" in made.stdout and "whsk_" not in made.stdout
    endpoint_id = made.stdout.split()[0]
    rotated = run_cli("endpoints", "rotate-secret", endpoint_id, env=cli_env)
    assert rotated.returncode == 0 and "new public key whpk_" in rotated.stdout
    bad = run_cli(*args, "rsa", env=cli_env)
    assert bad.returncode == 2 and "rsa" in bad.stderr
