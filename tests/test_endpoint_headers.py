"""An endpoint's custom headers: only what the worker's HTTP client sends exactly as stored is
accepted (RFC 9110 names and values, no name a receiver reads as a reserved or an earlier one),
values are sealed at rest like signing secrets and shown masked after creation, and what is
accepted reaches a real receiver byte for byte."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.http_writer import _py_serialize_headers
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from conftest import Receiver
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from support import AUTH, TOKEN, data_keys
from test_portal import settled

from gateway.core import formats
from gateway.core.errors import ValidationFailed
from gateway.core.headers import MASK, RESERVED_HEADERS, RESERVED_PREFIXES, normal, reserved
from gateway.core.secretbox import SecretBox, SecretBoxError
from gateway.core.settings import Settings
from gateway.store import sealed_headers
from gateway.web import bodies, schemas, validation
from gateway.web.app import create_app
from gateway.web.openapi import openapi_document
from worker.signing import build_headers

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]

EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"payment_id": "pay_1"}}
TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters

# Every spelling of a reserved name a receiver may read as the reserved one.
RESERVED_SPELLINGS = [
    "webhook-signature",
    "webhook_signature",
    "Webhook-Signature",
    "WEBHOOK_SIGNATURE",
    "Webhook_Id",
    "webhook-timestamp",
    "Webhook_Timestamp",
    "webhook-anything",
    "WEBHOOK_X",
    "Content-Type",
    "CONTENT_TYPE",
    "content_type",
    "Content-Length",
    "content_length",
    "Content-Encoding",
    "CONTENT_ENCODING",
    "Content-Range",
    "Transfer-Encoding",
    "transfer_encoding",
    "TE",
    "te",
    "Trailer",
    "Host",
    "HOST",
    "Connection",
    "Keep-Alive",
    "keep_alive",
    "Upgrade",
    "Expect",
    "User-Agent",
    "user_agent",
    "Proxy",
    "Proxy-Authorization",
    "proxy_authorization",
    "Proxy-Connection",
    "PROXY_AUTHENTICATE",
    "HTTP2-Settings",
    "http2_settings",
]

# (value, what the refusal says)
BAD_VALUES: list[tuple[Any, str]] = [
    *[(f"a{chr(c)}b", "control characters") for c in range(0x20) if c != 0x09],
    ("a\x7fb", "control characters"),
    ("line\r\nInjected: yes", "control characters"),
    ("\x00", "control characters"),
    ("é", "printable ASCII"),
    ("caf\u00e9", "printable ASCII"),
    ("\x80", "printable ASCII"),
    ("\xff", "printable ASCII"),
    ("a\u2028b", "printable ASCII"),
    ("a\u00a0b", "printable ASCII"),
    ("\u200b", "printable ASCII"),
    ("tok\U0001f600", "printable ASCII"),
    (" leading", "start or end"),
    ("trailing ", "start or end"),
    ("\tleading-tab", "start or end"),
    ("trailing-tab\t", "start or end"),
    (" ", "start or end"),
    ("\t", "start or end"),
    (MASK, "the mask"),
    (f"{MASK}abcd", "the mask"),
    ("x" * 4097, "at most 4096"),
    (1, "a string"),
    (None, "a string"),
    (True, "a string"),
    (["a"], "a string"),
    ({"a": "b"}, "a string"),
]

BAD_NAMES = [
    "",
    "X A",
    " X-A",
    "X-A ",
    "X-A:",
    "X:A",
    "X\tA",
    "X\r\nA",
    "X\x00A",
    "X\x0bA",
    "X\x7fA",
    "X-É",
    "X-\u0130",
    "X(A)",
    "X/A",
    'X"A',
    "X,A",
    "X;A",
    "X=A",
    "X@A",
    "X[A]",
    "X{A}",
    "X?A",
    "X\\A",
    "x" * 129,
]

# Values every check accepts, each sent as is.
GOOD = {
    "X-Tenant": "t1",
    "Authorization": "Bearer 0123456789abcdefghijklmnopqrstuvwxyz",
    "X-Spaces": "a b  c",
    "X-Tab": "a\tb",
    "X-Empty": "",
    "X-Ascii": "".join(chr(c) for c in range(0x21, 0x7F)),
    "X_Under": "u",
    "X-" + TCHAR[:15] + "z": "symbols in the name",
    "X-Long": "L" * 4096,
}


def refusal(value: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validation.custom_headers(value)
    return caught.value


# ---- names and values, unit ---------------------------------------------------------------


def test_good_headers_are_kept_as_given() -> None:
    assert validation.custom_headers(GOOD) == GOOD
    assert list(validation.custom_headers(GOOD)) == list(GOOD)  # order kept


@pytest.mark.parametrize(("value", "says"), BAD_VALUES, ids=lambda v: repr(v)[:20])
def test_a_value_the_client_cannot_send_as_stored_is_refused_naming_the_header(
    value: Any, says: str
) -> None:
    error = refusal({"X-Ok": "fine", "X-Bad": value})
    assert error.field == "headers.X-Bad"
    assert says in error.reason
    if isinstance(value, str) and len(value) > 3 and value != MASK:
        assert value not in error.message  # it may be a credential: never quoted back


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_a_name_that_is_not_an_rfc_9110_token_is_refused(name: str) -> None:
    error = refusal({name: "v"})
    assert error.field.startswith("headers.") and "header name" in error.reason
    if len(name) <= 128:
        assert error.field == f"headers.{name}"
    else:
        assert error.field == "headers." + name[:128] + "…"


def test_every_tchar_is_a_name_and_nothing_else_is() -> None:
    for c in map(chr, range(0x110)):
        accepted = c in TCHAR
        try:
            validation.custom_headers({f"X{c}": "v"})
        except ValidationFailed:
            assert not accepted, repr(c)
        else:
            assert accepted, repr(c)


@pytest.mark.parametrize("name", RESERVED_SPELLINGS)
def test_a_name_a_receiver_reads_as_a_reserved_one_is_refused(name: str) -> None:
    error = refusal({"X-Ok": "fine", name: "x"})
    assert error.field == f"headers.{name}"
    assert error.reason.startswith("is set by hookgate")
    if "_" in name:
        assert f"read it as {normal(name)}" in error.reason


def test_every_reserved_name_in_every_spelling() -> None:
    for base in [*RESERVED_HEADERS, *(p + "x" for p in RESERVED_PREFIXES)]:
        for spelling in {
            base,
            base.upper(),
            base.title(),
            base.replace("-", "_"),
            base.upper().replace("-", "_"),
        }:
            assert reserved(spelling), spelling
            refusal({spelling: "v"})
    for fine in (
        "X-Tenant",
        "Hosting",
        "tea",
        "Webhook",
        "webhooks",
        "Proxyish",
        "Content",
        "X-Host",
    ):
        assert not reserved(fine)
        assert validation.custom_headers({fine: "v"}) == {fine: "v"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("X-Tenant", "x-tenant"),
        ("X-Tenant", "X-TENANT"),
        ("X-Tenant", "X_Tenant"),
        ("x_tenant", "X-TENANT"),
        ("Authorization", "authorization"),
        ("A-B-C", "a_b_c"),
    ],
)
def test_names_that_are_one_header_are_refused(first: str, second: str) -> None:
    error = refusal({first: "1", second: "2"})
    assert (error.field, error.code) == (f"headers.{second}", "duplicate_header")
    assert first in error.reason


def test_more_than_twenty_headers_are_refused() -> None:
    assert refusal({f"X-{i}": "v" for i in range(21)}).field == "headers"
    assert len(validation.custom_headers({f"X-{i}": "v" for i in range(20)})) == 20


def aiohttp_sends_unchanged(value: str) -> bool:
    """What aiohttp's client writes for ``X: value``, read back as an RFC 9110 receiver
    reads it (latin-1 octets, optional whitespace around the value stripped)."""
    try:
        wire = _py_serialize_headers("POST / HTTP/1.1", CIMultiDict({"X": value}))
    except ValueError:
        return False
    line = wire.split(b"\r\n")[1]
    assert line.startswith(b"X: ")
    return line[3:].decode("latin-1").strip(" \t") == value


@hypothesis_settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2030), max_size=12))
def test_a_value_is_accepted_exactly_when_aiohttp_sends_it_unchanged(value: str) -> None:
    try:
        validation.header_value(value, "headers.X")
        accepted = True
    except ValidationFailed:
        accepted = False
    assert accepted == aiohttp_sends_unchanged(value), repr(value)
    assert accepted == bool(re.match(formats.HEADER_VALUE, value)), repr(value)


@hypothesis_settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=TCHAR + " :é\x00", min_size=1, max_size=20))
def test_the_documented_name_rules_are_the_enforced_ones(name: str) -> None:
    """The OpenAPI document's propertyNames (pattern, and not a reserved spelling) say the
    same as validation (duplicates aside: JSON Schema cannot state them)."""
    names = schemas_property_names()
    documented = bool(re.match(names["pattern"], name)) and not re.match(
        names["not"]["pattern"], name
    )
    try:
        validation.custom_headers({name: "v"})
        accepted = True
    except ValidationFailed:
        accepted = False
    assert accepted == documented, name


def schemas_property_names() -> dict[str, Any]:
    doc = openapi_document()
    for shape in ("EndpointIn", "EndpointPatch"):
        headers = doc["components"]["schemas"][shape]["properties"]["headers"]
        headers = next(s for s in headers.get("anyOf", [headers]) if s.get("type") == "object")
        value = headers["additionalProperties"]
        assert (value["pattern"], value["maxLength"]) == (formats.HEADER_VALUE, 4096)
        assert MASK in headers["description"] and "replace" in headers["description"]
    names: dict[str, Any] = headers["propertyNames"]
    return names


def test_decoding_a_body_names_the_header_too() -> None:
    """The schema documents the rules and validation enforces them after decoding, so even a
    value msgspec decodes is refused naming its header."""
    body = bodies.convert(
        {"business_id": "b", "url": "https://m.example/", "headers": {"X-A": "a\x0bb"}},
        schemas.EndpointIn,
    )
    with pytest.raises(ValidationFailed) as caught:
        validation.endpoint_of(body, known_types=frozenset(), rules=_rules())
    assert caught.value.field == "headers.X-A"


def _rules() -> Any:
    return Settings(secret_key=SecretBox.generate_key()).targets


def test_the_worker_never_sends_a_reserved_name_stored_before_the_rules() -> None:
    built = build_headers(
        msg_id="evt_1",
        timestamp=1,
        body=b"{}",
        secrets=("whsec_" + "A" * 32,),
        custom={"Webhook-Id": "forged", "webhook_signature": "v1,x", "X-Ok": "1"},
    )
    assert built["webhook-id"] == "evt_1" and built["X-Ok"] == "1"
    assert not any(k in built for k in ("Webhook-Id", "webhook_signature"))


# ---- sealing, unit ------------------------------------------------------------------------

EP = "ep_01JAAAAAAAAAAAAAAAAAAAAAAA"


def test_values_are_sealed_names_kept_in_order() -> None:
    box = SecretBox.from_text(SecretBox.generate_key())
    raw = sealed_headers.seal(box, EP, GOOD)
    for value in GOOD.values():
        if len(value) >= 3:
            assert value not in raw
    assert sealed_headers.names(raw) == list(GOOD)
    assert sealed_headers.open_values(box, EP, raw) == GOOD
    assert sealed_headers.seal(box, EP, GOOD) != raw  # a fresh nonce every time


def test_a_sealed_value_opens_only_for_its_endpoint_and_name_and_never_as_a_secret() -> None:
    box = SecretBox.from_text(SecretBox.generate_key())
    raw = sealed_headers.seal(box, EP, {"A": "one", "B": "two"})
    (_, token_a), (_, token_b) = json.loads(raw)
    swapped = json.dumps([["A", token_b], ["B", token_a]])
    with pytest.raises(SecretBoxError):
        sealed_headers.open_values(box, EP, swapped)
    with pytest.raises(SecretBoxError):
        sealed_headers.open_values(box, EP[:-1] + "B", raw)
    with pytest.raises(SecretBoxError):  # a header value passed off as the signing secret
        box.open(token_a, context=EP.encode())
    secret_token = box.seal("whsec_secret", context=EP.encode())
    with pytest.raises(SecretBoxError):  # and the secret passed off as a header value
        sealed_headers.open_values(box, EP, json.dumps([["A", secret_token]]))


def test_old_clear_layout_is_read_and_resealed() -> None:
    box = SecretBox.from_text(SecretBox.generate_key())
    legacy = json.dumps({"X-Legacy": "clear-value", "Authorization": "Bearer old"})
    assert sealed_headers.names(legacy) == ["X-Legacy", "Authorization"]
    assert sealed_headers.open_values(box, EP, legacy) == json.loads(legacy)
    sealed = sealed_headers.resealed(box, EP, legacy)
    assert sealed is not None and sealed.startswith("[") and "clear-value" not in sealed
    assert sealed_headers.open_values(box, EP, sealed) == json.loads(legacy)
    for empty in ("{}", "[]", "", None):
        assert sealed_headers.names(empty) == [] and sealed_headers.resealed(box, EP, empty) is None


def test_key_rotation_opens_old_seals_and_moves_them_onto_the_new_key() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    raw = sealed_headers.seal(SecretBox.from_text(old), EP, {"A": "one"})
    both = SecretBox.from_text(f"{new},{old}")
    assert sealed_headers.open_values(both, EP, raw) == {"A": "one"}
    moved = sealed_headers.resealed(both, EP, raw)
    assert moved is not None
    assert sealed_headers.open_values(SecretBox.from_text(new), EP, moved) == {"A": "one"}
    with pytest.raises(SecretBoxError):
        sealed_headers.open_values(SecretBox.from_text(new), EP, raw)
    # A value no listed key opens is left as it is, for the right key.
    assert sealed_headers.resealed(SecretBox.from_text(new), EP, raw) is None


# ---- the API ------------------------------------------------------------------------------


async def create(api: Client, url: str = "http://127.0.0.1:9/hook", **over: Any) -> Any:
    return await api.post(
        "/v1/endpoints", json={"business_id": "bus_1", "url": url, **over}, headers=AUTH
    )


async def error_of(resp: Any) -> dict[str, Any]:
    body = await resp.json()
    assert resp.status == 422, body
    error: dict[str, Any] = body["error"]
    return error


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    *[({"X-Bad": value}, "headers.X-Bad") for value, _ in BAD_VALUES],
    *[
        ({name: "v"}, "headers." + (name if len(name) <= 128 else name[:128] + "…"))
        for name in BAD_NAMES
    ],
    *[({"X-Ok": "1", name: "v"}, f"headers.{name}") for name in RESERVED_SPELLINGS],
    ({"X-A": "1", "x-a": "2"}, "headers.x-a"),
    ({"X-A": "1", "X_A": "2"}, "headers.X_A"),
    ({"x_a": "1", "X-A": "2"}, "headers.X-A"),
]


@pytest.mark.parametrize(("headers", "field"), BAD_BODIES, ids=lambda v: repr(v)[:30])
async def test_bad_headers_are_422_at_create_and_nothing_is_stored(
    api: Client, redis: ArqRedis, headers: dict[str, Any], field: str
) -> None:
    error = await error_of(await create(api, headers=headers))
    assert error["details"] == {"field": field}, error
    assert await data_keys(redis) == set()


async def test_bad_headers_are_422_at_patch_and_nothing_changes(
    api: Client, redis: ArqRedis
) -> None:
    created = await (await create(api, headers={"X-Keep": "kept"})).json()
    key = f"hg:ep:{created['id']}"
    before = await redis.hgetall(key)
    for headers, field in BAD_BODIES:
        resp = await api.patch(
            f"/v1/endpoints/{created['id']}", json={"headers": headers}, headers=AUTH
        )
        error = await error_of(resp)
        assert error["details"] == {"field": field}, (headers, error)
    assert await redis.hgetall(key) == before


async def test_values_are_shown_once_then_masked_everywhere(api: Client) -> None:
    value = "Bearer " + secrets.token_urlsafe(24)
    resp = await create(api, headers={"Authorization": value, "X-Tenant": "t1"})
    created = await resp.json()
    assert resp.status == 201 and created["headers"] == {"Authorization": value, "X-Tenant": "t1"}
    path = f"/v1/endpoints/{created['id']}"
    masked = {"Authorization": MASK, "X-Tenant": MASK}
    got = await (await api.get(path, headers=AUTH)).json()
    listed = await (await api.get("/v1/endpoints", headers=AUTH)).json()
    patched = await (await api.patch(path, json={"description": "d"}, headers=AUTH)).json()
    rotated = await (await api.post(f"{path}/rotate-secret", headers=AUTH)).json()
    for view in (got, listed["data"][0], patched, rotated):
        assert view["headers"] == masked
    for text in map(json.dumps, (got, listed, patched, rotated)):
        assert value.split()[1] not in text


async def test_a_client_that_patches_back_what_it_read_is_refused(
    api: Client, redis: ArqRedis
) -> None:
    created = await (await create(api, headers={"Authorization": "Bearer real"})).json()
    path = f"/v1/endpoints/{created['id']}"
    got = await (await api.get(path, headers=AUTH)).json()
    before = await redis.hgetall(f"hg:ep:{created['id']}")
    error = await error_of(await api.patch(path, json={"headers": got["headers"]}, headers=AUTH))
    assert error["details"] == {"field": "headers.Authorization"}
    assert "mask" in error["message"] and "replace every header" in error["message"]
    assert await redis.hgetall(f"hg:ep:{created['id']}") == before


async def test_patch_headers_replace_the_whole_set(api: Client, redis: ArqRedis) -> None:
    created = await (await create(api, headers={"X-A": "1", "X-B": "2"})).json()
    path = f"/v1/endpoints/{created['id']}"
    patched = await (await api.patch(path, json={"headers": {"X-C": "3"}}, headers=AUTH)).json()
    assert patched["headers"] == {"X-C": MASK}
    kept = await (await api.patch(path, json={"headers": None}, headers=AUTH)).json()
    assert kept["headers"] == {"X-C": MASK}
    cleared = await (await api.patch(path, json={"headers": {}}, headers=AUTH)).json()
    assert cleared["headers"] == {}


async def redis_dump(redis: ArqRedis) -> bytes:
    """Every key and every value in Redis, and the AOF files as written so far."""
    parts: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        parts.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            parts.append(await redis.get(key) or b"")
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                parts += [field, value]
        elif kind == "list":
            parts += await redis.lrange(key, 0, -1)
        elif kind == "set":
            parts += list(await redis.smembers(key))
        elif kind == "zset":
            parts += [member for member, _ in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in await redis.xrange(key):
                for field, value in fields.items():
                    parts += [field, value]
        parts.append(await redis.dump(key) or b"")
    directory = Path((await redis.config_get("dir"))["dir"])
    parts += await asyncio.to_thread(
        lambda: [path.read_bytes() for path in sorted(directory.rglob("*.aof"))]
    )
    return b"\n".join(parts)


# ---- delivery: a real worker, a real receiver ---------------------------------------------


async def raw_receiver(receiver: MakeReceiver) -> tuple[Receiver, list[list[tuple[bytes, bytes]]]]:
    """A receiver that keeps each request's header lines as the bytes that arrived."""
    raw: list[list[tuple[bytes, bytes]]] = []

    async def keep(request: web.Request, n: int) -> web.StreamResponse:
        raw.append(list(request.raw_headers))
        return web.Response(status=204)

    return await receiver(keep), raw


