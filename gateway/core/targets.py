"""Which network addresses hookgate may deliver to: the address policy, pure and without I/O.

``is_blocked`` is the whole policy; ``check_literal_url_host`` / ``check_url`` apply it to URL
hosts that need no DNS (IP literals in every legacy spelling, ``localhost``) when an endpoint is
created, and ``check_address`` to the addresses the worker's guarded connector is about to
connect to (``worker/ssrf.py``), after DNS.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final

from yarl import URL

__all__ = [
    "IPAddress",
    "IPNetwork",
    "TargetRules",
    "check_address",
    "check_literal_url_host",
    "check_url",
    "is_blocked",
    "parse_allowed_networks",
]

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


@dataclasses.dataclass(frozen=True)
class TargetRules:
    """Which endpoint URLs are acceptable (checked at creation and again at every connect)."""

    https_only: bool = True
    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()


# Most specific first: the first match names the reason.
_V4_TABLE: Final[tuple[tuple[IPv4Network, str], ...]] = tuple(
    (IPv4Network(cidr), reason)
    for cidr, reason in (
        ("169.254.169.254/32", "metadata"),  # AWS, GCP, Azure, OpenStack, …
        ("169.254.170.2/32", "metadata"),  # AWS ECS task credentials
        ("100.100.100.200/32", "metadata"),  # Alibaba Cloud
        ("0.0.0.0/8", "unspecified"),  # "this network"; 0.0.0.0 reaches the local host
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "cgnat"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "ietf-protocol"),  # includes 192.0.0.192, Oracle Cloud metadata
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)

_V6_TABLE: Final[tuple[tuple[IPv6Network, str], ...]] = tuple(
    (IPv6Network(cidr), reason)
    for cidr, reason in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fd00:ec2::254/128", "metadata"),  # AWS IMDS over IPv6
        ("100::/64", "discard"),
        ("64:ff9b:1::/48", "nat64-local"),  # see _embedded_v4
        ("2001:2::/48", "benchmarking"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("2001:10::/28", "orchid"),
        ("2001:20::/28", "orchid"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)

# Every globally routed IPv6 unicast address is in 2000::/3; everything else that is not an
# IPv4 embedding is reserved, link-local, ULA, multicast or similar.
_V6_GLOBAL_UNICAST: Final = IPv6Network("2000::/3")
_V4_MAPPED: Final = IPv6Network("::ffff:0:0/96")
_V4_TRANSLATED: Final = IPv6Network("::ffff:0:0:0/96")  # RFC 2765 SIIT
_V4_COMPATIBLE: Final = IPv6Network("::/96")  # deprecated, but some stacks still route it
_NAT64: Final = IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR: Final = IPv6Network("2002::/16")
_TEREDO: Final = IPv6Network("2001::/32")
_LOW32: Final = 0xFFFFFFFF


def _embedded_v4(address: IPv6Address) -> tuple[str, tuple[IPv4Address, ...]] | None:
    """The IPv4 address(es) an IPv6 address carries, with the embedding's name.

    The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is not decoded: where the IPv4 sits
    depends on the operator's prefix length and it is never globally routed, so the table
    blocks all of it.
    """
    value = int(address)
    if address in _V4_MAPPED:
        return "ipv4-mapped", (IPv4Address(value & _LOW32),)
    if address in _V4_TRANSLATED:
        return "ipv4-translated", (IPv4Address(value & _LOW32),)
    if address in _V4_COMPATIBLE:
        return "ipv4-compatible", (IPv4Address(value & _LOW32),)
    if address in _NAT64:
        return "nat64", (IPv4Address(value & _LOW32),)
    if address in _SIX_TO_FOUR:
        return "6to4", (IPv4Address((value >> 80) & _LOW32),)
    if address in _TEREDO:
        server = IPv4Address((value >> 64) & _LOW32)
        client = IPv4Address(~value & _LOW32)  # the client address is stored inverted
        return "teredo", (client, server)
    return None


def is_blocked(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why the worker must not connect to ``address``, or None when it may.

    Addresses inside an ``allowed`` network are always permitted. IPv6 embeddings of IPv4
    (mapped, compatible, NAT64, 6to4, Teredo) are judged by the IPv4 address they reach.
    """
    if any(address in network for network in allowed):
        return None
    if isinstance(address, IPv4Address):
        for network, reason in _V4_TABLE:
            if address in network:
                return reason
        # Last net only: the table above is the policy, these flags move between Pythons.
        return None if address.is_global else "non-global"

    if address.scope_id is not None:
        address = IPv6Address(int(address))
    for v6_network, v6_reason in _V6_TABLE:
        if address in v6_network:
            return v6_reason
    embedding = _embedded_v4(address)
    if embedding is not None:
        kind, embedded = embedding
        for v4 in embedded:
            inner = is_blocked(v4, allowed)
            if inner is not None:
                return f"{kind} {inner}"
        return None
    if address not in _V6_GLOBAL_UNICAST:
        return "reserved"
    return None if address.is_global else "non-global"


