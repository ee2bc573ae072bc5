"""First-hour snags of the delivery portal, the API's attempt times and ``deliveries show``,
each against a real gateway, worker and receivers: attempts answer ``at`` as RFC 3339 with the
``webhook_timestamp`` sent; endpoints wear the state that is true of them and count delivered
deliveries apart from attempts; the newest failed answer is shown unfolded; a replay that
cannot happen says why before it is tried; deliveries name their endpoint's URL; a merchant
whose link ended is told so, never shown the operators' sign-in; the Events page lists recent
events, scoped to a merchant's business."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from arq.connections import ArqRedis
from click.testing import CliRunner
from support import AUTH, TOKEN
from test_portal import (
    Client,
    MakeReceiver,
    Start,
    csrf_of,
    delivery,
    endpoint,
    event,
    fresh_client,
    message_of,
    open_link,
    portal_link,
    settled,
    sign_in,
    text,
)

from gateway.cli.main import main as hookgate
from gateway.core.clock import now_ms
from gateway.core.settings import Settings
from gateway.store import keys

EVT_RE = re.compile(r"evt_[0-9A-Z]{26}")
RFC3339_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class FailsTwice:
    """A receiver whose first two answers to each webhook-id are 500, then 200: every
    delivery succeeds, on its third attempt."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        webhook_id = request.headers["webhook-id"]
        self.seen[webhook_id] = self.seen.get(webhook_id, 0) + 1
        if self.seen[webhook_id] <= 2:
            return web.json_response({"error": f"busy, try {webhook_id} again"}, status=500)
        return web.json_response({"ok": True})


async def down(request: web.Request, n: int) -> web.StreamResponse:
    return web.json_response({"error": "database unavailable"}, status=503)


