"""Counts on portal pages read as English: "1 attempt", "2 attempts" (a first-hour snag)."""

from __future__ import annotations

from test_portal import (
    Client,
    MakeReceiver,
    Start,
    endpoint,
    event,
    settled,
    sign_in,
    text,
)

from gateway.core.settings import Settings
from gateway.web.portal.site import counted


def test_a_count_takes_its_noun_in_the_singular_only_for_one() -> None:
    assert [counted(n, "attempt") for n in (0, 1, 2, 12)] == [
        "0 attempts",
        "1 attempt",
        "2 attempts",
        "12 attempts",
    ]


async def test_an_endpoint_with_one_attempt_says_1_attempt(
    api: Client, receiver: MakeReceiver, start_worker: Start, settings: Settings
) -> None:
    target = await receiver()
    ep = await endpoint(api, target.url, "bus_a")
    sent = await event(api, "bus_a")
    await start_worker(settings)
    await settled(api, sent["deliveries"][0])
    await sign_in(api)
    for path in (f"/portal/endpoints/{ep['id']}", "/portal/endpoints"):
        page = await text(await api.get(path))
        assert "1 attempt<" in page and "1 attempts" not in page, path
