"""The delivery portal in a real browser: Playwright driving the machine's Chromium against
the gateway on loopback, an in-process worker and real receivers.

Set ``PORTAL_SCREENSHOTS=docs`` to also write the screenshots into ``docs/portal-*.png``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from conftest import Receiver
from playwright.async_api import Browser, Page, async_playwright, expect
from support import AUTH, TOKEN

from gateway.core.settings import Settings

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="no Chromium installed (apt-get install chromium; .ci/run does it)",
)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
def shots(tmp_path: Path, project_root: Path) -> Callable[[Page, str], Awaitable[None]]:
    """Screenshots of full pages, into tmp_path and, with PORTAL_SCREENSHOTS=docs, docs/."""
    to_docs = os.environ.get("PORTAL_SCREENSHOTS") == "docs"

    async def shoot(page: Page, name: str) -> None:
        path = tmp_path / f"portal-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5000
        if to_docs:
            shutil.copy(path, project_root / "docs" / path.name)

    return shoot


async def new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def sign_in(page: Page, base: str) -> None:
    await page.goto(base + "/portal/")
    await expect(page).to_have_url(re.compile(r"/portal/login\?next="))
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Endpoints")).to_be_visible()


async def expect_beside_title(page: Page) -> None:
    """The page's state badge sits on its title's line, to its right: not floating below."""
    title = await page.locator("main h1").first.bounding_box()
    badge = await page.locator("main .status").first.bounding_box()
    assert title is not None and badge is not None
    middle = badge["y"] + badge["height"] / 2
    assert title["y"] <= middle <= title["y"] + title["height"], (title, badge)
    assert badge["x"] >= title["x"] + title["width"] - 1, (title, badge)


async def api_post(api: Client, path: str, body: dict[str, Any], status: int) -> Any:
    resp = await api.post(path, json=body, headers=AUTH)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def settle(api: Client, delivery_ids: list[str]) -> None:
    async with asyncio.timeout(20):
        for delivery_id in delivery_ids:
            while True:
                resp = await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
                if (await resp.json())["status"] != "pending":
                    break
                await asyncio.sleep(0.05)


class FailsTwice:
    """500 to the first two copies of each webhook-id, then 200."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        webhook_id = request.headers["webhook-id"]
        self.seen[webhook_id] = self.seen.get(webhook_id, 0) + 1
        if self.seen[webhook_id] <= 2:
            return web.json_response({"error": "invoice service restarting"}, status=500)
        return web.json_response({"received": True})


class Switch:
    def __init__(self) -> None:
        self.working = False

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        if self.working:
            return web.json_response({"received": True})
        return web.json_response({"error": "database unavailable"}, status=503)