async def typed_event(api: Client, kind: str, business: str = "bus_a") -> dict[str, Any]:
    body = {"business_id": business, "type": kind, "data": {}}
    resp = await api.post("/v1/events", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


def stat(page: str, name: str) -> str:
    """The value of the endpoint page's ``data-stat`` card ``name``."""
    match = re.search(rf'data-stat="{name}">([^<]*)<', page)
    assert match, page[:3000]
    return match.group(1)


def row_of(page: str, marker: str) -> str:
    """The table row of a listing that holds ``marker``."""
    for row in re.findall(r"<tr>.*?</tr>", page, flags=re.DOTALL):
        if marker in row:
            return str(row)
    raise AssertionError(f"no row holds {marker}")


# ---- attempts: `at` in RFC 3339, the webhook-timestamp beside it ---------------------------


async def test_an_attempt_answers_at_in_rfc3339_and_the_webhook_timestamp_sent(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver()
    await endpoint(api, target.url)
    sent = await event(api)
    await start_worker(settings)
    done = await settled(api, sent["deliveries"][0])
    [attempt] = done["attempts"]
    assert RFC3339_MS.fullmatch(attempt["at"]), attempt
    assert RFC3339_MS.fullmatch(done["created_at"])  # the same shape as every other time
    # the integer that was sent (and signed) is answered as it was sent
    assert attempt["webhook_timestamp"] == int(target.requests[0].headers["webhook-timestamp"])
    at = datetime.fromisoformat(attempt["at"].replace("Z", "+00:00"))
    assert at == datetime.fromtimestamp(attempt["webhook_timestamp"], UTC)
    # the event's view of its deliveries (no attempts there) and the replay answer agree
    replayed = await api.post(f"/v1/deliveries/{done['id']}/replay", headers=AUTH)
    assert replayed.status == 202, await replayed.text()
    again = await settled(api, done["id"])
    assert all(RFC3339_MS.fullmatch(a["at"]) for a in again["attempts"])
    assert [a["webhook_timestamp"] for a in again["attempts"]] == sorted(
        a["webhook_timestamp"] for a in again["attempts"]
    )


async def test_a_stored_attempt_keeps_reading_as_it_was_written(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings, redis: ArqRedis
) -> None:
    """What is stored is unchanged: the worker's record keeps ``at`` as unix seconds."""
    target = await receiver()
    await endpoint(api, target.url)
    sent = await event(api)
    await start_worker(settings)
    done = await settled(api, sent["deliveries"][0])
    [raw] = await redis.lrange(keys.delivery_attempts(done["id"]), 0, -1)
    stored = json.loads(raw)
    assert isinstance(stored["at"], int) and "webhook_timestamp" not in stored
    assert done["attempts"][0]["webhook_timestamp"] == stored["at"]


async def test_deliveries_show_prints_each_attempt_time(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver()
    await endpoint(api, target.url)
    sent = await event(api)
    await start_worker(settings)
    done = await settled(api, sent["deliveries"][0])
    url = str(api.make_url("")).rstrip("/")
    # The command is synchronous (urllib): run it off the loop that serves the gateway.
    result = await asyncio.to_thread(
        CliRunner().invoke,
        hookgate,
        ["deliveries", "show", done["id"], "--url", url, "--token", TOKEN],
    )
    assert result.exit_code == 0, result.output
    shown = done["attempts"][0]["at"].replace("T", " ")[:19]
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("#1"))
    assert f"#1  {shown}  200" in line, result.output


# ---- endpoints: what is true of them --------------------------------------------------------


async def test_endpoint_badges_say_active_failing_or_disabled(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    good, bad = await receiver(), await receiver(down)
    healthy = await endpoint(api, good.url, description="healthy")
    failing = await endpoint(api, bad.url, description="failing")
    retired = await endpoint(api, good.url + "/old", description="retired")
    resp = await api.post(
        f"/v1/endpoints/{retired['id']}/disable", json={"reason": "moved <b>away</b>"}, headers=AUTH
    )
    assert resp.status == 200
    sent = await event(api)
    await start_worker(settings)
    for delivery_id in sent["deliveries"]:
        await settled(api, delivery_id)
    await sign_in(api)
    listing = await text(await api.get("/portal/endpoints"))
    assert '<span class="status s-succeeded">active</span>' in row_of(listing, healthy["id"])
    row = row_of(listing, failing["id"])
    assert '<span class="status s-failing">failing</span>' in row and ">active<" not in row
    assert "since " in row and "3 failed attempts in a row" in row
    row = row_of(listing, retired["id"])
    assert '<span class="status s-disabled">disabled</span>' in row
    assert "moved &lt;b&gt;away&lt;/b&gt;" in row and ">active<" not in row

    page = await text(await api.get(f"/portal/endpoints/{failing['id']}"))
    state = re.search(r'<div class="state">(.*?)</div>', page, flags=re.DOTALL)
    assert state is not None
    assert "s-failing" in state.group(1) and "active" not in state.group(1)
    assert "3 failed attempts in a row" in state.group(1)
    page = await text(await api.get(f"/portal/endpoints/{retired['id']}"))
    assert '<span class="status s-disabled">disabled</span>' in page
    page = await text(await api.get(f"/portal/endpoints/{healthy['id']}"))
    assert '<span class="status s-succeeded">active</span>' in page


async def test_the_success_rate_counts_deliveries_apart_from_attempts(
    api: Client,
    receiver: MakeReceiver,
    start_worker: Start,
    settings: Settings,
    redis: ArqRedis,
) -> None:
    flaky, dead = await receiver(FailsTwice()), await receiver(down)
    retried = await endpoint(api, flaky.url, description="retried")
    failed = await endpoint(api, dead.url, description="dead")
    sent = [await event(api, n=n) for n in range(2)]
    await start_worker(settings)
    for s in sent:
        for delivery_id in s["deliveries"]:
            await settled(api, delivery_id)
    await sign_in(api)
    # Every delivery to the flaky endpoint arrived, on its third attempt.
    page = await text(await api.get(f"/portal/endpoints/{retried['id']}"))
    assert stat(page, "deliveries") == "100.0 %"
    assert "2 of 2 finished deliveries" in page
    assert stat(page, "success_rate") == "33.3 %" and "of 6 attempts<" in page
    labels = [
        re.sub(r"<[^>]+>", "", m)
        for m in re.findall(r'<span class="label"[^>]*>(.*?)</span><span', page)
    ]
    assert labels[:2] == ["Deliveries succeeded (24 h)", "Attempts succeeded (24 h)"]
    page = await text(await api.get(f"/portal/endpoints/{failed['id']}"))
    assert stat(page, "deliveries") == "0.0 %" and "0 of 2 finished deliveries" in page
    listing = await text(await api.get("/portal/endpoints"))
    row = row_of(listing, retried["id"])
    assert "100.0 %" in row and "2 of 2 finished deliveries" in row
    assert "33.3 % of 6 attempts" in row

    # Only the last 24 hours count, as for attempts.
    old_hour = now_ms() // 3_600_000 - 30
    await redis.hset(keys.endpoint_stats(retried["id"]), f"{old_hour}:dfail", 7)
    page = await text(await api.get(f"/portal/endpoints/{retried['id']}"))
    assert stat(page, "deliveries") == "100.0 %"


async def test_an_endpoint_with_no_finished_delivery_says_so(
    api: Client, receiver: MakeReceiver
) -> None:
    target = await receiver()
    ep = await endpoint(api, target.url)
    await event(api)  # pending: no worker runs
    await sign_in(api)
    page = await text(await api.get(f"/portal/endpoints/{ep['id']}"))
    assert stat(page, "deliveries") == "—" and "no delivery ended" in page


# ---- a delivery's page ----------------------------------------------------------------------


async def test_the_newest_failed_answer_is_unfolded(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver(FailsTwice())
    await endpoint(api, target.url)
    sent = await event(api)
    await start_worker(settings)
    done = await settled(api, sent["deliveries"][0])
    assert [a["outcome"] for a in done["attempts"]] == ["retry", "retry", "succeeded"]
    await sign_in(api)
    page = await text(await api.get(f"/portal/deliveries/{done['id']}"))
    articles = re.findall(r'<article class="attempt">(.*?)</article>', page, flags=re.DOTALL)
    assert [re.search(r"Attempt (\d)", a).group(1) for a in articles] == ["3", "2", "1"]  # type: ignore[union-attr]
    opened = ["<details open>" in a for a in articles]
    assert opened == [False, True, False]  # attempt 2: the newest that failed
    assert "busy, try" in articles[1]


async def test_replay_on_a_disabled_endpoint_says_why_instead_of_failing(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver(down)
    ep = await endpoint(api, target.url)
    sent = await event(api)
    await start_worker(settings)
    failed = await settled(api, sent["deliveries"][0])
    csrf = await sign_in(api)
    page = await text(await api.get(f"/portal/deliveries/{failed['id']}"))
    button = re.search(r"<button[^>]*>Replay this delivery</button>", page)
    assert button is not None and "disabled" not in button.group(0)

    resp = await api.post(
        f"/portal/endpoints/{ep['id']}/disable", data={"csrf": csrf, "reason": "<i>on leave</i>"}
    )
    assert resp.status == 200
    page = await text(await api.get(f"/portal/deliveries/{failed['id']}"))
    button = re.search(r"<button[^>]*>Replay this delivery</button>", page)
    assert button is not None and " disabled" in button.group(0)
    note = re.search(r'id="replay-refusal">(.*?)</p>', page, flags=re.DOTALL)
    assert note is not None
    assert "disabled (&lt;i&gt;on leave&lt;/i&gt;)" in note.group(1)
    assert "enable the endpoint first" in note.group(1)
    assert f'href="/portal/endpoints/{ep["id"]}"' in note.group(1)

    # A replay sent anyway (a page left open) comes back to the delivery's page with the reason.
    resp = await api.post(f"/portal/deliveries/{failed['id']}/replay", data={"csrf": csrf})
    page = await text(resp, 409)
    assert f"<code>{failed['id']}</code></h1>" in page
    assert "enable it first" in message_of(page)
    assert (await delivery(api, failed["id"]))["replays"] == 0

    assert (await api.delete(f"/v1/endpoints/{ep['id']}", headers=AUTH)).status == 204
    page = await text(await api.get(f"/portal/deliveries/{failed['id']}"))
    assert "endpoint was deleted" in page
    assert re.search(r"<button[^>]* disabled[^>]*>Replay this delivery</button>", page)


async def test_deliveries_name_their_endpoints_by_url(api: Client, receiver: MakeReceiver) -> None:
    one, two = await receiver(), await receiver()
    first = await endpoint(api, one.url)
    second = await endpoint(api, two.url + "?shop=a&b=<x>")
    sent = await event(api)
    await sign_in(api)
    for path in ("/portal/deliveries", f"/portal/events/{sent['id']}"):
        page = await text(await api.get(path))
        assert (
            f'<a href="/portal/endpoints/{first["id"]}" class="url" title="{first["id"]}">'
            f"{one.url}</a>" in page
        ), path
        assert html.escape(second["url"], quote=False) in page, path
        assert "<x>" not in page, path
    gone = await endpoint(api, one.url + "/gone")
    later = await event(api)
    assert (await api.delete(f"/v1/endpoints/{gone['id']}", headers=AUTH)).status == 204
    page = await text(await api.get(f"/portal/events/{later['id']}"))
    assert f'<code>{gone["id"]}</code></a> <span class="muted small">(deleted)</span>' in page


# ---- a merchant whose link ended -------------------------------------------------------------


def shows_sign_in_form(page: str) -> bool:
    return 'type="password"' in page or "Admin token" in page


async def test_a_merchant_whose_link_ended_is_told_so_not_shown_the_sign_in(
    api: Client,
) -> None:
    url = await portal_link(api, "bus_a", ttl="1s")
    merchant = await fresh_client(api)
    try:
        assert (await open_link(merchant, url)).status == 303
        await text(await merchant.get("/portal/endpoints"))
        await asyncio.sleep(1.2)
        # Any page: sent to the sign-in address like everyone, which tells them what happened.
        resp = await merchant.get("/portal/deliveries", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"].startswith("/portal/login")
        page = await text(await merchant.get(resp.headers["Location"]))
        assert not shows_sign_in_form(page)
        assert "expired or was already used" in page and "Ask your platform for a new link" in page
        # The used link again: the same, never the form.
        path = url[url.index("/portal/") :]
        page = await text(await merchant.get(path), 404)
        assert "not valid" in message_of(page) and not shows_sign_in_form(page)
        # An operator on that browser still gets the form, by asking for it.
        page = await text(await merchant.get("/portal/login?operator=1"))
        assert shows_sign_in_form(page)
    finally:
        await merchant.close()


async def test_a_merchant_who_signs_out_or_follows_a_dead_link_never_sees_the_form(
    api: Client,
) -> None:
    url = await portal_link(api, "bus_a")
    merchant = await fresh_client(api)
    stranger = await fresh_client(api)
    try:
        await open_link(merchant, url)
        csrf = csrf_of(await text(await merchant.get("/portal/endpoints")))
        # Signed in, the sign-in address leads back into the portal.
        resp = await merchant.get("/portal/login", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/portal/endpoints"
        page = await text(await merchant.post("/portal/logout", data={"csrf": csrf}))
        assert not shows_sign_in_form(page) and "ask your platform" in page.lower()

        # A browser that only ever saw a used link: told so there, and on every later visit.
        path = url[url.index("/portal/") :]
        page = await text(await stranger.get(path), 404)
        assert not shows_sign_in_form(page) and "Ask the platform for a new one" in page
        page = await text(await stranger.get("/portal/endpoints"))
        assert not shows_sign_in_form(page) and "Ask your platform for a new link" in page

        # Once an operator signs in on it, the browser is an operator's again.
        login = await text(await stranger.get("/portal/login?operator=1"))
        resp = await stranger.post(
            "/portal/login", data={"csrf": csrf_of(login), "token": TOKEN}, allow_redirects=False
        )
        assert resp.status == 303
        assert 'hg_portal_merchant=""' in " ".join(resp.headers.getall("Set-Cookie"))
        csrf = csrf_of(await text(await stranger.get("/portal/endpoints")))
        await stranger.post("/portal/logout", data={"csrf": csrf})
        assert shows_sign_in_form(await text(await stranger.get("/portal/login")))
    finally:
        await merchant.close()
        await stranger.close()


async def test_a_browser_that_never_held_a_link_gets_the_sign_in_form(api: Client) -> None:
    page = await text(await api.get("/portal/endpoints"))
    assert shows_sign_in_form(page)


# ---- events ----------------------------------------------------------------------------------


def listed_events(page: str) -> list[str]:
    """The event ids of the Events page's rows, in order (each row links its event once)."""
    table = page[page.index('<table class="grid-table events">') :]
    return re.findall(r'<a href="/portal/events/(evt_[0-9A-Z]{26})">', table)


def older_link(page: str) -> str | None:
    match = re.search(r'href="(/portal/events\?[^"]+)" rel="next"', page)
    return html.unescape(match.group(1)) if match else None


async def test_events_are_listed_newest_first_once_each_across_pages(
    api: Client, receiver: MakeReceiver
) -> None:
    target = await receiver()
    for n in range(3):  # three deliveries per event: an event's entries must not split a page
        await endpoint(api, f"{target.url}/{n}")
    made = [(await event(api, n=n))["id"] for n in range(27)]
    await sign_in(api)
    page = await text(await api.get("/portal/events"))
    first = listed_events(page)
    assert first == list(reversed(made))[:25]
    assert 'name="id"' in page  # the id box stays
    assert '<span class="status s-pending">3 pending</span>' in row_of(page, made[-1])
    older = older_link(page)
    assert older is not None
    page = await text(await api.get(older))
    assert listed_events(page) == list(reversed(made))[25:]
    assert older_link(page) is None and "← Newest" in page


async def test_events_filters(api: Client, receiver: MakeReceiver) -> None:
    target = await receiver()
    await endpoint(api, target.url, "bus_a")
    await endpoint(api, target.url, "bus_b")
    paid = (await typed_event(api, "payment.succeeded"))["id"]
    held = (await typed_event(api, "subscription.on_hold"))["id"]
    theirs = (await typed_event(api, "payment.succeeded", "bus_b"))["id"]
    await sign_in(api)
    page = await text(await api.get("/portal/events?type=payment.succeeded"))
    assert listed_events(page) == [theirs, paid]
    page = await text(await api.get("/portal/events?business_id=bus_b"))
    assert listed_events(page) == [theirs]
    assert "<code>bus_b</code>" in row_of(page, theirs)
    page = await text(await api.get("/portal/events?since=1h&type=subscription.on_hold"))
    assert listed_events(page) == [held]
    past = datetime.fromtimestamp(time.time() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = await text(await api.get(f"/portal/events?until={past}"))
    assert listed_events(page) == [] and "No events match." in page
    # the filters come back filled in
    page = await text(await api.get("/portal/events?type=payment.succeeded&since=1h"))
    assert 'value="payment.succeeded"' in page and 'value="1h"' in page


async def test_a_merchant_lists_its_own_business_events_only(
    api: Client, receiver: MakeReceiver
) -> None:
    target = await receiver()
    await endpoint(api, target.url, "bus_a")
    await endpoint(api, target.url, "bus_b")
    mine = [(await event(api, "bus_a", n))["id"] for n in range(2)]
    theirs = [(await event(api, "bus_b", n))["id"] for n in range(2)]
    merchant = await fresh_client(api)
    try:
        await open_link(merchant, await portal_link(api, "bus_a"))
        for path in (
            "/portal/events",
            "/portal/events?business_id=bus_b",
            "/portal/events?type=payment.succeeded&since=1h",
        ):
            page = await text(await merchant.get(path))
            assert listed_events(page) == list(reversed(mine)), path
            assert not any(t in page for t in theirs) and "bus_b" not in page, path
            assert 'name="business_id"' not in page, path  # no business filter to offer
    finally:
        await merchant.close()


async def test_events_whose_deliveries_expired_are_left_out(
    api: Client, receiver: MakeReceiver, redis: ArqRedis
) -> None:
    target = await receiver()
    await endpoint(api, target.url)
    await endpoint(api, target.url + "/2")
    kept, halved, gone = [await event(api, n=n) for n in range(3)]
    await redis.delete(keys.delivery(halved["deliveries"][0]))
    await redis.delete(*(keys.delivery(d) for d in gone["deliveries"]))
    await sign_in(api)
    page = await text(await api.get("/portal/events"))
    assert listed_events(page) == [halved["id"], kept["id"]]
    assert '<td class="outcomes"><span class="num">1</span>' in row_of(page, halved["id"])


async def test_events_page_bad_input_is_a_422_on_the_page(api: Client) -> None:
    await sign_in(api)
    cases = [
        ("type=not%20a%20type!", "type"),
        ("type=" + "a." * 200, "type"),
        ("since=yesterday", "since"),
        ("until=soon", "until"),
        ("since=1h&until=2h", "until"),
        ("cursor=garbage", "cursor"),
        ("cursor=" + "A" * 60, "cursor"),
        ("business_id=bus%20a", "business_id"),
    ]
    for query, field in cases:
        resp = await api.get(f"/portal/events?{query}")
        page = await text(resp, 422)
        assert "text/html" in resp.headers["Content-Type"]
        assert message_of(page).startswith(f"{field}:"), (query, message_of(page))
        assert '<form method="get" action="/portal/events" class="filters">' in page
    # what was typed comes back escaped, in the message and in the form
    page = await text(await api.get("/portal/events?since=%3Cscript%3Ealert(1)%3C/script%3E"), 422)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    page = await text(await api.get("/portal/events?type=%22%3E%3Cb%3Ex"), 422)
    assert '"><b>x' not in page and "&#34;&gt;&lt;b&gt;x" in page


async def test_a_merchant_gets_the_same_errors_on_the_events_page(api: Client) -> None:
    merchant = await fresh_client(api)
    try:
        await open_link(merchant, await portal_link(api, "bus_a"))
        # an operator's filter is ignored for a merchant, not refused: it names no business
        await text(await merchant.get("/portal/events?business_id=bus%20a"))
        page = await text(await merchant.get("/portal/events?cursor=x"), 422)
        assert message_of(page).startswith("cursor:")
        assert EVT_RE.search(page) is None
    finally:
        await merchant.close()