async def send(api: Client) -> str:
    resp = await api.post("/v1/events", json=EVENT, headers=AUTH)
    assert resp.status == 202, await resp.text()
    delivery_id: str = (await resp.json())["deliveries"][0]
    return delivery_id


async def test_valid_headers_reach_the_receiver_byte_for_byte_and_never_rest_in_clear(
    api: Client,
    redis: ArqRedis,
    settings: Settings,
    start_worker: Start,
    receiver: MakeReceiver,
) -> None:
    target, raw = await raw_receiver(receiver)
    marker = secrets.token_hex(12)
    given = {**GOOD, "Authorization": f"Bearer {marker}", "X-Marker": f"m {marker}\tend"}
    del given["X-Long"]  # 20 headers at most
    resp = await create(api, url=target.url, headers=given)
    assert resp.status == 201, await resp.text()
    await start_worker(settings)
    assert (await settled(api, await send(api)))["status"] == "succeeded"
    lines = raw[0]
    for name, value in given.items():
        assert (name.encode(), value.encode()) in lines, name
    assert [n for n, _ in lines if n.lower() == b"authorization"] == [b"Authorization"]
    # No value at rest in clear: not in any key, not in the AOF.
    dump = await redis_dump(redis)
    assert marker.encode() not in dump
    assert given["X-Ascii"].encode() not in dump