async def test_sign_in_create_an_endpoint_send_a_test_and_watch_it_arrive(
    api: Client,
    browser: Browser,
    receiver: MakeReceiver,
    start_worker: Start,
    settings: Settings,
    shots: Callable[[Page, str], Awaitable[None]],
) -> None:
    target = await receiver()
    await start_worker(settings)
    base = str(api.make_url("")).rstrip("/")
    page = await new_page(browser)
    await page.goto(base + "/portal/login")
    await shots(page, "login")
    await sign_in(page, base)

    await page.get_by_label("Business id").fill("bus_acme")
    await page.get_by_label("URL").fill(target.url)
    await page.get_by_label("Event types").fill("payment.*, subscription.*, hookgate.test")
    await page.get_by_label("Description").fill("Acme order service")
    await page.get_by_role("button", name="Create endpoint").click()
    await expect(page.get_by_role("heading", name="Endpoint created")).to_be_visible()
    secret = await page.locator("#secret").inner_text()
    assert secret.startswith("whsec_")
    await page.get_by_role("link", name="Go to the endpoint").click()
    await expect(page.locator("h1.url")).to_have_text(target.url)

    # Some traffic so the pages have something to show.
    for n in range(4):
        body = {"business_id": "bus_acme", "type": "payment.succeeded", "data": {"n": n}}
        await api_post(api, "/v1/events", body, 202)
    await target.wait_for(4)

    await page.get_by_role("button", name="Send a test event").click()
    await expect(page.get_by_text("A hookgate.test event was sent")).to_be_visible()
    # The page follows the delivery by itself (portal.js) until it has arrived.
    await expect(page.locator(".status-big")).to_have_text("succeeded")
    await expect(page.locator("table.kv").get_by_text("webhook-signature")).to_be_visible()
    await target.wait_for(5)
    test_request = target.requests[-1]
    assert b'"hookgate.test"' in test_request.body
    event_id = test_request.headers["webhook-id"]
    await expect(page.locator("table.kv")).to_contain_text(event_id)
    await expect_beside_title(page)

    await page.locator(".head").get_by_role("link", name=target.url).click()
    await expect(page.locator(".stats")).to_contain_text("100.0 %")
    await expect(page.locator("svg.chart")).to_be_visible()
    await expect_beside_title(page)
    await page.get_by_role("navigation").get_by_role("link", name="Endpoints").click()
    await expect(page.locator("table.endpoints")).to_contain_text("Acme order service")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_failing_delivery_replayed_from_its_page_then_a_window_recovered(
    api: Client,
    browser: Browser,
    receiver: MakeReceiver,
    start_worker: Start,
    settings: Settings,
    shots: Callable[[Page, str], Awaitable[None]],
) -> None:
    switch = Switch()
    target = await receiver(switch)
    endpoint = await api_post(
        api, "/v1/endpoints", {"business_id": "bus_acme", "url": target.url}, 201
    )
    types = ["payment.succeeded", "payment.failed", "subscription.on_hold", "credit.added"]
    sent = []
    for n, kind in enumerate(types):
        body = {"business_id": "bus_acme", "type": kind, "data": {"order": f"ord_{n}"}}
        sent.append(await api_post(api, "/v1/events", body, 202))
    await start_worker(settings)
    await target.wait_for(len(types) * settings.max_attempts)
    base = str(api.make_url("")).rstrip("/")
    page = await new_page(browser)
    await sign_in(page, base)

    await page.get_by_role("navigation").get_by_role("link", name="Deliveries").click()
    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.grid-table tbody tr")
    await expect(rows).to_have_count(len(types))
    # each row names its endpoint by URL, the id in the link's title
    link = rows.first.get_by_role("link", name=target.url)
    await expect(link).to_have_attribute("title", endpoint["id"])
    await shots(page, "deliveries")
    first = sent[0]["deliveries"][0]
    await page.get_by_role("link", name=first).click()
    await expect(page.locator(".status-big")).to_have_text("failed")
    await expect(page.locator(".attempt").first).to_contain_text("HTTP 503")
    # the newest failed answer is unfolded; the older ones stay folded
    await expect(page.locator(".attempt details[open]")).to_have_count(1)
    unfolded = page.locator(".attempt").first.locator("details[open] pre")
    await expect(unfolded).to_be_visible()
    await expect(unfolded).to_contain_text("database unavailable")
    await expect_beside_title(page)
    await shots(page, "delivery")

    switch.working = True
    await page.get_by_role("button", name="Replay this delivery").click()
    await expect(page.get_by_text("Replayed: a new attempt chain")).to_be_visible()
    await expect(page.locator(".status-big")).to_have_text("succeeded")
    await expect(page.locator(".attempt").first).to_contain_text("HTTP 200")
    assert target.requests[-1].headers["webhook-id"] == sent[0]["id"]

    # The rest, as one bulk replay: count, replay, watch the progress fill in.
    await page.get_by_role("navigation").get_by_role("link", name="Recover").click()
    await page.get_by_label("Endpoint").select_option(endpoint["id"])
    await page.get_by_role("button", name="Count matching deliveries").click()
    await expect(page.locator("#matched")).to_have_text("3")
    await shots(page, "recover")
    await page.get_by_role("button", name="Replay 3 deliveries").click()
    await expect(page.locator("[data-field=state]")).to_have_text("completed")
    await expect(page.locator("[data-field=succeeded]")).to_have_text("3")
    assert await page.locator("progress").get_attribute("value") == "3"
    await shots(page, "replay")
    replayed = {r.headers["webhook-id"] for r in target.requests[-3:]}
    assert replayed == {s["id"] for s in sent[1:]}
    assert page.errors == []  # type: ignore[attr-defined]


async def test_a_portal_link_shows_its_business_only_and_stops_working(
    api: Client,
    browser: Browser,
    receiver: MakeReceiver,
    shots: Callable[[Page, str], Awaitable[None]],
) -> None:
    target = await receiver()
    mine = await api_post(api, "/v1/endpoints", {"business_id": "bus_a", "url": target.url}, 201)
    theirs = await api_post(
        api, "/v1/endpoints", {"business_id": "bus_b", "url": target.url + "/b"}, 201
    )
    link = await api_post(api, "/v1/businesses/bus_a/portal-links", {}, 201)
    short = await api_post(api, "/v1/businesses/bus_a/portal-links", {"ttl": "1s"}, 201)
    base = str(api.make_url("")).rstrip("/")

    merchant = await new_page(browser)
    await merchant.goto(link["url"])
    await expect(merchant.get_by_role("heading")).to_contain_text("bus_a")
    await merchant.get_by_role("button", name="Open the portal").click()
    await expect(merchant.locator(".badge")).to_have_text("business bus_a")
    await expect(merchant.locator("table.endpoints")).to_contain_text(mine["id"])
    await expect(merchant.locator("table.endpoints")).not_to_contain_text(theirs["id"])
    await shots(merchant, "merchant")
    response = await merchant.goto(f"{base}/portal/endpoints/{theirs['id']}")
    assert response is not None and response.status == 404
    await expect(merchant.locator("h1")).to_have_text("Not found")

    # Used once: another browser opening the same link is turned away.
    other = await new_page(browser)
    response = await other.goto(link["url"])
    assert response is not None and response.status == 404
    await expect(other.locator(".error-message")).to_contain_text("not valid")

    # Expired: turned away too. Going to the portal itself then says what happened, and
    # whom to ask, instead of offering the operators' sign-in.
    await asyncio.sleep(1.1)
    response = await other.goto(short["url"])
    assert response is not None and response.status == 404
    await other.goto(base + "/portal/endpoints")
    await expect(other).to_have_url(re.compile(r"/portal/login"))
    await expect(other.get_by_role("heading")).to_have_text("Your portal link has ended")
    await expect(other.locator(".error-message")).to_contain_text("Ask your platform")
    await expect(other.get_by_label("Admin token")).to_have_count(0)
    await shots(other, "link-ended")


