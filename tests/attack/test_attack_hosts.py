"""Host spellings that got past the creation check (issue 12, defect 6):
``http://１２７.０.０.１/`` (full-width digits), ``http://127。0。0。1/`` (ideographic full
stops) and port 0 were accepted with 201, though the worker's client reads the first two as
loopback (it refused them only at connect time) and cannot connect to port 0 at all.

Replayed against a real ``hookgate serve`` with private targets refused (the default), over
every family of the class: full-width and other mapped digits and letters, every full stop
UTS #46 maps, percent-escapes, invisible code points, legacy IPv4 forms after mapping,
localhost names, odd IPv6 literals, hosts that are no host, ports outside 1-65535. Each is a
422 on ``url`` at create and at PATCH, nothing is stored, and the spelling is not logged."""

# ruff: noqa: RUF001, RUF002  (look-alike characters are the attack)

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
from arq.connections import ArqRedis
from support import data_keys

from gateway.store import keys

Serve = Callable[..., Any]  # the attack suite's ``serve`` fixture (conftest.Served each)

# Private targets refused (the default); plain http allowed, so that the reported http:// URLs
# reach the host check rather than the https rule.
SETTINGS = {"HOOKGATE_HTTPS_ONLY": "false"}

# Hosts that reach a blocked address or a localhost name.
PRIVATE_HOSTS = [
    "１２７.０.０.１",
    "127。0。0。1",
    "127．0．0．1",
    "127｡0｡0｡1",
    "127.0.0.1。",
    "①②⑦.0.0.1",
    "𝟏𝟐𝟕.0.0.1",
    "127.0.0.１",
    "０ｘ７ｆ.１",
    "0x7f｡１",
    "２１３０７０６４３３",
    "２１３０７０６４３３.",
    "１２７．１",
    "0x7f.1",
    "0X7F.0.0.1",
    "2130706433",
    "017700000001",
    "0177.0.0.1",
    "127.1",
    "127.0.0.1.",
    "%31%32%37.0.0.1",
    "127.0.0.1%2e",
    "%ef%bc%91%ef%bc%92%ef%bc%97.0.0.1",
    "１６９.２５４.１６９.２５４",
    "0xa9fea9fe",
    "１０.０.０.１",
    "１９２.１６８.１.１",
    "0",
    "0x",
    "ｌｏｃａｌｈｏｓｔ",
    "ＬＯＣＡＬＨＯＳＴ",
    "ＬＯＣＡＬＨＯＳＴ．",
    "LOCALHOST.",
    "localhost。",
    "loc%61lhost",
    "local\u00adhost",
    "local\u200bhost",
    "local\u200chost",
    "local\u200dhost",
    "local\ufeffhost",
    "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ",
    "ᴸᴼᶜᴬᴸᴴᴼˢᵀ",
    "ℓocalhost",
    "ａ．ｌｏｃａｌｈｏｓｔ",
    "hooks.localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::ffff:169.254.169.254]",
    "[64:ff9b::7f00:1]",
    "[::]",
    "[fe80::1%25eth0]",
]

# Hosts no client can deliver to (not IDNA, not an address, not a name), and public ones that
# clients read differently (percent-escapes, invisible characters, legacy IPv4 forms).
INVALID_HOSTS = [
    "134744072",
    "0x8.8.8.8",
    "8.8.8.8.",
    "[::１]",
    "[127.0.0.1]",
    "xn--localhost-",
    "xn--",
    "1.2.3.4.5",
    "999.0.0.1",
    "١٢٧.0.0.1",
    "a..example",
    "%ff.example",
    "exa%00mple.com",
    "%65xample.com",
    "exa\u200bmple.com",
    "127.0.0.1\\.example.com",
    "ex⁄ample.com",
]

BAD_PORTS = ["0", "00", "65536", "99999", "８０", "+80"]


def cases() -> list[tuple[str, bool]]:
    """(url, whether the refusal must say ``private_url``)."""
    out: list[tuple[str, bool]] = []
    for scheme in ("http", "https"):
        for port in ("", ":19002"):
            out += [(f"{scheme}://{host}{port}/hook", True) for host in PRIVATE_HOSTS]
            out += [(f"{scheme}://{host}{port}/hook", False) for host in INVALID_HOSTS]
        for host in ("example.com", "8.8.8.8", "[2606:4700:4700::1111]", "１２７.０.０.１"):
            out += [(f"{scheme}://{host}:{port}/hook", False) for port in BAD_PORTS]
    return out


def refused_on_url(status: int, got: dict[str, Any], private: bool, url: str) -> None:
    assert status == 422, (url, status, got)
    error = got["error"]
    assert error["details"] == {"field": "url"}, (url, got)
    assert error["code"] in ("private_url", "validation_failed"), (url, got)
    # Every host that reads as a blocked address or localhost, however spelled, names why.
    if private:
        assert error["code"] == "private_url", (url, got)


async def answer(
    http: aiohttp.ClientSession, method: str, url: str, body: Any
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, await resp.json()


async def test_every_spelling_is_refused_at_create_and_nothing_is_stored(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    served = serve(**SETTINGS)
    base = served.base
    all_cases = cases()
    assert len(all_cases) > 250
    for url, private in all_cases:
        status, got = await answer(
            http, "POST", base + "/v1/endpoints", {"business_id": "b_h", "url": url}
        )
        refused_on_url(status, got, private, url)
    status, listed = await answer(http, "GET", base + "/v1/endpoints", None)
    assert status == 200 and listed["data"] == []
    assert await data_keys(redis) == set()

    # The same server takes real names, IDN or not, and public addresses, stored as sent.
    for url in (
        "https://bücher.example/hook",
        "https://xn--bcher-kva.example:8443/h",
        "https://8.8.8.8/h",
    ):
        status, created = await answer(
            http, "POST", base + "/v1/endpoints", {"business_id": "b_h", "url": url}
        )
        assert status == 201 and created["url"] == url, created
    log = served.log_text()
    for host in ("１２７", "ｌｏｃａｌｈｏｓｔ", "%31%32%37", "xn--localhost-"):
        assert host not in log and json.dumps(host)[1:-1] not in log  # raw or JSON-escaped


async def test_every_spelling_is_refused_at_patch_and_nothing_changes(
    serve: Serve, http: aiohttp.ClientSession, redis: ArqRedis
) -> None:
    base = serve(**SETTINGS).base
    good = "https://bücher.example/hook"
    status, created = await answer(
        http, "POST", base + "/v1/endpoints", {"business_id": "b_h", "url": good}
    )
    assert status == 201
    path = f"{base}/v1/endpoints/{created['id']}"
    before = await redis.hgetall(keys.endpoint(created["id"]))
    for url, private in cases():
        status, got = await answer(http, "PATCH", path, {"url": url})
        refused_on_url(status, got, private, url)
    status, got = await answer(http, "GET", path, None)
    assert status == 200 and got["url"] == good
    assert await redis.hgetall(keys.endpoint(created["id"])) == before
    status, listed = await answer(http, "GET", base + "/v1/endpoints", None)
    assert [e["id"] for e in listed["data"]] == [created["id"]]

    status, got = await answer(http, "PATCH", path, {"url": "https://ｅｘａｍｐｌｅ.com/h"})
    assert status == 200 and got["url"] == "https://ｅｘａｍｐｌｅ.com/h", got
