"""The audit log and the delivery portal: every portal change recorded with the session that
made it (an operator's, a merchant's), successful and failed sign-ins, refused attempts, the
budget that bounds failed sign-ins, and the Activity page (a merchant sees only its business;
filters, pages, bad input)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient
from conftest import Receiver
from support import AUTH, TOKEN
from test_audit import create_endpoint, entries, only, send_event, settled
from test_portal import (
    EP_RE,
    csrf_of,
    fresh_client,
    message_of,
    open_link,
    portal_link,
    sign_in,
    text,
)

from gateway.core.settings import Settings

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]

REF_RE = re.compile(r"^ps_[0-9a-f]{12}$")
ANONYMOUS = {"kind": "anonymous", "id": "anonymous", "name": ""}
KEY_ID_RE = re.compile(r"key_[0-9A-Z]{26}")


async def wrong_sign_in(client: Client, token: str = TOKEN + "-wrong") -> int:
    page = await text(await client.get("/portal/login"))
    resp = await client.post(
        "/portal/login", data={"csrf": csrf_of(page), "token": token}, allow_redirects=False
    )
    return resp.status


def cookie_of(client: Client) -> str:
    value: str = client.session.cookie_jar.filter_cookies(client.make_url("/portal/"))[
        "hg_portal"
    ].value
    return value


async def test_an_operators_portal_changes_name_its_session(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    merchant_site = await receiver()
    guesser = await fresh_client(api)
    try:
        assert await wrong_sign_in(guesser) == 401
    finally:
        await guesser.close()
    csrf = await sign_in(api)

    async def post(path: str, expect: int = 303, **form: str) -> str:
        resp = await api.post(path, data={"csrf": csrf, **form}, allow_redirects=False)
        body = await resp.text()
        assert resp.status == expect, body[:2000]
        return resp.headers.get("Location", body)

    page = await post(
        "/portal/endpoints", 200, business_id="bus_p", url=merchant_site.url, headers="X-T: v"
    )
    found = EP_RE.search(page)
    assert found is not None
    ep = found.group(0)
    await post(f"/portal/endpoints/{ep}/disable", reason="maintenance")
    await post(f"/portal/endpoints/{ep}/enable")
    await post(f"/portal/endpoints/{ep}/rotate-secret", 200)
    tested = await post(f"/portal/endpoints/{ep}/test")  # → /portal/deliveries/dlv_…?notice=test
    test_delivery = tested.split("/")[-1].split("?")[0]
    test_event = "evt_" + test_delivery[4:30]  # a delivery's id holds its event's
    await start_worker(settings)
    [dlv] = (await send_event(api, "bus_p"))["deliveries"]
    await settled(api, dlv)
    await post(f"/portal/deliveries/{dlv}/replay")
    started = await post("/portal/recover", endpoint_id=ep, since="1h", status="all")
    replay = started.split("/")[-1]  # → /portal/replays/rpl_…
    # a forged form from a signed-in browser: refused, and recorded as such
    resp = await api.post(f"/portal/endpoints/{ep}/disable", data={"csrf": "forged"})
    assert resp.status == 403
    await post("/portal/logout")

    found_entries = await entries(api)
    signed_in = [e for e in found_entries if e["action"] == "portal.sign_in"]
    assert [e["outcome"] for e in signed_in] == ["success", "failure"]
    ok, failed = signed_in
    assert failed["actor"] == ANONYMOUS and failed["client"] == "127.0.0.1"
    assert (failed["status"], failed["detail"], failed["business_id"]) == (401, "wrong_token", None)
    ref = ok["actor"]["id"]
    assert REF_RE.match(ref) and ok["actor"] == {"kind": "portal", "id": ref, "name": "operator"}
    assert ok["business_id"] is None and ok["status"] == 303
    session_entries = [e for e in found_entries if e["actor"]["id"] == ref]
    got = [(e["action"], e["targets"], e["outcome"], e["business_id"]) for e in session_entries]
    assert got == [
        ("portal.sign_out", [], "success", None),
        ("endpoint.disable", [ep], "failure", "bus_p"),
        ("endpoint.replay", [ep, replay], "success", "bus_p"),
        ("delivery.replay", [dlv], "success", "bus_p"),
        ("endpoint.test", [ep, test_event, test_delivery], "success", "bus_p"),
        ("endpoint.rotate_secret", [ep], "success", "bus_p"),
        ("endpoint.enable", [ep], "success", "bus_p"),
        ("endpoint.disable", [ep], "success", "bus_p"),
        ("endpoint.create", [ep], "success", "bus_p"),
        ("portal.sign_in", [], "success", None),
    ]
    assert session_entries[1]["detail"] == "forbidden" and session_entries[1]["status"] == 403
    assert all(e["client"] == "127.0.0.1" for e in session_entries)


async def test_a_merchants_portal_changes_name_its_session_and_business(api: Client) -> None:
    theirs = await create_endpoint(api, business="bus_x")
    link = await portal_link(api, "bus_m")
    merchant = await fresh_client(api)
    stranger = await fresh_client(api)
    try:
        assert (await open_link(merchant, link)).status == 303
        cookie = cookie_of(merchant)
        # a link that does not open: a failed sign-in, by no one
        page = await text(await stranger.get("/portal/login"))
        resp = await stranger.post(
            "/portal/link/" + "A" * 43, data={"csrf": csrf_of(page)}, allow_redirects=False
        )
        assert resp.status == 404
        csrf = csrf_of(await text(await merchant.get("/portal/endpoints")))
        resp = await merchant.post(
            "/portal/endpoints",
            data={"csrf": csrf, "url": "http://127.0.0.1:9/hook"},
            allow_redirects=False,
        )
        found = EP_RE.search(await text(resp))
        assert found is not None
        mine = found.group(0)
        for ep, status in ((mine, 303), (theirs, 404)):
            resp = await merchant.post(
                f"/portal/endpoints/{ep}/disable", data={"csrf": csrf}, allow_redirects=False
            )
            assert resp.status == status
    finally:
        await merchant.close()
        await stranger.close()

    bus_m = await entries(api, business_id="bus_m")
    link_entry, sign_in_entry, *changes = reversed(bus_m)
    assert link_entry["action"] == "portal_link.create" and link_entry["targets"] == ["bus_m"]
    assert link_entry["actor"]["id"] == "bootstrap"
    ref = sign_in_entry["actor"]["id"]
    assert sign_in_entry["actor"] == {"kind": "portal", "id": ref, "name": "merchant"}
    assert sign_in_entry["action"] == "portal.sign_in" and sign_in_entry["outcome"] == "success"
    assert REF_RE.match(ref) and ref[3:] not in (
        cookie,
        hashlib.sha256(cookie.encode()).hexdigest(),
    )
    assert ref[3:] not in hashlib.sha256(cookie.encode()).hexdigest()
    got = [(e["action"], e["targets"], e["outcome"], e["status"]) for e in changes]
    assert got == [
        ("endpoint.create", [mine], "success", 200),
        ("endpoint.disable", [mine], "success", 303),
        ("endpoint.disable", [theirs], "failure", 404),  # another business's: in its own log
    ]
    assert all(e["actor"]["id"] == ref for e in changes)
    assert [e["action"] for e in await entries(api, business_id="bus_x")] == ["endpoint.create"]
    failed = only(await entries(api, actor="anonymous"), "portal.sign_in")
    assert (failed["outcome"], failed["detail"], failed["business_id"]) == (
        "failure",
        "link_not_valid",
        None,
    )


async def test_failed_sign_ins_are_recorded_up_to_the_budget_then_refused_unrecorded(
    api: Client,
) -> None:
    for n in range(10):
        assert await wrong_sign_in(api, f"{TOKEN}-wrong-{n}") == 401
    assert await wrong_sign_in(api) == 429
    link = await portal_link(api, "bus_a")
    resp = await open_link(api, link)  # refused too: links share the budget
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    failures = await entries(api, action="portal.sign_in")
    assert len(failures) == 10
    assert all(e["actor"] == ANONYMOUS and e["detail"] == "wrong_token" for e in failures)


async def test_api_keys_made_and_revoked_in_the_portal_name_the_session(api: Client) -> None:
    csrf = await sign_in(api)
    resp = await api.post(
        "/portal/api-keys",
        data={"csrf": csrf, "name": "support", "scope": "read", "business_id": "bus_k"},
    )
    page = await text(resp)
    found = KEY_ID_RE.search(page)
    assert found is not None
    key_id = found.group(0)
    resp = await api.post(
        f"/portal/api-keys/{key_id}/revoke", data={"csrf": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    ref = only(await entries(api), "portal.sign_in")["actor"]["id"]
    for action in ("api_key.create", "api_key.revoke"):
        entry = only(await entries(api, business_id="bus_k"), action)
        assert entry["actor"] == {"kind": "portal", "id": ref, "name": "operator"}
        assert entry["targets"] == [key_id] and entry["outcome"] == "success"


# ---- the Activity page ------------------------------------------------------------------


def rows(page: str) -> list[str]:
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [r for r in body.split("<tr>")[1:] if "empty-row" not in r]


async def test_the_activity_page_shows_a_merchant_its_own_business_only(api: Client) -> None:
    mine = await create_endpoint(api, business="bus_m")
    theirs = await create_endpoint(api, business="bus_x")
    resp = await api.post("/v1/event-types", json={"name": "invoice.shown"}, headers=AUTH)
    assert resp.status == 201
    merchant = await fresh_client(api)
    try:
        await open_link(merchant, await portal_link(api, "bus_m"))
        page = await text(await merchant.get("/portal/activity"))
        assert 'href="/portal/activity" aria-current="page">Activity' in page
        assert mine in page and theirs not in page and "invoice.shown" not in page
        assert [("portal.sign_in" in r, "portal_link.create" in r) for r in rows(page)] == [
            (True, False),
            (False, True),
            (False, False),
        ]
        assert "Business</th>" not in page  # one business: no column for it
        # an operator's business filter does not widen a merchant's view
        page = await text(await merchant.get("/portal/activity?business_id=bus_x"))
        assert theirs not in page and len(rows(page)) == 3
    finally:
        await merchant.close()

    await sign_in(api)
    page = await text(await api.get("/portal/activity"))
    assert mine in page and theirs in page and "invoice.shown" in page
    page = await text(await api.get("/portal/activity?business_id=bus_x"))
    assert [theirs in r for r in rows(page)] == [True]
    page = await text(await api.get("/portal/activity?action=event_type.register"))
    assert len(rows(page)) == 1 and "invoice.shown" in page
    page = await text(await api.get("/portal/activity?actor=anonymous"))
    assert rows(page) == [] and "Nothing recorded matches." in page


async def test_the_activity_page_pages_and_refuses_bad_filters(api: Client) -> None:
    made = [await create_endpoint(api, business="bus_a") for _ in range(30)]
    await sign_in(api)
    page = await text(await api.get("/portal/activity?action=endpoint.create"))
    first = rows(page)
    older = re.search(r'href="/portal/activity(\?[^"]+)" rel="next"', page)
    assert len(first) == 25 and older is not None
    page = await text(await api.get("/portal/activity" + older.group(1).replace("&amp;", "&")))
    second = rows(page)
    assert len(second) == 5 and 'rel="next"' not in page and "← Newest" in page
    shown = [EP_RE.findall(r)[0] for r in first + second]
    assert shown == list(reversed(made))
    for query, field in [
        ("action=endpoint.explode", "action"),
        ("actor=no+such+actor", "actor"),
        ("cursor=garbage", "cursor"),
        ("since=yesterday", "since"),
        ("business_id=bus+a", "business_id"),
    ]:
        resp = await api.get(f"/portal/activity?{query}")
        assert resp.status == 422, query
        assert message_of(await resp.text()).startswith(field), query