async def test_endpoints_say_how_they_are_doing_and_a_blocked_replay_says_why(
    api: Client,
    browser: Browser,
    receiver: MakeReceiver,
    start_worker: Start,
    settings: Settings,
    shots: Callable[[Page, str], Awaitable[None]],
) -> None:
    good, flaky, dead = await receiver(), await receiver(FailsTwice()), await receiver(Switch())
    made = {}
    for name, url, description in [
        ("good", good.url, "Acme order service"),
        ("flaky", flaky.url, "Acme invoicing"),
        ("dead", dead.url, "Acme legacy ERP"),
        ("retired", good.url + "/v0", "Acme old shop"),
    ]:
        body = {"business_id": "bus_acme", "url": url, "description": description}
        made[name] = await api_post(api, "/v1/endpoints", body, 201)
    retired = made["retired"]["id"]
    await api_post(api, f"/v1/endpoints/{retired}/disable", {"reason": "replaced by v1"}, 200)
    types = ["payment.succeeded", "payment.failed", "subscription.on_hold", "credit.added"]
    sent = []
    for n, kind in enumerate(types):
        body = {"business_id": "bus_acme", "type": kind, "data": {"order": f"ord_{n}"}}
        sent.append(await api_post(api, "/v1/events", body, 202))
    await start_worker(settings)
    await settle(api, [d for s in sent for d in s["deliveries"]])
    base = str(api.make_url("")).rstrip("/")
    page = await new_page(browser)
    await sign_in(page, base)

    # The list: each endpoint wears what is true of it.
    table = page.locator("table.endpoints")
    for name, state in [
        ("good", "active"),
        ("flaky", "active"),
        ("dead", "failing"),
        ("retired", "disabled"),
    ]:
        row = table.locator("tr", has_text=made[name]["id"])
        await expect(row.locator("td.state .status")).to_have_text(state)
    await expect(table.locator("tr", has_text=retired)).to_contain_text("replaced by v1")
    flaky_row = table.locator("tr", has_text=made["flaky"]["id"])
    await expect(flaky_row.locator("[data-stat=deliveries]")).to_contain_text("100.0 %")
    await expect(flaky_row).to_contain_text("33.3 % of 12 attempts")
    await shots(page, "endpoints")

    # Every delivery to the flaky endpoint arrived, each on its third attempt.
    await page.get_by_role("link", name=flaky.url).click()
    await expect(page.locator("[data-stat=deliveries]")).to_have_text("100.0 %")
    await expect(page.locator("[data-stat=success_rate]")).to_have_text("33.3 %")
    await expect_beside_title(page)
    await shots(page, "endpoint")

    await page.get_by_role("navigation").get_by_role("link", name="Endpoints").click()
    await page.get_by_role("link", name=dead.url).click()
    await expect(page.locator(".title-row .status")).to_have_text("failing")
    await expect(page.locator(".title-row")).to_contain_text("12 failed attempts in a row")
    await expect_beside_title(page)
    await page.get_by_label("Reason for disabling").fill("ERP migration")
    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator(".title-row .status")).to_have_text("disabled")

    # Its failed delivery cannot be replayed now: the page says why, with the way out.
    await page.locator("table.deliveries tbody tr").first.get_by_role("link").click()
    await expect(page.locator(".status-big")).to_have_text("failed")
    replay = page.get_by_role("button", name="Replay this delivery")
    await expect(replay).to_be_disabled()
    await expect(page.locator("#replay-refusal")).to_contain_text(
        "Its endpoint is disabled (ERP migration): enable the endpoint first"
    )
    await expect(page.locator(".attempt").first.locator("details[open] pre")).to_contain_text(
        "database unavailable"
    )
    await expect_beside_title(page)
    await shots(page, "delivery-disabled")

    # Events, newest first, each with where it went.
    await page.get_by_role("navigation").get_by_role("link", name="Events").click()
    rows = page.locator("table.events tbody tr")
    await expect(rows).to_have_count(len(sent))
    await expect(rows.first).to_contain_text(sent[-1]["id"])
    await expect(rows.first).to_contain_text("2 succeeded")
    await expect(rows.first).to_contain_text("1 failed")
    await expect(rows.first).to_contain_text("1 skipped")
    await shots(page, "events")
    await page.get_by_label("Event type").fill("payment.failed")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await rows.first.get_by_role("link").click()
    await expect(page.locator("h1")).to_have_text(sent[1]["id"])
    assert page.errors == []  # type: ignore[attr-defined]