async def test_headers_stored_in_clear_by_an_older_version_still_go_out_then_get_sealed(
    api: Client,
    redis: ArqRedis,
    settings: Settings,
    start_worker: Start,
    receiver: MakeReceiver,
) -> None:
    target, raw = await raw_receiver(receiver)
    created = await (await create(api, url=target.url)).json()
    key = f"hg:ep:{created['id']}"
    marker = "legacy-" + secrets.token_hex(8)
    await redis.hset(key, "headers", json.dumps({"X-Legacy": marker, "Webhook-Id": "forged"}))
    got = await (await api.get(f"/v1/endpoints/{created['id']}", headers=AUTH)).json()
    assert got["headers"] == {"X-Legacy": MASK, "Webhook-Id": MASK}
    await start_worker(settings)
    assert (await settled(api, await send(api)))["status"] == "succeeded"
    assert (b"X-Legacy", marker.encode()) in raw[0]
    # The worker never lets a stored name stand in for hookgate's own.
    assert [v for n, v in raw[0] if n.lower() == b"webhook-id"] != [b"forged"]
    assert len([v for n, v in raw[0] if n.lower() == b"webhook-id"]) == 1
    # Any write seals them.
    await api.patch(f"/v1/endpoints/{created['id']}", json={"description": "x"}, headers=AUTH)
    stored = (await redis.hget(key, "headers")).decode()
    assert stored.startswith("[") and marker not in stored
    assert (await settled(api, await send(api)))["status"] == "succeeded"
    assert (b"X-Legacy", marker.encode()) in raw[1]


