"""The portal's API keys page: operators create (the key shown once), list and revoke keys
behind the portal's CSRF checks; a merchant's session finds no such page."""

from __future__ import annotations

import html
import re
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from support import AUTH, TOKEN

from gateway.store import keys

Client = TestClient[Any, Any]
KEY_RE = re.compile(r'<pre class="secret" id="api-key">(hgk_(key_[0-9A-Z]{26})_[^<]+)</pre>')


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def text(resp: Any, status: int = 200) -> str:
    body: str = await resp.text()
    assert resp.status == status, body[:3000]
    return body


async def browser(api: Client) -> Client:
    client = TestClient(TestServer(api.app))
    await client.start_server()
    return client


async def sign_in(client: Client) -> str:
    """Signs in as an operator; returns the session's CSRF token."""
    page = await text(await client.get("/portal/login"))
    resp = await client.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": TOKEN, "next": "/portal/api-keys"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return csrf_of(await text(await client.get("/portal/api-keys")))


async def merchant(api: Client, client: Client, business: str) -> str:
    """Opens a portal link for ``business``; returns the session's CSRF token."""
    resp = await api.post(f"/v1/businesses/{business}/portal-links", headers=AUTH)
    url = (await resp.json())["url"]
    path = url[url.index("/portal/") :]
    page = await text(await client.get(path))
    resp = await client.post(path, data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert resp.status == 303
    return csrf_of(await text(await client.get("/portal/endpoints")))


def form(csrf: str, *scopes: str, **fields: str) -> list[tuple[str, str]]:
    return [("csrf", csrf), *(("scope", s) for s in scopes), *fields.items()]


async def create(client: Client, csrf: str, *scopes: str, **fields: str) -> tuple[str, str]:
    """Creates a key through the form; returns its id and the key shown."""
    resp = await client.post("/portal/api-keys", data=form(csrf, *scopes, **fields))
    page = await text(resp)
    match = KEY_RE.search(page)
    assert match, page[:3000]
    return match[2], html.unescape(match[1])


async def test_an_operator_creates_a_key_seen_once_and_lists_it(api: Client) -> None:
    client = await browser(api)
    try:
        csrf = await sign_in(client)
        page = await text(await client.get("/portal/api-keys"))
        assert "No API keys yet" in page and 'href="/portal/api-keys"' in page  # in the nav
        fields = {"name": "support desk", "business_id": "bus_a", "expires": "90d"}
        key_id, key = await create(client, csrf, "read", "deliveries:replay", **fields)
        page = await text(await client.get("/portal/api-keys"))
        assert key_id in page and "support desk" in page and "bus_a" in page
        assert "deliveries:replay" in page and "active" in page
        assert key not in page and key[-43:] not in page
        # the key works, for its business only
        resp = await api.get(
            "/v1/endpoints?business_id=bus_b", headers={"Authorization": f"Bearer {key}"}
        )
        assert resp.status == 200 and (await resp.json())["data"] == []
        resp = await api.get("/v1/api-keys", headers=AUTH)
        [shown] = (await resp.json())["data"]
        assert shown["id"] == key_id and shown["expires_at"] is not None
    finally:
        await client.close()


async def test_an_operator_revokes_a_key(api: Client) -> None:
    client = await browser(api)
    try:
        csrf = await sign_in(client)
        key_id, key = await create(client, csrf, "read", name="old")
        bearer = {"Authorization": f"Bearer {key}"}
        assert (await api.get("/v1/endpoints", headers=bearer)).status == 200
        # without the form's CSRF token nothing happens
        resp = await client.post(f"/portal/api-keys/{key_id}/revoke", data={"csrf": "nope"})
        assert resp.status == 403
        assert (await api.get("/v1/endpoints", headers=bearer)).status == 200
        resp = await client.post(
            f"/portal/api-keys/{key_id}/revoke", data={"csrf": csrf}, allow_redirects=False
        )
        assert resp.status == 303 and resp.headers["Location"] == "/portal/api-keys?notice=revoked"
        page = await text(await client.get(resp.headers["Location"]))
        assert "The key is revoked" in page and "revoked" in page
        assert (await api.get("/v1/endpoints", headers=bearer)).status == 401
        # an unknown key is a 404 page
        resp = await client.post(
            "/portal/api-keys/key_01JD0000000000000000000000/revoke", data={"csrf": csrf}
        )
        assert "no API key" in await text(resp, 404)
    finally:
        await client.close()


async def test_bad_input_redisplays_the_form_with_the_reason(api: Client, redis: ArqRedis) -> None:
    client = await browser(api)
    try:
        csrf = await sign_in(client)
        cases = [
            (form(csrf, "read", name=""), "name:"),
            (form(csrf, name="k"), "scopes:"),
            (form(csrf, "superuser", name="k"), "scopes[0]:"),
            (form(csrf, "admin", name="k", business_id="bus_a"), "admin cannot be bound"),
            (form(csrf, "read", name="k", business_id="a b"), "business_id:"),
            (form(csrf, "read", name="k", expires="soon"), "expires:"),
            (form(csrf, "read", name="k", expires="2001-01-01T00:00:00Z"), "expires_at:"),
        ]
        for data, said in cases:
            page = await text(await client.post("/portal/api-keys", data=data), 422)
            assert said in html.unescape(page), said
            assert 'name="name"' in page  # the form again, with what was typed
        resp = await client.post("/portal/api-keys", data=form("wrong", "read", name="k"))
        assert resp.status == 403
        assert await redis.scard(keys.API_KEYS) == 0
    finally:
        await client.close()


async def test_a_merchant_finds_no_api_keys_page(api: Client, redis: ArqRedis) -> None:
    operator, shop = await browser(api), await browser(api)
    try:
        key_id, key = await create(operator, await sign_in(operator), "read", name="k")
        csrf = await merchant(api, shop, "bus_a")
        page = await text(await shop.get("/portal/endpoints"))
        assert "/portal/api-keys" not in page  # not in the merchant's navigation
        assert "no such page" in await text(await shop.get("/portal/api-keys"), 404)
        await text(await shop.post("/portal/api-keys", data=form(csrf, "read", name="x")), 404)
        resp = await shop.post(f"/portal/api-keys/{key_id}/revoke", data={"csrf": csrf})
        await text(resp, 404)
        assert await redis.scard(keys.API_KEYS) == 1
        assert (
            await api.get("/v1/endpoints", headers={"Authorization": f"Bearer {key}"})
        ).status == 200
    finally:
        await operator.close()
        await shop.close()


async def test_signed_out_the_page_asks_to_sign_in(api: Client) -> None:
    resp = await api.get("/portal/api-keys", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/portal/login?next=")
