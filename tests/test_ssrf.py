"""The SSRF guard: the address table, IPv4 embeddings, URL literals, and real loopback connects.

Connections only ever go to 127.0.0.1; "public is allowed" is asserted on the pure functions.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.targets import (
    TargetRules,
    check_literal_url_host,
    check_url,
    is_blocked,
    parse_allowed_networks,
)
from worker import http as worker_http
from worker.ssrf import (
    BlockedDestination,
    GuardedConnector,
    GuardedResolver,
    find_blocked,
    make_guarded_connector,
)

LOOPBACK_8 = (IPv4Network("127.0.0.0/8"),)

BLOCKED = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "metadata",
    "169.254.170.2": "metadata",
    "100.100.100.200": "metadata",
    "169.254.1.1": "link-local",
    "100.64.0.1": "cgnat",
    "100.127.255.255": "cgnat",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "192.0.0.8": "ietf-protocol",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "198.18.0.1": "benchmarking",
    "198.19.255.255": "benchmarking",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    "::": "unspecified",
    "::1": "loopback",
    "fd00:ec2::254": "metadata",
    "fc00::1": "unique-local",
    "fdff:ffff::1": "unique-local",
    "fe80::1": "link-local",
    "fe80::1%eth0": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "100::1": "discard",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "2001:2::1": "benchmarking",
    "2001:10::1": "orchid",
    "64:ff9b:1::a00:1": "nat64-local",
    "4000::1": "reserved",
    "::ffff:127.0.0.1": "ipv4-mapped loopback",
    "::ffff:169.254.169.254": "ipv4-mapped metadata",
    "::ffff:10.1.2.3": "ipv4-mapped private",
    "::127.0.0.1": "ipv4-compatible loopback",
    "::ffff:0:7f00:1": "ipv4-translated loopback",
    "64:ff9b::7f00:1": "nat64 loopback",
    "64:ff9b::a9fe:a9fe": "nat64 metadata",
    "2002:7f00:1::1": "6to4 loopback",
    "2002:c0a8:101::": "6to4 private",
    # Teredo, server 65.54.227.120, client 127.0.0.1 stored inverted (80ff:fffe).
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "teredo loopback",
    # Teredo with a public client (8.8.8.8 inverted: f7f7:f7f7) but a private server.
    "2001:0:a00:1::f7f7:f7f7": "teredo private",
}

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "2620:fe::fe",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: public server, client 8.8.8.8
]


@pytest.mark.parametrize(("text", "reason"), sorted(BLOCKED.items()))
def test_blocked_addresses(text: str, reason: str) -> None:
    assert is_blocked(ipaddress.ip_address(text)) == reason


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    assert is_blocked(ipaddress.ip_address(text)) is None


def test_allowed_networks_exempt_only_themselves() -> None:
    allowed = parse_allowed_networks("10.1.0.0/16, fd00::/8")
    assert is_blocked(IPv4Address("10.1.2.3"), allowed) is None
    assert is_blocked(IPv4Address("10.2.0.1"), allowed) == "private"
    assert is_blocked(IPv6Address("fd12::1"), allowed) is None
    assert is_blocked(IPv6Address("fc00::1"), allowed) == "unique-local"
    # An embedding reaches the IPv4 address, so the IPv4 allowance covers it too.
    assert is_blocked(IPv6Address("::ffff:10.1.0.9"), allowed) is None
    assert is_blocked(IPv4Address("127.0.0.1"), allowed) == "loopback"


def test_parse_allowed_networks() -> None:
    assert parse_allowed_networks("") == ()
    assert parse_allowed_networks(" , ") == ()
    assert parse_allowed_networks("10.0.0.0/8,192.168.5.7,::1/128") == (
        IPv4Network("10.0.0.0/8"),
        IPv4Network("192.168.5.7/32"),
        ipaddress.ip_network("::1/128"),
    )


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", "10.0.0.1/8", "10.0.0.0/8;"])
def test_parse_allowed_networks_names_the_bad_entry(bad: str) -> None:
    with pytest.raises(ValueError, match="HOOKGATE_ALLOWED_NETWORKS") as info:
        parse_allowed_networks(f"192.168.0.0/16,{bad}")
    assert repr(bad) in str(info.value)


# -- IPv4 embeddings in IPv6 -------------------------------------------------------------------

_BLOCKED_V4_NETS = [
    IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
]


@st.composite
def blocked_v4(draw: st.DrawFn) -> IPv4Address:
    network = draw(st.sampled_from(_BLOCKED_V4_NETS))
    return network[draw(st.integers(0, network.num_addresses - 1))]


any_v4 = st.integers(0, 2**32 - 1).map(IPv4Address)
v4s = st.one_of(blocked_v4(), any_v4)


def _mapped(v4: IPv4Address) -> IPv6Address:
    return IPv6Address(f"::ffff:{v4}")


def _nat64(v4: IPv4Address) -> IPv6Address:
    return IPv6Address(f"64:ff9b::{v4}")


def _six_to_four(v4: IPv4Address, tail: int) -> IPv6Address:
    return IPv6Address((0x2002 << 112) | (int(v4) << 80) | tail)


def _teredo(server: IPv4Address, client: IPv4Address, flags: int, port: int) -> IPv6Address:
    inverted_client = ~int(client) & 0xFFFFFFFF
    return IPv6Address(
        (0x20010000 << 96) | (int(server) << 64) | (flags << 48) | (port << 32) | inverted_client
    )


@given(blocked_v4())
def test_blocked_strategy_draws_blocked_addresses(v4: IPv4Address) -> None:
    assert is_blocked(v4) is not None


@given(v4s, st.integers(0, 2**80 - 1))
def test_embeddings_are_judged_by_the_embedded_ipv4(v4: IPv4Address, tail: int) -> None:
    expected_blocked = is_blocked(v4) is not None
    six_to_four = _six_to_four(v4, tail)
    # The constructions agree with the standard library's own decoders.
    assert _mapped(v4).ipv4_mapped == v4
    assert six_to_four.sixtofour == v4
    for embedded in (_mapped(v4), _nat64(v4), six_to_four):
        assert (is_blocked(embedded) is not None) is expected_blocked, embedded


@given(v4s, v4s, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_teredo_is_blocked_if_client_or_server_is(
    server: IPv4Address, client: IPv4Address, flags: int, port: int
) -> None:
    address = _teredo(server, client, flags, port)
    assert address.teredo == (server, client)
    expected_blocked = is_blocked(server) is not None or is_blocked(client) is not None
    assert (is_blocked(address) is not None) is expected_blocked


@given(blocked_v4())
def test_embedding_of_blocked_v4_names_the_reason(v4: IPv4Address) -> None:
    reason = is_blocked(v4)
    assert is_blocked(_mapped(v4)) == f"ipv4-mapped {reason}"
    assert is_blocked(_nat64(v4)) == f"nat64 {reason}"


# -- URL hosts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.1.", "loopback"),
        ("[::1]", "loopback"),
        ("::1", "loopback"),
        ("[::ffff:127.0.0.1]", "ipv4-mapped loopback"),
        ("[fe80::1%25eth0]", "link-local"),
        ("2130706433", "loopback"),
        ("017700000001", "loopback"),
        ("0x7f000001", "loopback"),
        ("0x7f.1", "loopback"),
        ("0x7F.0.0.1", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("10.1", "private"),
        ("0xa9.0xfe.0xa9.0xfe", "metadata"),
        ("2852039166", "metadata"),
        ("0", "unspecified"),
        ("localhost", "localhost"),
        ("LOCALHOST.", "localhost"),
        ("api.localhost", "localhost"),
    ],
)
def test_literal_url_hosts_blocked(host: str, reason: str) -> None:
    assert check_literal_url_host(host) == reason


@pytest.mark.parametrize(
    "host",
    ["8.8.8.8", "[2606:4700:4700::1111]", "134744072", "example.com", "localhost.example.com"],
)
def test_literal_url_hosts_passed(host: str) -> None:
    assert check_literal_url_host(host) is None


def test_localhost_allowed_when_loopback_is() -> None:
    assert check_literal_url_host("localhost", LOOPBACK_8) is None
    assert check_literal_url_host("0x7f.1", LOOPBACK_8) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://[::1]/hook",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://127.1:9/",
        "http://169.254.169.254/latest/meta-data/",
        "https://localhost/",
        "http://user:pw@10.0.0.1/",
    ],
)
def test_check_url_refuses_literals(url: str) -> None:
    assert check_url(url) is not None
    assert check_url(url, allow_private=True) is None


def test_check_url_leaves_names_to_connect_time() -> None:
    assert check_url("https://hooks.example.com/x") is None
    assert check_url("https://8.8.8.8/x") is None


# -- the resolver and the connector, against a real server on loopback -------------------------


@dataclass
class Loopback:
    port: int
    hits: int = 0


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    state = Loopback(port=0)

    async def handle(request: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.port = runner.addresses[0][1]
    yield state
    await runner.cleanup()


@dataclass
class ScriptedResolver(AbstractResolver):
    """Answers each lookup with the next address in ``answers``; records what it was asked."""

    answers: list[list[str]]
    asked: list[str] = field(default_factory=list)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        addresses = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


async def _get(connector: aiohttp.BaseConnector, url: str) -> str:
    async with (
        aiohttp.ClientSession(connector=connector, trust_env=False) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        return await response.text()


async def _refused(connector: aiohttp.BaseConnector, url: str) -> BlockedDestination:
    with pytest.raises(aiohttp.ClientConnectorError) as info:
        await _get(connector, url)
    blocked = find_blocked(info.value)
    assert blocked is not None, info.value
    return blocked


async def test_refuses_ip_literal_loopback(loopback: Loopback) -> None:
    blocked = await _refused(make_guarded_connector(), f"http://127.0.0.1:{loopback.port}/")
    assert blocked.reason == "127.0.0.1 is loopback"
    assert f"blocked_destination: {blocked.reason}" == "blocked_destination: 127.0.0.1 is loopback"
    assert loopback.hits == 0


async def test_refuses_localhost_name(loopback: Loopback) -> None:
    with pytest.raises(aiohttp.ClientConnectorDNSError) as info:
        await _get(make_guarded_connector(), f"http://localhost:{loopback.port}/")
    blocked = find_blocked(info.value)
    assert blocked is not None
    assert blocked.host == "localhost"
    assert "loopback" in blocked.reason
    assert "blocked destination 'localhost'" in str(info.value)
    assert loopback.hits == 0


async def test_refuses_legacy_ipv4_name(loopback: Loopback) -> None:
    # Not an IP literal to aiohttp, so it goes to getaddrinfo, which reads it as 127.0.0.1.
    blocked = await _refused(make_guarded_connector(), f"http://0x7f.1:{loopback.port}/")
    assert "127.0.0.1 is loopback" in blocked.reason
    assert loopback.hits == 0


# Spellings the worker's client (yarl, then getaddrinfo) reads as loopback.
SPELLED_LOOPBACK = [
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits
    "127\u30020\u30020\u30021",  # ideographic full stops
    "127\uff0e0\uff0e0\uff0e1",  # full-width full stops
    "127\uff610\uff610\uff611",  # half-width ideographic full stops
    "\uff10\uff58\uff17\uff46.\uff11",  # full-width 0x7f.1
    "\uff10\uff58\uff17\uff46\uff0e\uff10\uff0e\uff10\uff0e\uff11",  # 0x7f.0.0.1, all full-width
    "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",  # full-width localhost
]


@pytest.mark.parametrize("host", SPELLED_LOOPBACK)
async def test_spelled_loopback_reaches_loopback_and_every_check_refuses_it(
    loopback: Loopback, host: str
) -> None:
    url = f"http://{host}:{loopback.port}/"
    # Unguarded, the client really connects to loopback: the checks judge what it reaches.
    assert await _get(make_guarded_connector(allow_private=True), url) == "ok"
    assert loopback.hits == 1
    assert check_url(url) is not None  # the worker's pre-flight, as at creation
    rules = TargetRules(https_only=False)
    async with worker_http.make_session(1, rules) as session:
        result = await worker_http.post(session, url, b"{}", {}, limit_s=5, rules=rules)
    assert result.error is not None and result.error.startswith(worker_http.BLOCKED)
    await _refused(make_guarded_connector(), url)  # and the connector, without the pre-flight
    assert loopback.hits == 1


@pytest.mark.parametrize("host", ["2130706433", "127.1", "0177.0.0.1", "127.0.0.1."])
async def test_client_cannot_reach_all_digit_legacy_ipv4(loopback: Loopback, host: str) -> None:
    """aiohttp refuses these itself, even unguarded: why creation refuses them even when the
    address is public (``spelling_problem``). If aiohttp starts to connect, revisit that."""
    with pytest.raises(aiohttp.InvalidUrlClientError):
        await _get(make_guarded_connector(allow_private=True), f"http://{host}:{loopback.port}/")
    assert loopback.hits == 0


async def test_refuses_ipv6_loopback_literal_without_connecting() -> None:
    blocked = await _refused(make_guarded_connector(), "http://[::1]:9/")
    assert blocked.reason == "::1 is loopback"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allowed_network_connects(loopback: Loopback, host: str) -> None:
    text = await _get(make_guarded_connector(LOOPBACK_8), f"http://{host}:{loopback.port}/")
    assert text == "ok"
    assert loopback.hits == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_allow_private_turns_the_guard_off(loopback: Loopback, host: str) -> None:
    connector = make_guarded_connector(allow_private=True)
    assert not isinstance(connector, GuardedConnector)
    assert await _get(connector, f"http://{host}:{loopback.port}/") == "ok"
    assert loopback.hits == 1


async def test_ip_literal_never_reaches_the_resolver(loopback: Loopback) -> None:
    # The connect-time check alone refuses: aiohttp does not resolve IP literals.
    resolver = ScriptedResolver([["127.0.0.1"]])
    connector = make_guarded_connector(resolver=resolver)
    await _refused(connector, f"http://127.0.0.1:{loopback.port}/")
    assert resolver.asked == []
    assert loopback.hits == 0


async def test_rebinding_cannot_pass_a_check_made_before_connecting(loopback: Loopback) -> None:
    # First answer public, every later one loopback: the classic rebinding script.
    resolver = ScriptedResolver([["8.8.8.8"], ["127.0.0.1"]])
    earlier = await GuardedResolver(resolver).resolve("rebind.test", loopback.port)
    assert [answer["host"] for answer in earlier] == ["8.8.8.8"]
    # The connect resolves again and checks what it is about to connect to.
    connector = make_guarded_connector(resolver=resolver, use_dns_cache=False)
    blocked = await _refused(connector, f"http://rebind.test:{loopback.port}/")
    assert "127.0.0.1 is loopback" in blocked.reason
    assert resolver.asked == ["rebind.test", "rebind.test"]
    assert loopback.hits == 0


async def test_resolver_drops_blocked_answers_and_keeps_public_ones() -> None:
    resolver = GuardedResolver(ScriptedResolver([["127.0.0.1", "8.8.8.8", "10.0.0.1", "::1"]]))
    answers = await resolver.resolve("mixed.test", 443)
    assert [answer["host"] for answer in answers] == ["8.8.8.8"]


async def test_resolver_raises_when_nothing_is_left() -> None:
    resolver = GuardedResolver(ScriptedResolver([["10.0.0.1", "fe80::1"]]))
    with pytest.raises(BlockedDestination) as info:
        await resolver.resolve("inside.test", 443)
    assert info.value.host == "inside.test"
    assert info.value.reason == "10.0.0.1 is private; fe80::1 is link-local"
    assert isinstance(info.value, OSError)


async def test_resolver_honours_allowed_networks() -> None:
    resolver = GuardedResolver(
        ScriptedResolver([["10.9.0.1"]]), allowed=[IPv4Network("10.9.0.0/16")]
    )
    assert [answer["host"] for answer in await resolver.resolve("svc.test", 80)] == ["10.9.0.1"]


async def test_peer_check_on_a_real_transport(loopback: Loopback) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", loopback.port)
    try:
        guarded = GuardedConnector()
        allowing = GuardedConnector(allowed=LOOPBACK_8)
        assert guarded.check_peer(transport) == "loopback"
        assert allowing.check_peer(transport) is None
        await guarded.close()
        await allowing.close()
    finally:
        transport.close()


def test_find_blocked_ignores_other_errors() -> None:
    assert find_blocked(ValueError("nope")) is None
    assert find_blocked(ConnectionRefusedError(111, "refused")) is None
    try:
        try:
            raise BlockedDestination("h", "loopback")
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as outer:
        found = find_blocked(outer)
    assert found is not None
    assert found.reason == "loopback"
