"""Endpoint headers that can never be sent (issue 12, defect 5): values with \\x0b, \\x0c or \\x7f
were accepted with 201 and then failed every attempt in the HTTP client; names differing only
in case were both stored and one was sent; ``webhook_signature`` (underscore) was accepted,
though many servers read it as ``webhook-signature``; values, often the receiver's credentials,
were stored and shown in clear.

Replayed against a real ``hookgate serve`` (and a real ``hookgate worker`` where delivery
matters), with every spelling of the class: each is a 422 naming the header at create, at
PATCH, in the portal's form and through the CLI, and nothing is written; what is accepted
reaches the receiver byte for byte; values rest sealed and are shown masked."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis
from conftest import Receiver
from support import data_keys, run_cli

from gateway.core.headers import MASK, RESERVED_HEADERS, RESERVED_PREFIXES
from gateway.store import keys

Serve = Callable[..., Any]  # the attack suite's ``serve`` fixture (conftest.Served each)
MakeReceiver = Callable[..., Awaitable[Receiver]]

SETTINGS = {"HOOKGATE_ALLOW_PRIVATE_TARGETS": "true", "HOOKGATE_HTTPS_ONLY": "false"}
URL = "http://127.0.0.1:9/hook"
TCHAR = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def spellings(name: str) -> set[str]:
    """Every way a receiver may read as ``name``: letter case, ``_`` for ``-``."""
    forms = {name, name.upper(), name.title(), name.capitalize()}
    return forms | {f.replace("-", "_") for f in forms} | {f.replace("_", "-") for f in forms}


def reserved_names() -> list[str]:
    names: set[str] = set()
    for base in RESERVED_HEADERS:
        names |= spellings(base)
    for prefix in RESERVED_PREFIXES:
        for tail in ("id", "signature", "timestamp", "x", "Authorization"):
            names |= spellings(prefix + tail)
    return sorted(names)


def bad_values() -> list[str]:
    controls = [chr(c) for c in range(0x20) if c != 0x09] + ["\x7f"]
    values = [
        f"{where[0]}{c}{where[1]}" for c in controls for where in (("", "v"), ("v", "w"), ("v", ""))
    ]
    values += [
        "é",
        "v\u00e9",
        "\x80",
        "\xff",
        "\u0100",
        "\u2028",
        "v\u00a0w",
        "\ufeff",
        "\U0001f600",
    ]
    values += [" v", "v ", "\tv", "v\t", " ", "\t", "  ", MASK, MASK + "1234", "x" * 4097]
    return values


def bad_names() -> list[str]:
    names = ["", "x" * 129, "X-É", "X-\u0131", "X\u00a0A", "\ufeffX"]
    names += [f"X{chr(c)}A" for c in range(0x80) if chr(c) not in TCHAR]
    return names


def field_of(name: str) -> str:
    return "headers." + (name if len(name) <= 128 else name[:128] + "…")


def cases() -> list[tuple[dict[str, Any], str]]:
    """(headers, the field its 422 names): the wider list of the class."""
    found: list[tuple[dict[str, Any], str]] = []
    found += [({"X-Ok": "1", "X-Bad": v}, "headers.X-Bad") for v in bad_values()]
    found += [({"X-Bad": v}, "headers.X-Bad") for v in (1, 1.5, None, True, [], {}, ["v"])]
    found += [({"X-Ok": "1", n: "v"}, field_of(n)) for n in bad_names()]
    found += [({"X-Ok": "1", n: "v"}, f"headers.{n}") for n in reserved_names()]
    for first in ("X-Tenant", "Authorization", "A-B"):
        for second in sorted(spellings(first) - {first}):
            found.append(({first: "1", second: "2"}, f"headers.{second}"))
    return found


async def answer(http: aiohttp.ClientSession, method: str, url: str, body: Any) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


async def redis_dump(redis: ArqRedis) -> bytes:
    """Every key with every value (as DUMP serialises it, and as read), and the AOF files."""
    parts: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        parts += [key, await redis.dump(key) or b""]
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            parts += [b for pair in (await redis.hgetall(key)).items() for b in pair]
        elif kind == "string":
            parts.append(await redis.get(key) or b"")
        elif kind == "list":
            parts += await redis.lrange(key, 0, -1)
    directory = Path((await redis.config_get("dir"))["dir"])
    parts += await asyncio.to_thread(
        lambda: [path.read_bytes() for path in sorted(directory.rglob("*.aof"))]
    )
    return b"\n".join(parts)


async def test_every_spelling_is_refused_at_create_and_at_patch(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    all_cases = cases()
    assert len(all_cases) > 300
    for headers, field in all_cases:
        body = {"business_id": "bus_h", "url": URL, "headers": headers}
        status, got = await answer(http, "POST", base + "/v1/endpoints", body)
        assert status == 422 and got["error"]["details"] == {"field": field}, (headers, got)
    assert await data_keys(redis) == set()

    status, created = await answer(
        http,
        "POST",
        base + "/v1/endpoints",
        {"business_id": "bus_h", "url": URL, "headers": {"X-Keep": "k"}},
    )
    assert status == 201
    path = f"{base}/v1/endpoints/{created['id']}"
    before = await redis.hgetall(keys.endpoint(created["id"]))
    for headers, field in all_cases:
        status, got = await answer(http, "PATCH", path, {"headers": headers})
        assert status == 422 and got["error"]["details"] == {"field": field}, (headers, got)
    assert await redis.hgetall(keys.endpoint(created["id"])) == before
    status, got = await answer(http, "GET", path, None)
    assert got["headers"] == {"X-Keep": MASK}


async def test_values_rest_sealed_are_shown_masked_and_cannot_be_patched_back(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    token = secrets.token_urlsafe(24)
    headers = {"Authorization": f"Bearer {token}", "X-Tenant": "tenant-" + token[:8]}
    body = {"business_id": "bus_h", "url": URL, "headers": headers}
    status, created = await answer(http, "POST", base + "/v1/endpoints", body)
    assert status == 201 and created["headers"] == headers  # shown once, like the secret
    path = f"{base}/v1/endpoints/{created['id']}"
    masked = {"Authorization": MASK, "X-Tenant": MASK}
    reads = [
        await answer(http, "GET", path, None),
        await answer(http, "GET", base + "/v1/endpoints", None),
        await answer(http, "PATCH", path, {"description": "after"}),
        await answer(http, "POST", path + "/rotate-secret", None),
    ]
    for status, got in reads:
        assert status == 200 and token not in json.dumps(got)
        assert (got["data"][0] if "data" in got else got)["headers"] == masked
    # GET, then PATCH back what it showed: refused, nothing overwritten with the mask.
    before = await redis.hgetall(keys.endpoint(created["id"]))
    status, got = await answer(http, "PATCH", path, {"headers": reads[0][1]["headers"]})
    assert status == 422 and "mask" in got["error"]["message"]
    assert await redis.hgetall(keys.endpoint(created["id"])) == before
    assert token.encode() not in await redis_dump(redis)


async def test_the_portal_form_refuses_the_class(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    async with http.post(base + "/v1/businesses/bus_p/portal-links", json={}) as resp:
        link = (await resp.json())["url"]
    # a browser of its own: cookies of 127.0.0.1 are kept only by an unsafe jar
    path = link[link.index("/portal/") :]
    async with aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(path) as resp:
            token = CSRF.search(await resp.text()).group(1)  # type: ignore[union-attr]
        async with browser.post(path, data={"csrf": token}, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
        async with browser.get("/portal/endpoints") as resp:
            csrf = CSRF.search(await resp.text()).group(1)  # type: ignore[union-attr]
        lines = [
            ("X-A: a\x0bb", "headers.X-A"),
            ("X-A: a\x0cb", "headers.X-A"),
            ("X-A: a\x7fb", "headers.X-A"),
            ("X-A: a\x1eb", "headers.X-A"),
            ("X-A: a\x85b", "headers.X-A"),
            ("X-A: caf\u00e9", "headers.X-A"),
            (f"X-A: {MASK}", "headers.X-A"),
            ("X-A: 1\nX-A: 2", "headers.X-A"),
            ("X-A: 1\nx-a: 2", "headers.x-a"),
            ("X-A: 1\nX_A: 2", "headers.X_A"),
            *[(f"{name}: v", f"headers.{name}") for name in reserved_names()[::7]],
        ]
        for text, field in lines:
            form = {"csrf": csrf, "url": URL, "headers": text}
            async with browser.post("/portal/endpoints", data=form) as resp:
                page = await resp.text()
                assert resp.status == 422, (text, page[:500])
                assert f"{field}:" in page.replace("&#39;", "'").replace("&amp;", "&"), text
    _, got = await answer(http, "GET", base + "/v1/endpoints?business_id=bus_p", None)
    assert got["data"] == []


async def test_the_cli_goes_through_the_same_rules(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    served = serve(**SETTINGS)
    env = {**served.env, "HOOKGATE_URL": served.base}

    def create(*headers: str) -> Any:
        args = ["endpoints", "create", URL, "--business", "bus_c"]
        for header in headers:
            args += ["--header", header]
        return run_cli(*args, env=env)

    for header, says in [
        ("webhook_signature=x", "headers.webhook_signature"),
        ("Webhook_Id=x", "headers.Webhook_Id"),
        ("CONTENT_TYPE=x", "headers.CONTENT_TYPE"),
        ("Transfer-Encoding=chunked", "headers.Transfer-Encoding"),
        ("X-A=a\x0bb", "headers.X-A"),
        ("X-A=a\x7f", "headers.X-A"),
        ("X-A= padded", "headers.X-A"),
    ]:
        result = create(header)
        assert result.returncode == 2 and says in result.stderr, (header, result.stderr)
    result = create("X-A=1", "x-a=2")
    assert result.returncode == 2 and "headers.x-a" in result.stderr, result.stderr
    result = create("X-A=1", "X-A=2")
    assert result.returncode == 2 and "given twice" in result.stderr, result.stderr
    assert await redis.scard(keys.ENDPOINTS) == 0

    token = secrets.token_hex(12)
    result = create(f"Authorization=Bearer {token}")
    assert result.returncode == 0, result.stderr
    endpoint_id = result.stdout.split()[0]
    shown = run_cli("endpoints", "show", endpoint_id, env=env)
    listed = run_cli("endpoints", "ls", "--json", env=env)
    assert shown.returncode == 0 and listed.returncode == 0
    assert token not in shown.stdout + listed.stdout
    assert json.loads(shown.stdout)["headers"] == {"Authorization": MASK}
    assert json.loads(listed.stdout)[0]["headers"] == {"Authorization": MASK}


async def test_what_is_accepted_reaches_the_receiver_byte_for_byte(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis, receiver: MakeReceiver
) -> None:
    raw: list[list[tuple[bytes, bytes]]] = []

    async def keep(request: web.Request, n: int) -> web.StreamResponse:
        raw.append(list(request.raw_headers))
        return web.Response(status=204)

    target = await receiver(keep)
    base = serve(**SETTINGS).base
    serve(command="worker", HOOKGATE_WORKER_POLL_DELAY="20ms", **SETTINGS)
    token = secrets.token_hex(12)
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Inner-Space": "a b  c",
        "X-Inner-Tab": "a\tb",
        "X-Empty": "",
        "X-Ascii": "".join(chr(c) for c in range(0x21, 0x7F)),
        "X_Under": "u",
        "X-" + TCHAR[:15] + "z": "symbols",
        "x-lower": "kept as given",
    }
    body = {"business_id": "bus_d", "url": target.url, "headers": headers}
    status, created = await answer(http, "POST", base + "/v1/endpoints", body)
    assert status == 201, created
    event = {"business_id": "bus_d", "type": "payment.succeeded", "data": {"id": "pay_1"}}
    status, sent = await answer(http, "POST", base + "/v1/events", event)
    assert status == 202
    await target.wait_for(1, timeout=20)
    for name, value in headers.items():
        assert (name.encode(), value.encode()) in raw[0], name
    for own in (b"webhook-id", b"webhook-signature", b"content-type", b"user-agent"):
        assert len([n for n, _ in raw[0] if n.lower() == own]) == 1
    async with asyncio.timeout(10):
        while True:
            status, got = await answer(
                http, "GET", f"{base}/v1/deliveries/{sent['deliveries'][0]}", None
            )
            if got["status"] == "succeeded":
                break
            await asyncio.sleep(0.05)
    assert token.encode() not in await redis_dump(redis)
