"""Ordered endpoints in the delivery portal: the endpoint page lists its blocked ordering keys
and skips one through a CSRF-checked form (audited, scoped to the session's business); the
delivery page shows a delivery's key and number; bad keys, a key nothing holds and a head with
an open attempt are said on the page, never a 500."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from markupsafe import escape
from support import AUTH
from test_portal import (
    Client,
    MakeReceiver,
    Start,
    Switch,
    csrf_of,
    delivery,
    endpoint,
    fresh_client,
    message_of,
    open_link,
    portal_link,
    settled,
    sign_in,
    text,
)
from test_portal_isolation import shape, unknown

from gateway.core.settings import Settings

SKIP_FORM_RE = re.compile(
    r'<form method="post" action="(/portal/endpoints/ep_[0-9A-Z]{26}/ordering/skip)"[^>]*>\s*'
    r'<input type="hidden" name="csrf" value="([^"]+)">\s*'
    r'<input type="hidden" name="key" value="([^"]*)">'
)


def skip_forms(page: str) -> dict[str, tuple[str, str]]:
    """The page's Skip forms: key → (action, csrf), as a browser would send them."""
    return {html.unescape(key): (action, csrf) for action, csrf, key in SKIP_FORM_RE.findall(page)}


async def keyed_event(api: Client, key: str, business: str = "bus_a", n: int = 0) -> str:
    """An event with ordering key ``key``; returns its one delivery."""
    body = {"business_id": business, "type": "payment.succeeded", "data": {"n": n}}
    resp = await api.post("/v1/events", json={**body, "ordering_key": key}, headers=AUTH)
    assert resp.status == 202, await resp.text()
    [delivery_id] = (await resp.json())["deliveries"]
    assert isinstance(delivery_id, str)
    return delivery_id