async def test_key_rotation_keeps_headers_going_out(
    redis: ArqRedis, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    target, raw = await raw_receiver(receiver)
    new_key = SecretBox.generate_key()
    rotated = dataclasses.replace(settings, secret_key=f"{new_key},{settings.secret_key}")
    async with TestClient(TestServer(create_app(settings, redis))) as old_api:
        created = await (await create(old_api, url=target.url, headers={"X-K": "v1"})).json()
    key = f"hg:ep:{created['id']}"
    async with TestClient(TestServer(create_app(rotated, redis))) as api:
        await start_worker(rotated)
        assert (await settled(api, await send(api)))["status"] == "succeeded"
        assert (b"X-K", b"v1") in raw[0]
        # A write while both keys are listed moves the headers onto the new key.
        await api.patch(f"/v1/endpoints/{created['id']}", json={"description": "x"}, headers=AUTH)
    box = SecretBox.from_text(new_key)
    assert sealed_headers.open_values(box, created["id"], await redis.hget(key, "headers")) == {
        "X-K": "v1"
    }


async def test_headers_that_do_not_open_are_never_sent_without_them(
    api: Client, redis: ArqRedis, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    target, raw = await raw_receiver(receiver)
    created = await (await create(api, url=target.url, headers={"A": "1", "B": "2"})).json()
    key = f"hg:ep:{created['id']}"
    (_, token_a), (_, token_b) = json.loads(await redis.hget(key, "headers"))
    await redis.hset(key, "headers", json.dumps([["A", token_b], ["B", token_a]]))
    await start_worker(settings)
    done = await settled(api, await send(api))
    assert done["status"] == "failed" and raw == []
    assert all("headers_unavailable" in a["error"] for a in done["attempts"])


# ---- the portal ---------------------------------------------------------------------------


async def sign_in(api: Client) -> str:
    def csrf(page: str) -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match
        return match.group(1)

    page = await (await api.get("/portal/login")).text()
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf(page), "token": TOKEN, "next": "/portal/endpoints"},
        allow_redirects=False,
    )
    assert resp.status == 303
    return csrf(await (await api.get("/portal/endpoints")).text())


