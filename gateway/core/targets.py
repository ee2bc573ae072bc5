"""Which network addresses hookgate may deliver to: the address policy, pure and without I/O.

``is_blocked`` is the whole policy; ``check_host`` / ``check_url`` apply it to URL hosts that
need no DNS (IP literals in every legacy spelling, ``localhost``) when an endpoint is created and
before each attempt, after ``normalise_host`` has read the host as clients do (percent-escapes,
UTS #46 / IDNA, full-width digits and dots); ``check_address`` applies it to the addresses the
worker's guarded connector is about to connect to (``worker/ssrf.py``), after DNS.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import unicodedata
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Final
from urllib.parse import unquote

import idna
from yarl import URL

__all__ = [
    "HostInvalid",
    "IPAddress",
    "IPNetwork",
    "TargetRules",
    "check_address",
    "check_host",
    "check_literal_url_host",
    "check_url",
    "client_host",
    "is_blocked",
    "normalise_host",
    "parse_allowed_networks",
    "parse_ipv4",
    "spelling_problem",
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


# -- URL hosts -----------------------------------------------------------------------------------
#
# A host is judged by what the clients that might use it reach, so that no spelling means one
# thing to the check and another to a connection. The worker's client (aiohttp) takes its host
# from yarl, which lower-cases an ASCII host and maps a non-ASCII one with UTS #46 + IDNA 2008
# (the ``idna`` package; IDNA 2003 as fallback), refusing invisible code points; aiohttp then
# hands any host that is not a plain IP literal to getaddrinfo, which reads every inet_aton
# spelling of IPv4 (``0x7f.1``, ``2130706433``). Browsers (WHATWG URL) percent-decode the host,
# map it with UTS #46 (which deletes soft hyphens, zero-width spaces, …), then read a host whose
# last label is a number as IPv4 in those same spellings. IDNA 2003 clients (Python's
# http.client) also delete the zero-width joiners.
#
# ``normalise_host`` is the most lenient of those readings, so ``check_host`` refuses a host if
# any client would reach a blocked address or a localhost name; ``spelling_problem`` and
# ``client_host`` then let creation refuse the spellings the readings disagree on, so what is
# stored is read the same way by the check, the worker's pre-flight and its client.


class HostInvalid(ValueError):
    """A URL host that reads as no host at all; the message never repeats the host."""


# Code points some IDNA reading deletes: Unicode's Default_Ignorable code points (soft hyphen,
# zero-width space and joiners, bidi controls, variation selectors, …; UTS #46 ignores most)
# and RFC 3454 table B.1 (IDNA 2003 maps them to nothing). The set yarl refuses.
_IGNORABLE: Final = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u1806\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
# What is left of these after that is never part of a host name.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs"})

# An ASCII DNS label as clients send it: letters, digits, hyphen, underscore (SRV-style names
# and some hosting providers use it); 1-63 characters. Anything else (``!``, ``*``, ``\``, a
# ``%`` left after decoding) no resolver finds, and WHATWG refuses several of them.
_LABEL: Final = re.compile(r"[a-z0-9_-]{1,63}")
_MAX_NAME: Final = 253
# WHATWG's "ends in a number": such a host is an IPv4 address or nothing.
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0x[0-9a-f]*")
_IPV4_DIGITS: Final = {
    8: frozenset("01234567"),
    10: frozenset("0123456789"),
    16: frozenset("0123456789abcdefABCDEF"),
}
# An RFC 6874 zone id: unreserved characters only.
_ZONE_ID: Final = re.compile(r"[A-Za-z0-9._~-]+")

_LOOPBACK_ADDRESSES: Final = (IPv4Address("127.0.0.1"), IPv6Address("::1"))
# Names that reach this machine without DNS: RFC 6761's localhost (and every name under it),
# and the loopback names of the usual /etc/hosts (Debian, Red Hat).
_LOOPBACK_NAMES: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    }
)


def _ipv4_number(part: str) -> int | None:
    """One part of a legacy IPv4 spelling: decimal, octal (``0…``) or hex (``0x…``)."""
    base = 10
    if part[:2] in ("0x", "0X"):
        base, part = 16, part[2:]
        if not part:
            return 0  # WHATWG reads a bare "0x" as 0
    elif len(part) > 1 and part.startswith("0"):
        base, part = 8, part[1:]
    # The digit check also keeps out what int() would take: "_", signs, spaces, non-ASCII.
    if not part or not _IPV4_DIGITS[base].issuperset(part):
        return None
    return int(part, base)


def parse_ipv4(text: str) -> IPv4Address | None:
    """The IPv4 address ``text`` spells in any legacy form (WHATWG's IPv4 parser), else None.

    1-4 dot-separated parts, each decimal, octal or hex, the last filling the remaining bytes:
    ``127.1``, ``0x7f.1``, ``2130706433`` and ``0177.0.0.1`` are all 127.0.0.1. These are the
    shapes glibc's inet_aton (so getaddrinfo) reads too; WHATWG adds a bare ``0x``.
    """
    parts = text.split(".")
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, number in enumerate(leading):
        value += number << (8 * (3 - i))
    return IPv4Address(value)


def _normalise_ip_literal(inner: str) -> str:
    """``[inner]``: an IPv6 address with an optional zone id, as ``[compressed%25zone]``."""
    # yarl's rule for the zone separator: the URL-encoded ``%25`` if present, else a bare ``%``.
    address_text, sep, zone = inner.partition("%25" if "%25" in inner else "%")
    if sep and not _ZONE_ID.fullmatch(zone):
        raise HostInvalid("has an invalid IPv6 zone id")
    # yarl maps a non-ASCII address (full-width digits) before parsing it; so does this, so
    # that the address is judged (``spelling_problem`` refuses the spelling anyway).
    address_text = unicodedata.normalize("NFKC", address_text)
    try:
        address = IPv6Address(address_text)
    except ValueError:
        raise HostInvalid("has brackets but no valid IPv6 address in them") from None
    return f"[{address.compressed}%25{zone}]" if sep else f"[{address.compressed}]"


def _normalise_ascii_name(name: str) -> str:
    """A lower-case ASCII host: dotted-quad IPv4 if it ends in a number, else a checked name."""
    bare = name[:-1] if name.endswith(".") else name
    if not bare:
        raise HostInvalid("is empty")
    labels = bare.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        address = parse_ipv4(bare)
        if address is None:
            raise HostInvalid("ends in a number but is not an IPv4 address")
        return str(address)
    if len(bare) > _MAX_NAME:
        raise HostInvalid(f"is longer than {_MAX_NAME} characters")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise HostInvalid("must be dot-separated labels of 1-63 letters, digits, '-' or '_'")
        if label.startswith("xn--"):
            # WHATWG decodes and re-checks punycode labels; one that does not decode to a
            # valid IDNA 2008 label (``xn--localhost-``, ``xn--``) is refused.
            try:
                idna.decode(label)
            except UnicodeError:
                raise HostInvalid("has a punycode (xn--) label that is not valid IDNA") from None
    return name


def normalise_host(host: str) -> str:
    """The ASCII host a URL host spelling reaches, read as leniently as any client; raises
    HostInvalid when it reaches no host.

    ``host`` is the host as written in a URL (brackets included, any case, Unicode,
    percent-escapes). Percent-escapes are decoded (browsers do), then code points some IDNA
    reading deletes (soft hyphen, zero-width space, the joiners, …) are deleted, then the host
    is mapped with UTS #46 and checked as IDNA 2008 (full-width and circled letters and
    digits, ideographic full stops, upper case all map to plain ASCII). The answer: an IPv6
    literal as ``[compressed]`` (zone id as ``%25zone``); a host whose last label is a number
    as the dotted-quad IPv4 address it spells (``0x7f.1`` → ``127.0.0.1``); otherwise a name in
    A-labels (``bücher.example`` → ``xn--bcher-kva.example``), keeping a trailing dot.
    """
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")):
            raise HostInvalid("has unbalanced brackets")
        return _normalise_ip_literal(host[1:-1])
    if ":" in host:  # a bare IPv6 address, as yarl's ``raw_host`` gives it
        try:
            return _normalise_ip_literal(host)
        except HostInvalid:
            raise HostInvalid("contains ':' but is no bracketed IPv6 address") from None
    if "%" in host:
        try:
            host = unquote(host, errors="strict")
        except UnicodeDecodeError:
            raise HostInvalid("percent-decodes to something that is not UTF-8") from None
    host = _IGNORABLE.sub("", host)
    if not host:
        raise HostInvalid("is empty")
    if any(unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in host):
        raise HostInvalid("contains a control, format or space character")
    return _normalise_ascii_name(_mapped(host))


def _mapped(host: str) -> str:
    """A name host mapped to ASCII as yarl maps it: lower case, or UTS #46 + IDNA 2008."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError:
        raise HostInvalid("is not a valid internationalised domain name (IDNA)") from None


