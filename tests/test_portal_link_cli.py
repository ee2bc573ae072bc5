"""``hookgate portal-link BUSINESS`` against a real ``hookgate serve``: the link it prints
opens the portal for that business, once; bad input is one line and exit 2."""

from __future__ import annotations

import json

import aiohttp
import pytest
from test_keys_cli import cli, gateway, ok, one_line_error

pytestmark = pytest.mark.e2e
__all__ = ["gateway"]  # the fixture, imported to be used here


async def test_the_printed_link_opens_the_portal_for_its_business_once(
    gateway: dict[str, str],
) -> None:
    url = (await ok(gateway, "portal-link", "bus_cli", "--ttl", "1h")).strip()
    assert url.startswith(gateway["HOOKGATE_URL"] + "/portal/link/")
    async with aiohttp.ClientSession() as browser, browser.get(url) as page:
        assert page.status == 200
        assert "bus_cli" in await page.text()
    # A link is shown for its business only, and each call makes a new one.
    again = json.loads(await ok(gateway, "portal-link", "bus_cli", "--json"))
    assert again["business_id"] == "bus_cli" and again["url"] != url


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bus_cli", "--ttl", "8d"], "ttl"),
        (["bus_cli", "--ttl", "soon"], "ttl"),
        (["bad business!"], "business"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2(
    gateway: dict[str, str], args: list[str], says: str
) -> None:
    line = one_line_error(await cli(gateway, "portal-link", *args))
    assert says in line