def message_of(page: str) -> str:
    match = re.search(r'class="(?:error-message|alert bad)"[^>]*>([^<]*)<', page)
    assert match, page[:2000]
    return html.unescape(match.group(1))


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ("X-A: a\x0bb", "headers.X-A"),
        ("X-A: a\x0cb", "headers.X-A"),
        ("X-A: a\x7fb", "headers.X-A"),
        ("X-A: a\x1cb", "headers.X-A"),
        ("X-A: caf\u00e9", "headers.X-A"),
        ("X-A: a\u2028b", "headers.X-A"),
        ("X-A: a\x85b", "headers.X-A"),
        (f"X-A: {MASK}", "headers.X-A"),
        ("X-A: 1\nX-A: 2", "headers.X-A"),
        ("X-A: 1\r\nx-a: 2", "headers.x-a"),
        ("x_a: 1\nX-A: 2", "headers.X-A"),
        ("webhook_signature: x", "headers.webhook_signature"),
        ("Webhook_Id: x", "headers.Webhook_Id"),
        ("CONTENT_TYPE: x", "headers.CONTENT_TYPE"),
        ("Transfer-Encoding: chunked", "headers.Transfer-Encoding"),
        ("X A: x", "headers.X A"),
    ],
)
async def test_the_portal_form_refuses_the_same_headers(
    api: Client, redis: ArqRedis, lines: str, field: str
) -> None:
    csrf = await sign_in(api)
    before = await redis.dbsize()
    data = {"csrf": csrf, "business_id": "bus_a", "url": "http://127.0.0.1:9/h", "headers": lines}
    resp = await api.post("/portal/endpoints", data=data)
    page = await resp.text()
    assert resp.status == 422, page[:2000]
    assert message_of(page).startswith(f"{field}:")
    assert (await (await api.get("/v1/endpoints", headers=AUTH)).json())["data"] == []
    assert await redis.dbsize() == before  # the session only


