"""The delivery portal through aiohttp's test client: sign-in, sessions, portal links, CSRF,
business scoping, security headers, every form's bad input, and the pages against a real
worker and receiver."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from conftest import Receiver
from support import AUTH, TOKEN

from gateway.core.settings import Settings
from gateway.store import keys
from gateway.web.app import create_app
from gateway.web.portal.charts import hourly_chart, nice_ceiling
from gateway.web.portal.views import request_headers
from worker.signing import build_headers

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
EP_RE = re.compile(r"ep_[0-9A-Z]{26}")
DLV_RE = re.compile(r"dlv_[0-9A-Z]{26}[0-9a-f]{1,8}")


# ---- helpers ------------------------------------------------------------------------------


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def message_of(page: str) -> str:
    match = re.search(r'class="(?:error-message|alert bad)"[^>]*>([^<]*)<', page)
    assert match, page[:2000]
    return html.unescape(match.group(1))


async def text(resp: Any, status: int = 200) -> str:
    body: str = await resp.text()
    assert resp.status == status, body[:3000]
    return body


async def sign_in(client: Client, token: str = TOKEN) -> str:
    """Signs in as an operator; returns the session's CSRF token."""
    page = await text(await client.get("/portal/login"))
    resp = await client.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": token, "next": "/portal/endpoints"},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return csrf_of(await text(await client.get("/portal/endpoints")))