def parse_allowed_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse ``HOOKGATE_ALLOWED_NETWORKS``: CIDRs or bare addresses, comma-separated.

    Raises ValueError naming the bad entry; a network with host bits set (``10.0.0.1/8``) is
    refused rather than silently widened.
    """
    networks: list[IPNetwork] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            raise ValueError(
                f"HOOKGATE_ALLOWED_NETWORKS: {entry!r} is not an IP network "
                f"(expected CIDR like 10.0.0.0/8 or fd00::/8, comma-separated): {exc}"
            ) from None
    return tuple(networks)


# The shapes glibc's inet_aton accepts: 1-4 dot-separated parts, each decimal, octal (0…) or
# hex (0x…). Matched before calling inet_aton because inet_aton also accepts trailing junk
# after whitespace ("1.2.3.4 anything").
_LEGACY_PART: Final = r"(?:0[xX][0-9a-fA-F]*|[0-9]+)"
_LEGACY_V4: Final = re.compile(rf"{_LEGACY_PART}(?:\.{_LEGACY_PART}){{0,3}}")
_LOOPBACK_ADDRESSES: Final = (IPv4Address("127.0.0.1"), IPv6Address("::1"))


def _parse_host_address(host: str) -> IPAddress | None:
    """The address an IP-literal URL host denotes, including legacy IPv4 forms; else None."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if "%" in host:  # IPv6 zone id (``fe80::1%eth0``, or ``%25eth0`` still URL-encoded)
        host = host.split("%", 1)[0]
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(host):
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_literal_url_host(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a URL host that needs no DNS is refused, or None (names are judged at connect).

    Handles ``[::1]``, zone ids, legacy IPv4 spellings (``2130706433``, ``0x7f.1``,
    ``127.1``) as the address they denote, and ``localhost`` / ``*.localhost`` names, which
    count as loopback (allowed only when ``allowed`` covers 127.0.0.1 or ::1).
    """
    address = _parse_host_address(host)
    if address is not None:
        return is_blocked(address, allowed)
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        if any(is_blocked(loopback, allowed) is None for loopback in _LOOPBACK_ADDRESSES):
            return None
        return "localhost"
    return None


def check_url(
    url: str | URL, allowed: Sequence[IPNetwork] = (), *, allow_private: bool = False
) -> str | None:
    """Pre-flight check of an endpoint URL, no I/O: the reason it is refused, or None.

    Only IP literals and localhost names can be judged here; a None does not make a URL safe,
    the connector still checks every address it connects to.
    """
    if allow_private:
        return None
    host = URL(url).raw_host if isinstance(url, str) else url.raw_host
    if host is None:
        return None
    return check_literal_url_host(host, allowed)


def _address_of(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def check_address(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """For addresses about to be connected to: unparseable counts as blocked (fail closed)."""
    address = _address_of(host)
    if address is None:
        return "not an IP address"
    return is_blocked(address, allowed)