async def test_the_portal_shows_values_masked(
    api: Client, settings: Settings, start_worker: Start, receiver: MakeReceiver
) -> None:
    target, raw = await raw_receiver(receiver)
    marker = secrets.token_hex(10)
    csrf = await sign_in(api)
    data = {
        "csrf": csrf,
        "business_id": "bus_a",
        "url": target.url,
        "headers": f"Authorization: Bearer {marker}\nX-Tab: a\tb",
    }
    page = await (await api.post("/portal/endpoints", data=data)).text()
    endpoint_id = re.search(r"ep_[0-9A-Z]{26}", page).group(0)  # type: ignore[union-attr]
    assert marker not in page
    await start_worker(settings)
    resp = await api.post(
        "/v1/events",
        json={"business_id": "bus_a", "type": "payment.succeeded", "data": {}},
        headers=AUTH,
    )
    delivery_id = (await resp.json())["deliveries"][0]
    assert (await settled(api, delivery_id))["status"] == "succeeded"
    assert (b"Authorization", f"Bearer {marker}".encode()) in raw[0]
    assert (b"X-Tab", b"a\tb") in raw[0]
    for path in (f"/portal/endpoints/{endpoint_id}", f"/portal/deliveries/{delivery_id}"):
        shown = await (await api.get(path)).text()
        assert marker not in shown, path
        assert f"Authorization: {MASK}" in shown or f"<td><code>{MASK}</code>" in shown, path