async def portal_link(api: Client, business: str, **body: Any) -> str:
    resp = await api.post(f"/v1/businesses/{business}/portal-links", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    url: str = (await resp.json())["url"]
    return url


async def open_link(client: Client, url: str) -> Any:
    """Follows a portal link as a browser would: the page, then its button."""
    path = url[url.index("/portal/") :]
    page = await text(await client.get(path))
    return await client.post(path, data={"csrf": csrf_of(page)}, allow_redirects=False)


async def fresh_client(api: Client) -> Client:
    """A second browser on the same gateway (its own cookie jar)."""
    client = TestClient(TestServer(api.app))
    await client.start_server()
    return client


async def endpoint(api: Client, url: str, business: str = "bus_a", **over: Any) -> dict[str, Any]:
    body = {"business_id": business, "url": url, **over}
    resp = await api.post("/v1/endpoints", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def event(api: Client, business: str = "bus_a", n: int = 0) -> dict[str, Any]:
    body = {"business_id": business, "type": "payment.succeeded", "data": {"n": n}}
    resp = await api.post("/v1/events", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def delivery(api: Client, delivery_id: str) -> dict[str, Any]:
    resp = await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
    result: dict[str, Any] = await resp.json()
    return result


async def settled(api: Client, delivery_id: str, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            view = await delivery(api, delivery_id)
            if view["status"] != "pending":
                return view
            await asyncio.sleep(0.05)


class Switch:
    """A receiver that answers 500 until it is switched on."""

    def __init__(self) -> None:
        self.working = False

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        if self.working:
            return web.json_response({"ok": True})
        return web.json_response({"error": "down for maintenance"}, status=500)


# ---- sign-in and sessions -----------------------------------------------------------------


async def test_pages_need_a_session(api: Client) -> None:
    resp = await api.get("/portal/deliveries?status=failed", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/portal/login?next=%2Fportal%2Fdeliveries%3Fstatus%3Dfailed"
    resp = await api.post("/portal/endpoints", data={"url": "http://x"}, allow_redirects=False)
    assert resp.status == 303
    assert (await (await api.get("/v1/endpoints", headers=AUTH)).json())["data"] == []
    resp = await api.get("/portal/replays/rpl_01JAAAAAAAAAAAAAAAAAAAAAAA/progress")
    assert resp.status == 401
    assert (
        (await api.get("/portal/", allow_redirects=False))
        .headers["Location"]
        .startswith("/portal/login")
    )


async def test_login_sets_a_strict_httponly_session_cookie(api: Client, redis: ArqRedis) -> None:
    page = await text(await api.get("/portal/login"))
    assert 'method="post"' in page and 'type="password"' in page
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": TOKEN, "next": "/portal/deliveries"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/portal/deliveries"
    cookies = resp.headers.getall("Set-Cookie")
    session = next(c for c in cookies if c.startswith("hg_portal="))
    flags = {part.strip().split("=")[0].lower() for part in session.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= flags
    assert "secure" not in flags  # plain http, no HOOKGATE_PUBLIC_URL: a browser would drop it
    assert "SameSite=Strict" in session and "Path=/portal" in session
    session_id = session.split(";")[0].split("=", 1)[1]
    assert len(session_id) >= 40
    # Redis holds a digest of the session id, never the id itself; the token appears nowhere.
    stored = [k.decode() async for k in redis.scan_iter(match=keys.PREFIX + "portal:*")]
    assert len(stored) == 1 and session_id not in stored[0]
    assert TOKEN not in str(await redis.hgetall(stored[0]))
    assert 0 < await redis.ttl(stored[0]) <= 12 * 3600
    page = await text(await api.get("/portal/endpoints"))
    assert "operator" in page


async def test_wrong_token_missing_csrf_and_token_in_url_do_not_sign_in(api: Client) -> None:
    page = await text(await api.get("/portal/login"))
    resp = await api.post(
        "/portal/login", data={"csrf": csrf_of(page), "token": TOKEN + "x"}, allow_redirects=False
    )
    body = await text(resp, 401)
    assert "not the admin token" in body
    assert not any(c.startswith("hg_portal=") for c in resp.headers.getall("Set-Cookie", []))
    resp = await api.post("/portal/login", data={"token": TOKEN}, allow_redirects=False)
    assert resp.status == 403
    resp = await api.post(
        "/portal/login", data={"csrf": "forged", "token": TOKEN}, allow_redirects=False
    )
    assert resp.status == 403
    await text(await api.get(f"/portal/login?token={TOKEN}"))
    resp = await api.get("/portal/endpoints", allow_redirects=False)
    assert resp.status == 303


async def test_sign_in_is_refused_for_a_while_after_ten_failures(
    api: Client, redis: ArqRedis
) -> None:
    async def attempt(token: str) -> ClientResponse:
        page = await text(await api.get("/portal/login"))
        return await api.post(
            "/portal/login", data={"csrf": csrf_of(page), "token": token}, allow_redirects=False
        )

    for n in range(10):
        assert (await attempt(f"{TOKEN}-wrong-{n}")).status == 401
    # the eleventh try is refused before the token is even looked at, the right one included
    refused = await attempt(TOKEN)
    body = await text(refused, 429)
    assert "Too many failed sign-ins" in body and "try again in 15 min" in body
    assert 850 <= int(refused.headers["Retry-After"]) <= 900
    assert not any(c.startswith("hg_portal=") for c in refused.headers.getall("Set-Cookie", []))
    key = "hg:portal:login-failures:127.0.0.1"
    assert int(await redis.get(key)) == 10 and 850 <= await redis.ttl(key) <= 900
    # when the window ends, the right token signs in again
    await redis.delete(key)
    assert (await attempt(TOKEN)).status == 303


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/v1/events", "/portal\\@evil"]
)
async def test_sign_in_goes_only_to_portal_pages(api: Client, target: str) -> None:
    page = await text(await api.get("/portal/login"))
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": TOKEN, "next": target},
        allow_redirects=False,
    )
    assert resp.headers["Location"] == "/portal/endpoints"


async def test_logout_ends_the_session_for_good(api: Client) -> None:
    csrf = await sign_in(api)
    cookie = api.session.cookie_jar.filter_cookies(api.make_url("/portal/"))["hg_portal"].value
    resp = await api.post("/portal/logout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/portal/login"
    assert 'hg_portal=""' in resp.headers["Set-Cookie"]
    # The old cookie replayed by hand no longer opens anything.
    again = await fresh_client(api)
    try:
        again.session.cookie_jar.update_cookies({"hg_portal": cookie}, again.make_url("/portal/"))
        resp = await again.get("/portal/endpoints", allow_redirects=False)
        assert resp.status == 303
    finally:
        await again.close()


# ---- security headers and CSRF ------------------------------------------------------------


async def test_security_headers_on_every_portal_response(api: Client) -> None:
    responses = [
        await api.get("/portal/login"),
        await api.get("/portal/endpoints", allow_redirects=False),
        await api.get("/portal/static/portal.css"),
        await api.get("/portal/static/portal.js"),
        await api.get("/portal/no-such-page"),
        await api.post("/portal/login", data={}),
    ]
    await sign_in(api)
    responses += [
        await api.get("/portal/endpoints"),
        await api.get("/portal/deliveries?status=nope"),
        await api.get("/portal/replays/rpl_01JAAAAAAAAAAAAAAAAAAAAAAA/progress"),
        await api.delete("/portal/endpoints"),
    ]
    for resp in responses:
        assert resp.headers["Content-Security-Policy"] == CSP, resp.url
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Referrer-Policy"] == "same-origin"
    statuses = [r.status for r in responses]
    assert statuses == [200, 303, 200, 200, 404, 403, 200, 422, 404, 405]
    page = await text(await api.get("/portal/endpoints"))
    # No inline script or style, nothing from another origin.
    assert "<script>" not in page and "style=" not in page and "<style" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page)


async def test_every_form_refuses_a_missing_or_wrong_csrf_token(
    api: Client, receiver: MakeReceiver
) -> None:
    target = await receiver()
    ep = await endpoint(api, target.url)
    sent = await event(api)
    csrf = await sign_in(api)
    posts = [
        ("/portal/endpoints", {"business_id": "bus_a", "url": target.url}),
        (f"/portal/endpoints/{ep['id']}/disable", {"reason": "forged"}),
        (f"/portal/endpoints/{ep['id']}/enable", {}),
        (f"/portal/endpoints/{ep['id']}/rotate-secret", {}),
        (f"/portal/endpoints/{ep['id']}/test", {}),
        (f"/portal/deliveries/{sent['deliveries'][0]}/replay", {}),
        ("/portal/recover", {"endpoint_id": ep["id"], "since": "1h"}),
        ("/portal/logout", {}),
    ]
    for path, form in posts:
        for bad in ({}, {"csrf": "x" + csrf}, {"csrf": ""}):
            resp = await api.post(path, data={**form, **bad}, allow_redirects=False)
            assert resp.status == 403, path
            assert "security token" in message_of(await resp.text())
        resp = await api.post(path, json={**form, "csrf": csrf}, allow_redirects=False)
        assert resp.status == 403, path  # not a form: never half understood
    after = await (await api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH)).json()
    assert not after["disabled"] and after["secret_count"] == 1
    assert len((await (await api.get("/v1/endpoints", headers=AUTH)).json())["data"]) == 1
    assert (await delivery(api, sent["deliveries"][0]))["replays"] == 0
    await text(await api.get("/portal/endpoints"))  # still signed in


# ---- portal links -------------------------------------------------------------------------


async def test_portal_link_api(api: Client) -> None:
    resp = await api.post("/v1/businesses/bus_a/portal-links")
    assert resp.status == 401
    before = time.time()
    resp = await api.post("/v1/businesses/bus_a/portal-links", headers=AUTH)
    assert resp.status == 201
    body = await resp.json()
    assert body["business_id"] == "bus_a"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/portal/link/[A-Za-z0-9_-]{43}", body["url"])
    expires = time.mktime(time.strptime(body["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(expires - time.timezone - (before + 86400)) < 5
    resp = await api.post("/v1/businesses/bus_a/portal-links", json={"ttl": "2h"}, headers=AUTH)
    assert resp.status == 201


async def test_behind_a_tls_proxy_links_use_the_public_url_and_cookies_are_secure(
    settings: Settings, redis: ArqRedis
) -> None:
    proxied = dataclasses.replace(settings, public_url="https://hooks.example.com")
    async with TestClient(TestServer(create_app(proxied, redis))) as client:
        resp = await client.post("/v1/businesses/bus_a/portal-links", headers=AUTH)
        url = (await resp.json())["url"]
        assert re.fullmatch(r"https://hooks\.example\.com/portal/link/[A-Za-z0-9_-]{43}", url)
        form = await client.get("/portal/login")
        pre = next(c for c in form.headers.getall("Set-Cookie") if c.startswith("hg_portal_pre="))
        assert "secure" in {part.strip().lower() for part in pre.split(";")[1:]}
        # (the test client speaks plain http, so it will not send a Secure cookie back itself)
        resp = await client.post(
            "/portal/login",
            data={"csrf": csrf_of(await text(form)), "token": TOKEN},
            headers={"Cookie": pre.split(";")[0]},
            allow_redirects=False,
        )
        assert resp.status == 303
        session = next(c for c in resp.headers.getall("Set-Cookie") if c.startswith("hg_portal="))
        flags = {part.strip().split("=")[0].lower() for part in session.split(";")[1:]}
        assert "secure" in flags


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/businesses/bus_a/portal-links", {"ttl": "0s"}, 422, "ttl"),
        ("/v1/businesses/bus_a/portal-links", {"ttl": "8d"}, 422, "ttl"),
        ("/v1/businesses/bus_a/portal-links", {"ttl": "soon"}, 422, "ttl"),
        ("/v1/businesses/bus_a/portal-links", {"ttl": 3600}, 422, "ttl"),
        ("/v1/businesses/bus_a/portal-links", {"ttl": None}, 422, "ttl"),
        ("/v1/businesses/bus_a/portal-links", {"scope": "all"}, 422, "scope"),
        ("/v1/businesses/bus_a/portal-links", [], 422, "body"),
        ("/v1/businesses/bus%20a/portal-links", {}, 422, "business_id"),
        ("/v1/businesses/bus_a/portal-links", "not json", 400, None),
    ],
)
async def test_portal_link_api_bad_input(
    api: Client, path: str, body: Any, status: int, field: str | None
) -> None:
    data = body.encode() if isinstance(body, str) else None
    kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
    resp = await api.post(path, headers=AUTH, **kwargs)
    assert resp.status == status, await resp.text()
    error = (await resp.json())["error"]
    if field is not None:
        assert error["details"]["field"] == field


async def test_portal_link_works_once(api: Client, redis: ArqRedis) -> None:
    url = await portal_link(api, "bus_a")
    token = url.rsplit("/", 1)[1]
    stored = [k.decode() async for k in redis.scan_iter(match=keys.PREFIX + "portal:link:*")]
    assert len(stored) == 1 and token not in stored[0]
    merchant = await fresh_client(api)
    other = await fresh_client(api)
    try:
        page = await text(await merchant.get(url[url.index("/portal/") :]))
        assert "bus_a" in page
        resp = await open_link(merchant, url)
        assert resp.status == 303 and resp.headers["Location"] == "/portal/endpoints"
        assert "SameSite=Strict" in resp.headers["Set-Cookie"]
        page = await text(await merchant.get("/portal/endpoints"))
        assert "business <code>bus_a</code>" in page
        # Used: a second browser gets nothing, and neither does the first one again.
        resp = await other.get(url[url.index("/portal/") :])
        assert "not valid" in message_of(await text(resp, 404))
        resp = await other.post(
            url[url.index("/portal/") :], data={"csrf": "x"}, allow_redirects=False
        )
        assert resp.status in (403, 404)
        assert (await other.get("/portal/endpoints", allow_redirects=False)).status == 303
    finally:
        await merchant.close()
        await other.close()


async def test_two_uses_at_once_open_one_session(api: Client) -> None:
    url = await portal_link(api, "bus_a")
    path = url[url.index("/portal/") :]
    clients = [await fresh_client(api) for _ in range(5)]
    try:
        pages = [await text(await c.get(path)) for c in clients]
        results = await asyncio.gather(
            *(
                c.post(path, data={"csrf": csrf_of(p)}, allow_redirects=False)
                for c, p in zip(clients, pages, strict=True)
            )
        )
        assert sorted(r.status for r in results) == [303, 404, 404, 404, 404]
    finally:
        for c in clients:
            await c.close()


async def test_portal_link_expires(api: Client) -> None:
    url = await portal_link(api, "bus_a", ttl="1s")
    path = url[url.index("/portal/") :]
    merchant = await fresh_client(api)
    try:
        page = await text(await merchant.get(path))
        await asyncio.sleep(1.1)
        assert "not valid" in message_of(await text(await merchant.get(path), 404))
        resp = await merchant.post(path, data={"csrf": csrf_of(page)}, allow_redirects=False)
        assert resp.status == 404
        assert (await merchant.get("/portal/endpoints", allow_redirects=False)).status == 303
    finally:
        await merchant.close()


async def test_a_link_session_ends_when_the_link_would_have(api: Client) -> None:
    url = await portal_link(api, "bus_a", ttl="2s")
    merchant = await fresh_client(api)
    try:
        resp = await open_link(merchant, url)
        assert (
            "Max-Age=1" in resp.headers["Set-Cookie"] or "Max-Age=2" in resp.headers["Set-Cookie"]
        )
        await text(await merchant.get("/portal/endpoints"))
        # The jar would drop the cookie itself; replay it after expiry to test the server.
        cookie = merchant.session.cookie_jar.filter_cookies(merchant.make_url("/portal/"))
        value = cookie["hg_portal"].value
        await asyncio.sleep(2.1)
        merchant.session.cookie_jar.update_cookies(
            {"hg_portal": value}, merchant.make_url("/portal/")
        )
        resp = await merchant.get("/portal/endpoints", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/portal/login")
    finally:
        await merchant.close()


async def test_a_merchant_sees_and_acts_on_its_own_business_only(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver()
    mine = await endpoint(api, target.url, "bus_a", description="mine")
    theirs = await endpoint(api, target.url, "bus_b", description="theirs")
    my_event = await event(api, "bus_a")
    their_event = await event(api, "bus_b")
    await start_worker(settings)
    their_delivery = (await settled(api, their_event["deliveries"][0]))["id"]
    await settled(api, my_event["deliveries"][0])
    resp = await api.post(
        f"/v1/endpoints/{theirs['id']}/replay", json={"since": "1h", "status": "all"}, headers=AUTH
    )
    their_replay = (await resp.json())["replay_id"]

    merchant = await fresh_client(api)
    try:
        await open_link(merchant, await portal_link(api, "bus_a"))
        page = await text(await merchant.get("/portal/endpoints"))
        assert mine["id"] in page and theirs["id"] not in page
        page = await text(await merchant.get("/portal/deliveries"))
        assert my_event["deliveries"][0] in page and their_delivery not in page
        # An operator's business filter does not widen a merchant's view.
        page = await text(await merchant.get("/portal/deliveries?business_id=bus_b"))
        assert their_delivery not in page
        page = await text(await merchant.get("/portal/endpoints?business_id=bus_b"))
        assert theirs["id"] not in page
        for path in [
            f"/portal/endpoints/{theirs['id']}",
            f"/portal/deliveries/{their_delivery}",
            f"/portal/events/{their_event['id']}",
            f"/portal/events?id={their_event['id']}",
            f"/portal/deliveries?endpoint_id={theirs['id']}",
            f"/portal/recover?endpoint_id={theirs['id']}&since=1h",
            f"/portal/replays/{their_replay}",
            f"/portal/replays/{their_replay}/progress",
        ]:
            resp = await merchant.get(path)
            assert resp.status == 404, path
            assert "bus_b" not in await resp.text()
        csrf = csrf_of(await text(await merchant.get("/portal/endpoints")))
        for path in [
            f"/portal/endpoints/{theirs['id']}/disable",
            f"/portal/endpoints/{theirs['id']}/rotate-secret",
            f"/portal/endpoints/{theirs['id']}/test",
            f"/portal/deliveries/{their_delivery}/replay",
        ]:
            assert (await merchant.post(path, data={"csrf": csrf})).status == 404, path
        resp = await merchant.post(
            "/portal/recover", data={"csrf": csrf, "endpoint_id": theirs["id"], "since": "1h"}
        )
        assert resp.status == 404
        after = await (await api.get(f"/v1/endpoints/{theirs['id']}", headers=AUTH)).json()
        assert not after["disabled"] and after["secret_count"] == 1
        assert (await delivery(api, their_delivery))["replays"] <= 1  # only the operator's replay
        # A new endpoint lands in the merchant's business whatever the form says.
        resp = await merchant.post(
            "/portal/endpoints", data={"csrf": csrf, "business_id": "bus_b", "url": target.url}
        )
        created = EP_RE.search(await text(resp))
        assert created is not None
        view = await (await api.get(f"/v1/endpoints/{created.group(0)}", headers=AUTH)).json()
        assert view["business_id"] == "bus_a"
        # Its own things all answer.
        for path in [
            f"/portal/endpoints/{mine['id']}",
            f"/portal/deliveries/{my_event['deliveries'][0]}",
            f"/portal/events/{my_event['id']}",
            f"/portal/recover?endpoint_id={mine['id']}&since=1h",
        ]:
            await text(await merchant.get(path))
    finally:
        await merchant.close()


# ---- bad input: 4xx pages, never a 500 ----------------------------------------------------


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"url": ""}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"business_id": ""}, "business_id"),
        ({"business_id": "bus a"}, "business_id"),
        ({"event_types": "payment.nonsense"}, "event_types[0]"),
        ({"event_types": "not a type!"}, "event_types[0]"),
        ({"headers": "no colon here"}, "headers"),
        ({"headers": "User-Agent: mine"}, "headers.User-Agent"),
        ({"headers": "webhook-id: x"}, "headers.webhook-id"),
        ({"max_in_flight": "many"}, "max_in_flight"),
        ({"max_in_flight": "0"}, "max_in_flight"),
        ({"description": "x" * 1025}, "description"),
    ],
)
async def test_endpoint_form_bad_input(api: Client, form: dict[str, str], field: str) -> None:
    csrf = await sign_in(api)
    data = {"csrf": csrf, "business_id": "bus_a", "url": "http://127.0.0.1:9/hook", **form}
    resp = await api.post("/portal/endpoints", data=data)
    page = await text(resp, 422)
    assert message_of(page).startswith(f"{field}:")
    # The form comes back with what was typed, and nothing was written.
    if form.get("url"):
        assert f'value="{html.escape(form["url"])}"' in page
    assert (await (await api.get("/v1/endpoints", headers=AUTH)).json())["data"] == []


async def test_bad_filters_and_unknown_ids(api: Client, receiver: MakeReceiver) -> None:
    target = await receiver()
    ep = await endpoint(api, target.url)
    await sign_in(api)
    cases = [
        ("/portal/deliveries?status=lost", 422, "status"),
        ("/portal/deliveries?event_type=not%20a%20type", 422, "event_type"),
        ("/portal/deliveries?since=yesterday", 422, "since"),
        ("/portal/deliveries?since=1h&until=2h", 422, "until"),
        ("/portal/deliveries?cursor=garbage", 422, "cursor"),
        ("/portal/deliveries?endpoint_id=nope", 422, "endpoint_id"),
        ("/portal/deliveries?business_id=bus%20a", 422, "business_id"),
        ("/portal/endpoints?business_id=bus%20a", 422, "business_id"),
        ("/portal/recover?since=1h", 422, "endpoint_id"),
        (f"/portal/recover?endpoint_id={ep['id']}&since=later", 422, "since"),
        (f"/portal/recover?endpoint_id={ep['id']}", 422, "since"),
        (f"/portal/recover?endpoint_id={ep['id']}&since=1h&status=some", 422, "status"),
        ("/portal/events?id=evt_123", 422, "id"),
        ("/portal/endpoints/ep_01JAAAAAAAAAAAAAAAAAAAAAAA", 404, None),
        ("/portal/endpoints/whatever", 404, None),
        ("/portal/deliveries/dlv_01JAAAAAAAAAAAAAAAAAAAAAAA0", 404, None),
        ("/portal/events/evt_01JAAAAAAAAAAAAAAAAAAAAAAA", 404, None),
        ("/portal/events?id=evt_01JAAAAAAAAAAAAAAAAAAAAAAA", 404, None),
        ("/portal/replays/rpl_01JAAAAAAAAAAAAAAAAAAAAAAA", 404, None),
        ("/portal/link/" + "x" * 500, 404, None),
    ]
    for path, status, field in cases:
        resp = await api.get(path)
        page = await text(resp, status)
        assert "text/html" in resp.headers["Content-Type"], path
        if field is not None:
            assert message_of(page).startswith(f"{field}:"), (path, message_of(page))


async def test_bad_posts(api: Client, receiver: MakeReceiver) -> None:
    target = await receiver()
    ep = await endpoint(api, target.url)
    csrf = await sign_in(api)
    unknown = "ep_01JAAAAAAAAAAAAAAAAAAAAAAA"
    cases: list[tuple[str, dict[str, str], int, str | None]] = [
        (f"/portal/endpoints/{ep['id']}/disable", {"reason": "r" * 501}, 422, "reason"),
        (f"/portal/endpoints/{unknown}/disable", {}, 404, None),
        (f"/portal/endpoints/{unknown}/test", {}, 404, None),
        ("/portal/deliveries/dlv_nope/replay", {}, 404, None),
        ("/portal/recover", {}, 422, "endpoint_id"),
        ("/portal/recover", {"endpoint_id": ep["id"]}, 422, "since"),
        ("/portal/recover", {"endpoint_id": ep["id"], "since": "2h", "until": "3h"}, 422, "until"),
        ("/portal/recover", {"endpoint_id": unknown, "since": "1h"}, 404, None),
    ]
    for path, form, status, field in cases:
        page = await text(await api.post(path, data={"csrf": csrf, **form}), status)
        if field is not None:
            assert message_of(page).startswith(f"{field}:"), path
    resp = await api.post(
        "/portal/endpoints",
        data=b"csrf=" + csrf.encode() + b"&url=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 400
    resp = await api.post(
        "/portal/endpoints",
        data=f"csrf={csrf}&description={'x' * 70_000}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 413
    # A disabled endpoint cannot get a test event: 409 with the reason.
    await api.post(f"/portal/endpoints/{ep['id']}/disable", data={"csrf": csrf})
    page = await text(
        await api.post(f"/portal/endpoints/{ep['id']}/test", data={"csrf": csrf}), 409
    )
    assert "enable it first" in message_of(page)


# ---- the pages, against a real worker and receiver ----------------------------------------


async def test_operator_manages_an_endpoint(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver()
    csrf = await sign_in(api)
    resp = await api.post(
        "/portal/endpoints",
        data={
            "csrf": csrf,
            "business_id": "bus_a",
            "url": target.url,
            "event_types": "payment.*, hookgate.test",
            "description": "orders",
            "headers": "X-Shop: one\n\nX-Env: test",
            "max_in_flight": "5",
        },
    )
    page = await text(resp)
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", page)
    assert secret is not None
    endpoint_id = EP_RE.search(page).group(0)  # type: ignore[union-attr]
    view = await (await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)).json()
    assert view["event_types"] == ["payment.*", "hookgate.test"]
    assert view["headers"] == {"X-Shop": "••••", "X-Env": "••••"}  # values are write-only
    assert view["max_in_flight"] == 5 and view["description"] == "orders"
    page = await text(await api.get(f"/portal/endpoints/{endpoint_id}"))
    assert secret.group(0) not in page and "whsec_" not in page
    listing = await text(await api.get("/portal/endpoints"))
    assert target.url in listing and "whsec_" not in listing

    # Rotate: a new secret, shown once.
    page = await text(
        await api.post(f"/portal/endpoints/{endpoint_id}/rotate-secret", data={"csrf": csrf})
    )
    rotated = re.search(r"whsec_[A-Za-z0-9+/=]+", page)
    assert rotated is not None and rotated.group(0) != secret.group(0)

    # Test event → the delivery page, which follows it until it arrives.
    await start_worker(settings)
    resp = await api.post(
        f"/portal/endpoints/{endpoint_id}/test", data={"csrf": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    location = resp.headers["Location"]
    delivery_id = DLV_RE.search(location).group(0)  # type: ignore[union-attr]
    await target.wait_for(1)
    done = await settled(api, delivery_id)
    assert done["status"] == "succeeded"
    page = await text(await api.get(location))
    assert "data-reload-while-pending" not in page and "s-succeeded" in page
    # The headers shown are the headers the receiver got (the signature redacted).
    got = {k.lower(): v for k, v in target.requests[0].headers.items()}
    shown = dict(re.findall(r"<tr><th>([^<]+)</th><td><code>([^<]*)</code></td></tr>", page))
    shown = {k: html.unescape(v) for k, v in shown.items()}
    assert shown.pop("webhook-signature") == "v1,…"
    assert got["webhook-signature"].startswith("v1,")
    assert (shown.pop("X-Shop"), shown.pop("X-Env")) == ("••••", "••••")  # values masked
    assert (got["x-shop"], got["x-env"]) == ("one", "test")
    assert shown == {k: got[k.lower()] for k in shown}
    assert set(shown) >= {"webhook-id", "webhook-timestamp", "user-agent"}
    assert "not store signatures" in page
    assert "&#34;type&#34;: &#34;hookgate.test&#34;" in page  # the payload, indented

    # The endpoint page: health and the hourly chart.
    page = await text(await api.get(f"/portal/endpoints/{endpoint_id}"))
    assert "100.0 %" in page and "<svg" in page and "1 succeeded, 0 failed" in page

    # Disable with a reason, then enable.
    resp = await api.post(
        f"/portal/endpoints/{endpoint_id}/disable",
        data={"csrf": csrf, "reason": "maintenance <b>window</b>"},
        allow_redirects=False,
    )
    assert resp.status == 303
    listing = await text(await api.get("/portal/endpoints"))
    assert "disabled" in listing and "maintenance &lt;b&gt;window&lt;/b&gt;" in listing
    await api.post(f"/portal/endpoints/{endpoint_id}/enable", data={"csrf": csrf})
    view = await (await api.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH)).json()
    assert not view["disabled"]


async def test_replay_from_the_detail_page_and_recover_a_window(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    switch = Switch()
    target = await receiver(switch)
    ep = await endpoint(api, target.url)
    sent = [await event(api, n=n) for n in range(3)]
    await start_worker(settings)
    ids = [s["deliveries"][0] for s in sent]
    for delivery_id in ids:
        assert (await settled(api, delivery_id))["status"] == "failed"
    csrf = await sign_in(api)
    page = await text(await api.get(f"/portal/deliveries/{ids[0]}"))
    assert "HTTP 500" in page and "down for maintenance" in page
    page = await text(await api.get("/portal/deliveries?status=failed"))
    assert all(d in page for d in ids)

    switch.working = True
    resp = await api.post(
        f"/portal/deliveries/{ids[0]}/replay", data={"csrf": csrf}, allow_redirects=False
    )
    assert resp.headers["Location"] == f"/portal/deliveries/{ids[0]}?notice=replayed"
    assert (await settled(api, ids[0]))["status"] == "succeeded"

    page = await text(await api.get(f"/portal/recover?endpoint_id={ep['id']}&since=1h"))
    assert re.search(r'<span id="matched">2</span>', page)
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    resp = await api.post("/portal/recover", data=form, allow_redirects=False)
    assert resp.status == 303
    replay_path = resp.headers["Location"]
    async with asyncio.timeout(10):
        while True:
            progress = await (await api.get(replay_path + "/progress")).json()
            if progress["state"] == "completed":
                break
            await asyncio.sleep(0.05)
    assert progress["succeeded"] == 2 and progress["done"] == progress["total"] == 2
    page = await text(await api.get(replay_path))
    assert 'data-progress-url="' + replay_path + '/progress"' in page
    assert f'<a href="{replay_path}">Refresh</a>' in page  # the no-JS way to follow it
    await target.wait_for(3 + 3 * 3)  # 3 attempts failed for each of 3, then 3 successes
    assert sorted(r.headers["webhook-id"] for r in target.requests[-3:]) == sorted(
        s["id"] for s in sent
    )


async def test_deliveries_paginate_newest_first(api: Client, receiver: MakeReceiver) -> None:
    target = await receiver()
    await endpoint(api, target.url)
    made = [(await event(api, n=n))["deliveries"][0] for n in range(30)]
    await sign_in(api)
    page = await text(await api.get("/portal/deliveries?event_type=payment.succeeded"))
    first = DLV_RE.findall(page)
    assert first[0] == made[-1] and len(dict.fromkeys(first)) == 25
    older = re.search(r'href="(/portal/deliveries\?[^"]+)" rel="next"', page)
    assert older is not None and "event_type=payment.succeeded" in older.group(1)
    page = await text(await api.get(html.unescape(older.group(1))))
    rest = list(dict.fromkeys(DLV_RE.findall(page)))
    assert rest == list(reversed(made[:5]))
    assert 'rel="next"' not in page and "← Newest" in page


async def test_event_lookup_shows_where_it_went(api: Client, receiver: MakeReceiver) -> None:
    one, two = await receiver(), await receiver()
    a = await endpoint(api, one.url)
    b = await endpoint(api, two.url)
    sent = await event(api)
    await sign_in(api)
    resp = await api.get(f"/portal/events?id={sent['id']}", allow_redirects=False)
    assert resp.headers["Location"] == f"/portal/events/{sent['id']}"
    page = await text(await api.get(resp.headers["Location"]))
    assert a["id"] in page and b["id"] in page
    assert all(d in page for d in sent["deliveries"])


# ---- pure parts ---------------------------------------------------------------------------


def test_nice_ceiling() -> None:
    assert [nice_ceiling(n) for n in (0, 1, 2, 3, 6, 11, 99, 101, 4000)] == [
        1,
        1,
        2,
        5,
        10,
        20,
        100,
        200,
        5000,
    ]


def test_hourly_chart_draws_stacked_bars() -> None:
    hourly = [
        {"hour": f"2026-01-01T{h:02d}:00:00.000Z", "ok": h % 3, "failed": 1 if h == 5 else 0}
        for h in range(24)
    ]
    svg = str(hourly_chart(hourly))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="ok"') == sum(1 for h in hourly if h["ok"])
    assert svg.count('class="failed"') == 1
    assert svg.count('class="empty"') == sum(1 for h in hourly if not h["ok"] and not h["failed"])
    assert "05:00 UTC: 2 succeeded, 1 failed" in svg
    assert "style=" not in svg  # the CSP allows no inline style
    quiet = str(hourly_chart([{"hour": "2026-01-01T00:00:00.000Z", "ok": 0, "failed": 0}]))
    assert 'class="empty"' in quiet


def test_request_headers_are_the_workers_with_the_signature_redacted() -> None:
    custom = {"X-Shop": "••••"}  # as the store shows them: values masked
    shown = request_headers("evt_1", 1_700_000_000, custom)
    sent = build_headers(
        msg_id="evt_1",
        timestamp=1_700_000_000,
        body=b"{}",
        secrets=("whsec_" + "A" * 32,),
        custom=custom,
    )
    assert [k for k, _ in shown] == list(sent)
    assert dict(shown) == {**sent, "webhook-signature": "v1,…"}
    # Values given in clear are masked all the same: the page never shows one.
    assert dict(request_headers("evt_1", 1_700_000_000, {"X-Shop": "one"}))["X-Shop"] == "••••"


async def test_openapi_documents_portal_links(api: Client) -> None:
    document = await (await api.get("/openapi.json")).json()
    operation = document["paths"]["/v1/businesses/{id}/portal-links"]["post"]
    assert set(operation["responses"]) >= {"201", "401", "422"}