def spelling_problem(host: str) -> str | None:
    """Why a host that normalises is still spelled in a way clients read differently, or None.

    yarl (the worker's client) leaves percent-escapes in a host, refuses invisible code points
    and mangles a non-ASCII IPv6 literal, where browsers decode, delete or refuse them; and
    aiohttp refuses an all-digit IPv4 address that is not a plain dotted quad (``2130706433``,
    ``127.1``) but hands the hex forms (``0x7f.1``) to the resolver, where glibc reads them and
    other resolvers may not. ``host`` must normalise (``normalise_host``).
    """
    bracketed = host.startswith("[")
    if "%" in host and not bracketed:
        return "must not be percent-encoded"
    if _IGNORABLE.search(host):
        return "must not contain invisible characters (soft hyphens, zero-width spaces, …)"
    if bracketed and not host.isascii():
        return "must write an IPv6 address in ASCII"
    if not bracketed and ":" not in host:
        normal = normalise_host(host)
        if _is_ipv4(normal) and _mapped(host) != normal:
            return "must write an IPv4 address as four decimal numbers (a.b.c.d)"
    return None


def _is_ipv4(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True


def _refusal_of_normalised(host: str, allowed: Sequence[IPNetwork]) -> str | None:
    if host.startswith("["):
        return is_blocked(IPv6Address(host[1:-1].split("%", 1)[0]), allowed)
    name = host[:-1] if host.endswith(".") else host
    try:
        return is_blocked(IPv4Address(name), allowed)
    except ValueError:
        pass
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        if any(is_blocked(loopback, allowed) is None for loopback in _LOOPBACK_ADDRESSES):
            return None
        return "localhost"
    return None


def check_host(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a URL host is refused without DNS, or None; raises HostInvalid (``normalise_host``).

    The normalised host is judged: an IP address in any spelling by ``is_blocked``;
    ``localhost``, ``*.localhost`` and the /etc/hosts loopback names as loopback (allowed only
    when ``allowed`` covers 127.0.0.1 or ::1). Every other name is left to the connector,
    after DNS.
    """
    return _refusal_of_normalised(normalise_host(host), allowed)


def check_literal_url_host(host: str, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """``check_host`` that never raises: a host that does not normalise is refused (fail
    closed), with the reason ``"not a valid host"``."""
    try:
        return check_host(host, allowed)
    except HostInvalid:
        return "not a valid host"


def client_host(url: str) -> str:
    """The normalised host the worker's HTTP client (aiohttp, through yarl) reads in ``url``.

    Raises HostInvalid when yarl refuses the URL or its host does not normalise. Creation
    compares it with the host it judged, so the two readings cannot differ.
    """
    try:
        host = URL(url).raw_host
    except (ValueError, TypeError):
        raise HostInvalid("is not one the HTTP client can read") from None
    if not host:
        raise HostInvalid("is empty")
    return normalise_host(host)


def check_url(
    url: str | URL, allowed: Sequence[IPNetwork] = (), *, allow_private: bool = False
) -> str | None:
    """Pre-flight check of an endpoint URL, no I/O: the reason it is refused, or None.

    The host yarl reads is normalised and judged exactly as at creation (``check_host``); one
    that does not normalise, or a URL yarl cannot parse, is refused. Only IP literals and
    localhost names can be judged here; a None does not make a URL safe, the connector still
    checks every address it connects to.
    """
    if allow_private:
        return None
    try:
        host = URL(url).raw_host if isinstance(url, str) else url.raw_host
    except ValueError:
        return "not a valid URL"
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