async def blocked(api: Client, endpoint_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/v1/endpoints/{endpoint_id}/ordering/blocked", headers=AUTH)
    assert resp.status == 200, await resp.text()
    rows: list[dict[str, Any]] = (await resp.json())["data"]
    return rows


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def fast_worker(start_worker: Start, settings: Settings) -> None:
    """A worker that retries twice, 10 ms apart: a failing head is spent within a second."""
    await start_worker(dataclasses.replace(settings, retry_schedule=(0.01, 0.01)))


async def test_blocked_keys_are_listed_and_one_is_skipped_from_the_page(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    switch = Switch()
    target = await receiver(switch)
    ep = await endpoint(api, target.url, ordered=True, on_exhausted="block")
    key, other = 'sub <1> & "x"', "sub_2"  # markup in a key is shown and sent back as text
    head, waiting = [await keyed_event(api, key, n=n) for n in range(2)]
    lone = await keyed_event(api, other, n=2)
    await fast_worker(start_worker, settings)

    async def both_blocked() -> bool:
        return len(await blocked(api, ep["id"])) == 2

    await until(both_blocked)
    csrf = await sign_in(api)
    page = await text(await api.get(f"/portal/endpoints/{ep['id']}"))
    assert "Ordered delivery per key (on exhausted: block)" in page
    assert "<h2>Blocked keys</h2>" in page and key not in page and escape(key) in page
    for head_id in (head, lone):
        assert f'<a href="/portal/deliveries/{head_id}"><code>{head_id}</code></a>' in page
    rows = re.findall(
        r'<td><code>([^<]*)</code></td>\s*<td><a href="/portal/deliveries/([^"]+)">.*?</td>\s*'
        r'<td>([^<]+)</td>\s*<td class="num">(\d+)</td>',
        page,
    )
    assert {(html.unescape(k), d, n) for k, d, _, n in rows} == {
        (key, head, "1"),
        (other, lone, "0"),
    }
    assert all(since.endswith(" UTC") for _, _, since, _ in rows)
    forms = skip_forms(page)
    assert set(forms) == {key, other} and {c for _, c in forms.values()} == {csrf}

    # The delivery pages say the key and the number; the waiting one says what it waits for.
    shown = await text(await api.get(f"/portal/deliveries/{waiting}"))
    assert f"<code>{escape(key)}</code> · number 2 of the key on this endpoint" in shown
    assert "it waits for the earlier deliveries of its ordering key" in shown
    shown = await text(await api.get(f"/portal/deliveries/{head}"))
    assert "number 1 of the key" in shown and "s-failed" in shown

    # Skip: back to the endpoint page, which says what was skipped and what goes now.
    switch.working = True
    action, token = forms[key]
    resp = await api.post(action, data={"csrf": token, "key": key}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    location = resp.headers["Location"]
    assert location == f"/portal/endpoints/{ep['id']}?notice=skipped&skipped={head}&next={waiting}"
    page = await text(await api.get(location))
    notice = re.search(r'<p class="alert good" role="status">Skipped (.*?)</p>', page)
    assert notice is not None and head in notice.group(1) and waiting in notice.group(1)
    assert (await settled(api, waiting))["status"] == "succeeded"
    assert (await delivery(api, head))["status"] == "failed"  # still there, replayable
    page = await text(await api.get(f"/portal/endpoints/{ep['id']}"))
    assert set(skip_forms(page)) == {other}

    # The last one: nothing waits behind it.
    action, token = skip_forms(page)[other]
    resp = await api.post(action, data={"csrf": token, "key": other}, allow_redirects=False)
    assert resp.headers["Location"] == f"/portal/endpoints/{ep['id']}?notice=skipped&skipped={lone}"
    page = await text(await api.get(resp.headers["Location"]))
    assert "No delivery of the key was waiting." in page and "No blocked keys." in page
    assert await blocked(api, ep["id"]) == []

    # Each skip is in the audit log, by the portal session, naming the skipped delivery.
    resp = await api.get("/v1/audit-log", headers=AUTH)
    entries = [e for e in (await resp.json())["data"] if e["actor"]["kind"] == "portal"]
    skips = [e for e in entries if ep["id"] in e["targets"] and e["outcome"] == "success"]
    assert [e["targets"] for e in skips] == [[ep["id"], lone], [ep["id"], head, waiting]]
    assert {e["business_id"] for e in skips} == {"bus_a"}


async def test_a_notice_in_the_query_names_only_delivery_ids(
    api: Client, receiver: MakeReceiver
) -> None:
    target = await receiver()
    ep = await endpoint(api, target.url, ordered=True)
    await sign_in(api)
    page = await text(
        await api.get(f"/portal/endpoints/{ep['id']}?notice=skipped&skipped=%3Cb%3Ehi%3C/b%3E")
    )
    assert 'role="status"' not in page and "&lt;b&gt;" not in page and "<b>" not in page
    assert "No blocked keys." in page


async def test_bad_keys_unknown_keys_and_forged_forms_are_said_on_the_page(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver(Switch())
    ep = await endpoint(api, target.url, ordered=True)
    head = await keyed_event(api, "sub_1")
    await fast_worker(start_worker, settings)

    async def is_blocked() -> bool:
        return len(await blocked(api, ep["id"])) == 1

    await until(is_blocked)
    csrf = await sign_in(api)
    path = f"/portal/endpoints/{ep['id']}/ordering/skip"
    cases: list[tuple[dict[str, str], int, str]] = [
        ({}, 422, "key: must be a string of 1-200 printable characters"),
        ({"key": ""}, 422, "key: must be a string of 1-200 printable characters"),
        ({"key": "k" * 201}, 422, "key: must be a string of 1-200 printable characters"),
        ({"key": "a\x01b"}, 422, "key: must be a string of 1-200 printable characters"),
        ({"key": "line\u2028break"}, 422, "key: must be"),
        ({"key": "sub_never"}, 404, "no delivery holds ordering key 'sub_never' on this endpoint"),
    ]
    for form, status, said in cases:
        page = await text(await api.post(path, data={"csrf": csrf, **form}), status)
        assert message_of(page).startswith(said), (form, message_of(page))
        assert "<h2>Blocked keys</h2>" in page  # the endpoint page, with what went wrong
    # Another endpoint id, or none: the portal's one not-found page.
    for other in (unknown("ep"), "whatever"):
        resp = await api.post(
            f"/portal/endpoints/{other}/ordering/skip", data={"csrf": csrf, "key": "sub_1"}
        )
        assert f"There is no endpoint {other!r}." in message_of(await text(resp, 404))
    # A missing, wrong or empty CSRF token, or a body that is not a form: refused, nothing skipped.
    for bad in ({}, {"csrf": "x" + csrf}, {"csrf": ""}):
        resp = await api.post(path, data={"key": "sub_1", **bad}, allow_redirects=False)
        assert resp.status == 403
        assert "security token" in message_of(await resp.text())
    resp = await api.post(path, json={"key": "sub_1", "csrf": csrf}, allow_redirects=False)
    assert resp.status == 403
    [still] = await blocked(api, ep["id"])
    assert still["head_delivery_id"] == head
    # The refusals that reached the page are in the audit log, as failures with their code.
    resp = await api.get("/v1/audit-log", headers=AUTH)
    failed = [
        e["detail"]
        for e in (await resp.json())["data"]
        if e["actor"]["kind"] == "portal" and ep["id"] in e["targets"]
    ]
    assert (failed.count("validation_failed"), failed.count("not_found")) == (5, 1)


async def test_a_head_with_an_open_attempt_is_not_skipped(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    release = asyncio.Event()

    async def hold(request: web.Request, n: int) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"ok": True})

    target = await receiver(hold)
    ep = await endpoint(api, target.url, ordered=True)
    head = await keyed_event(api, "sub_1")
    later = await keyed_event(api, "sub_1", n=1)
    await start_worker(dataclasses.replace(settings, delivery_timeout=10.0))  # held, not timed out
    csrf = await sign_in(api)
    try:
        await target.wait_for(1)
        resp = await api.post(
            f"/portal/endpoints/{ep['id']}/ordering/skip", data={"csrf": csrf, "key": "sub_1"}
        )
        said = message_of(await text(resp, 409))
        assert said.startswith(f"an attempt of the key's head {head} is open right now")
    finally:
        release.set()
    assert (await settled(api, head))["status"] == "succeeded"
    assert (await settled(api, later))["status"] == "succeeded"


async def test_a_merchant_skips_on_its_own_endpoints_only(api: Client) -> None:
    """No worker: each key's head stays pending, which a skip takes too."""
    mine = await endpoint(api, "http://127.0.0.1:9/a", "bus_a", ordered=True)
    theirs = await endpoint(api, "http://127.0.0.1:9/b", "bus_b", ordered=True)
    their_head = await keyed_event(api, "sub_1", "bus_b")
    my_head = await keyed_event(api, "sub_1", "bus_a")
    merchant = await fresh_client(api)
    try:
        await open_link(merchant, await portal_link(api, "bus_a"))
        csrf = csrf_of(await text(await merchant.get("/portal/endpoints")))
        answers = []
        for given in (theirs["id"], unknown("ep")):
            resp = await merchant.post(
                f"/portal/endpoints/{given}/ordering/skip",
                data={"csrf": csrf, "key": "sub_1"},
                allow_redirects=False,
            )
            answers.append(await shape(resp, given))
        assert answers[0] == answers[1] and answers[0][0] == 404
        assert "bus_b" not in answers[0][1]
        view = await delivery(api, their_head)
        assert (view["status"], view["reason"]) == ("pending", None)

        resp = await merchant.post(
            f"/portal/endpoints/{mine['id']}/ordering/skip",
            data={"csrf": csrf, "key": "sub_1"},
            allow_redirects=False,
        )
        assert resp.status == 303
        assert resp.headers["Location"].endswith(f"skipped={my_head}")
        view = await delivery(api, my_head)
        assert (view["status"], view["reason"]) == ("failed", "skipped")
    finally:
        await merchant.close()


async def test_unordered_endpoints_and_deliveries_show_no_ordering(
    api: Client, receiver: MakeReceiver
) -> None:
    target = await receiver()
    plain = await endpoint(api, target.url)
    skipping = await endpoint(api, target.url, ordered=True, on_exhausted="skip")
    body = {
        "business_id": "bus_a",
        "type": "payment.succeeded",
        "data": {},
        "ordering_key": "sub_1",
    }
    resp = await api.post("/v1/events", json=body, headers=AUTH)
    sent = (await resp.json())["deliveries"]  # one to each: only the ordered one numbers it
    assert resp.status == 202 and len(sent) == 2
    await sign_in(api)
    page = await text(await api.get(f"/portal/endpoints/{plain['id']}"))
    assert "none: deliveries go concurrently, in any order" in page
    assert "Blocked keys" not in page and "Ordered delivery" not in page
    page = await text(await api.get(f"/portal/endpoints/{skipping['id']}"))
    assert "Ordered delivery per key (on exhausted: skip)" in page
    assert "so its keys do not block" in page and "No blocked keys." in page
    found = {(view := await delivery(api, d))["endpoint_id"]: view["id"] for d in sent}
    page = await text(await api.get(f"/portal/deliveries/{found[plain['id']]}"))
    assert "Ordering key" not in page
    page = await text(await api.get(f"/portal/deliveries/{found[skipping['id']]}"))
    assert "<code>sub_1</code> · number 1 of the key on this endpoint" in page


def test_the_rebuilt_request_headers_show_the_ordering_headers_and_the_scheme() -> None:
    from gateway.web.portal.views import request_headers

    shown = dict(request_headers("evt_1", 1_700_000_000, {}, ordering=("sub 1", 7)))
    assert shown["webhook-ordering-key"] == "sub%201"
    assert shown["webhook-sequence"] == "7"
    assert shown["webhook-signature"] == "v1,…"
    plain = dict(request_headers("evt_1", 1_700_000_000, {}, signing="ed25519"))
    assert "webhook-sequence" not in plain and plain["webhook-signature"] == "v1a,…"


async def test_the_create_form_makes_ordered_and_ed25519_endpoints_and_refuses_bad_choices(
    api: Client,
) -> None:
    csrf = await sign_in(api)
    base = {"csrf": csrf, "business_id": "bus_form", "url": "http://127.0.0.1:9/hook"}
    page = await text(await api.get("/portal/endpoints"))
    assert 'name="ordered"' in page and 'name="on_exhausted"' in page and 'name="signing"' in page

    made = {**base, "ordered": "on", "on_exhausted": "skip", "signing": "ed25519"}
    page = await text(await api.post("/portal/endpoints", data=made))
    assert "whpk_" in page and "whsk_" not in page
    listed = await (await api.get("/v1/endpoints?business_id=bus_form", headers=AUTH)).json()
    [e] = listed["data"]
    assert (e["ordered"], e["on_exhausted"], e["signing"]) == (True, "skip", "ed25519")

    plain = await text(await api.post("/portal/endpoints", data={**base, "url": base["url"] + "2"}))
    assert "whsec_" in plain
    listed = await (await api.get("/v1/endpoints?business_id=bus_form", headers=AUTH)).json()
    assert sorted(x["ordered"] for x in listed["data"]) == [False, True]

    for field, bad in (("ordered", "yes"), ("on_exhausted", "retry"), ("signing", "rsa")):
        resp = await api.post("/portal/endpoints", data={**base, field: bad})
        page = await text(resp, 422)
        assert field in message_of(page), message_of(page)
    listed = await (await api.get("/v1/endpoints?business_id=bus_form", headers=AUTH)).json()
    assert len(listed["data"]) == 2  # nothing stored by the refused forms
