"""URL hosts in every spelling (issue 12, defect 6): how ``normalise_host`` reads them, which the
address policy refuses, and that creation, the worker's pre-flight and the worker's HTTP client
(yarl, then getaddrinfo) read one stored URL the same way.

The expected hosts were checked against a WHATWG URL parser (Node's ``new URL``) when written:
where the table differs from it, it is stricter (it refuses, or reads a host browsers refuse).
"""

# ruff: noqa: RUF001, RUF003  (the point of these tables is look-alike characters)

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network, ip_address

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from yarl import URL

from gateway.core.errors import ValidationFailed
from gateway.core.targets import (
    HostInvalid,
    TargetRules,
    check_host,
    check_literal_url_host,
    check_url,
    client_host,
    is_blocked,
    normalise_host,
    parse_ipv4,
    spelling_problem,
)
from gateway.web import validation

STRICT = TargetRules(https_only=False, allow_private=False)
OPEN = TargetRules(https_only=False, allow_private=True)
LOOPBACK_8 = (IPv4Network("127.0.0.0/8"),)

# spelling → (normalised host, why the policy refuses it or None)
READINGS: dict[str, tuple[str, str | None]] = {
    # the reported examples
    "１２７.０.０.１": ("127.0.0.1", "loopback"),
    "127。0。0。1": ("127.0.0.1", "loopback"),
    # every full stop UTS #46 maps to "."
    "127．0．0．1": ("127.0.0.1", "loopback"),
    "127｡0｡0｡1": ("127.0.0.1", "loopback"),
    "127.0.0.1。": ("127.0.0.1", "loopback"),
    # digits from other blocks that map to ASCII digits
    "①②⑦.0.0.1": ("127.0.0.1", "loopback"),
    "𝟏𝟐𝟕.0.0.1": ("127.0.0.1", "loopback"),
    "127.0.0.１": ("127.0.0.1", "loopback"),
    # legacy IPv4 spellings, also after mapping
    "2130706433": ("127.0.0.1", "loopback"),
    "２１３０７０６４３３": ("127.0.0.1", "loopback"),
    "２１３０７０６４３３.": ("127.0.0.1", "loopback"),
    "０ｘ７ｆ.１": ("127.0.0.1", "loopback"),
    "0x7f｡１": ("127.0.0.1", "loopback"),
    "１２７．１": ("127.0.0.1", "loopback"),
    "0X7F.0X0.0X0.0X1": ("127.0.0.1", "loopback"),
    "017700000001": ("127.0.0.1", "loopback"),
    "0177.0.0.1": ("127.0.0.1", "loopback"),
    "127.0.0.0x1": ("127.0.0.1", "loopback"),
    "127.0.0.01": ("127.0.0.1", "loopback"),
    "0xa9.0xfe.0xa9.0xfe": ("169.254.169.254", "metadata"),
    "１６９.２５４.１６９.２５４": ("169.254.169.254", "metadata"),
    "0": ("0.0.0.0", "unspecified"),
    "0x": ("0.0.0.0", "unspecified"),  # WHATWG reads a bare 0x as 0
    "１０.１": ("10.0.0.1", "private"),
    "4294967295": ("255.255.255.255", "broadcast"),
    # percent-encoded (browsers decode; creation then refuses the spelling, see below)
    "%31%32%37.0.0.1": ("127.0.0.1", "loopback"),
    "127.0.0.1%2e": ("127.0.0.1", "loopback"),
    "%ef%bc%91%ef%bc%92%ef%bc%97.0.0.1": ("127.0.0.1", "loopback"),
    "loc%61lhost": ("localhost", "localhost"),
    # localhost in every case, width and with invisible code points deleted
    "LOCALHOST.": ("localhost.", "localhost"),
    "ｌｏｃａｌｈｏｓｔ": ("localhost", "localhost"),
    "ＬＯＣＡＬＨＯＳＴ．": ("localhost.", "localhost"),
    "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ": ("localhost", "localhost"),
    "ᴸᴼᶜᴬᴸᴴᴼˢᵀ": ("localhost", "localhost"),
    "ℓocalhost": ("localhost", "localhost"),
    "localhost。": ("localhost.", "localhost"),
    "ａ．ｌｏｃａｌｈｏｓｔ": ("a.localhost", "localhost"),
    "x.ᴸᴼᶜᴬᴸᴴᴼˢᵀ": ("x.localhost", "localhost"),
    "local\u00adhost": ("localhost", "localhost"),  # soft hyphen: UTS #46 deletes it
    "local\u200bhost": ("localhost", "localhost"),  # zero-width space
    "local\u200chost": ("localhost", "localhost"),  # ZWNJ: IDNA 2003 deletes it
    "local\u200dhost": ("localhost", "localhost"),  # ZWJ
    "local\u2060host": ("localhost", "localhost"),  # word joiner
    "local\ufeffhost": ("localhost", "localhost"),  # BOM
    "local\ufe0fhost": ("localhost", "localhost"),  # variation selector
    "１２７\u00ad.0.0.1": ("127.0.0.1", "loopback"),
    "localhost.localdomain": ("localhost.localdomain", "localhost"),
    "IP6-LOCALHOST": ("ip6-localhost", "localhost"),
    # IPv6 literals
    "[0:0:0:0:0:0:0:1]": ("[::1]", "loopback"),
    "[::ffff:127.0.0.1]": ("[::ffff:7f00:1]", "ipv4-mapped loopback"),
    "[::ffff:169.254.169.254]": ("[::ffff:a9fe:a9fe]", "ipv4-mapped metadata"),
    "[64:ff9b::7f00:1]": ("[64:ff9b::7f00:1]", "nat64 loopback"),
    "[::]": ("[::]", "unspecified"),
    "[FE80::1%25eth0]": ("[fe80::1%25eth0]", "link-local"),
    "[::１]": ("[::1]", "loopback"),
    # stays accepted: public addresses and real names, IDN or not
    "8.8.8.8": ("8.8.8.8", None),
    "134744072": ("8.8.8.8", None),
    "0x8.8.8.8": ("8.8.8.8", None),
    "[2606:4700:4700::1111]": ("[2606:4700:4700::1111]", None),
    "example.com": ("example.com", None),
    "Example.COM.": ("example.com.", None),
    "ｅｘａｍｐｌｅ.com": ("example.com", None),
    "bücher.example": ("xn--bcher-kva.example", None),
    "BÜCHER.example": ("xn--bcher-kva.example", None),
    "xn--bcher-kva.example": ("xn--bcher-kva.example", None),
    "XN--BCHER-KVA.EXAMPLE": ("xn--bcher-kva.example", None),
    "faß.de": ("xn--fa-hia.de", None),
    "例え.テスト": ("xn--r8jz45g.xn--zckzah", None),
    "ΣΊΣΥΦΟΣ.example": ("xn--kxa6akbbkh.example", None),
    "Ⅻ.example": ("xii.example", None),
    "lосаlhost": ("xn--llhost-3nf5i1a", None),  # Cyrillic о, с, а: a different name
    "ʟocalhost": ("xn--ocalhost-w8d", None),
    "localhost.example.com": ("localhost.example.com", None),
    "localhostx": ("localhostx", None),
    "my_host.example": ("my_host.example", None),
    "ab--c.example": ("ab--c.example", None),
}

# spelling → what the refusal says (none of them is a host)
INVALID: dict[str, str] = {
    "": "empty",
    ".": "empty",
    "a..b": "labels",
    "127.0.0.1..": "labels",
    "1.2.3.4.5": "not an IPv4 address",
    "999.1.1.1": "not an IPv4 address",
    "4294967296": "not an IPv4 address",
    "09.1.1.1": "not an IPv4 address",
    "1.2.3.0400": "not an IPv4 address",
    "0x1_2.1": "not an IPv4 address",
    "example.0x": "not an IPv4 address",
    "١٢٧.0.0.1": "IDNA",  # Arabic-Indic digits are not digits to UTS #46
    "١.١.١.١": "IDNA",
    "\u0300a.example": "IDNA",
    "💩.example": "IDNA",
    "ex⁄ample.com": "IDNA",
    "xn--localhost-": "punycode",
    "xn--": "punycode",
    "xn--ls8h.example": "punycode",
    "a!b.example": "labels",
    "127.0.0.1\\.evil.com": "labels",
    "a%2fb.example": "labels",
    "%2e%2e": "labels",
    "%ff.example": "UTF-8",
    "exa%00mple.com": "control",
    "a\u3000b.example": "control",
    "a" * 64 + ".example": "labels",
    ("a" * 60 + ".") * 5 + "example": "longer than",
    "[127.0.0.1]": "IPv6",
    "[v1.x]": "IPv6",
    "[::1": "brackets",
    "[::1%25]": "zone",
    "[::1%25eth/0]": "zone",
    "%5b::1%5d": "IPv6",
}


@pytest.mark.parametrize(("spelling", "expected"), READINGS.items())
def test_normalised_reading(spelling: str, expected: tuple[str, str | None]) -> None:
    host, reason = expected
    assert normalise_host(spelling) == host
    assert normalise_host(host) == host  # the reading is a fixed point
    assert check_host(spelling) == reason
    assert check_literal_url_host(spelling) == reason


@pytest.mark.parametrize(("spelling", "words"), INVALID.items())
def test_hosts_that_read_as_no_host(spelling: str, words: str) -> None:
    with pytest.raises(HostInvalid, match=words):
        normalise_host(spelling)
    with pytest.raises(HostInvalid):
        check_host(spelling)
    assert check_literal_url_host(spelling) == "not a valid host"  # fail closed


def test_allowed_networks_cover_every_spelling_of_loopback() -> None:
    for spelling in ("ｌｏｃａｌｈｏｓｔ", "０ｘ７ｆ.１", "127。0。0。1", "[::ffff:127.0.0.1]"):
        assert check_host(spelling) is not None
        assert check_host(spelling, LOOPBACK_8) is None


@pytest.mark.parametrize(
    ("spelling", "problem"),
    [
        ("%31%32%37.0.0.1", "percent-encoded"),
        ("%65xample.com", "percent-encoded"),
        ("local\u00adhost.example", "invisible"),
        ("exa\u200bmple.com", "invisible"),
        ("[２６０６:４７００::１１１１]", "ASCII"),
        ("134744072", "four decimal numbers"),
        ("0x8.8.8.8", "four decimal numbers"),
        ("８.８.８.０１０", "four decimal numbers"),
        ("8.8.8.8.", "four decimal numbers"),
    ],
)
def test_spellings_clients_read_differently(spelling: str, problem: str) -> None:
    normalise_host(spelling)  # each means a host to some client ...
    assert problem in (spelling_problem(spelling) or "")  # ... but not to all of them


@pytest.mark.parametrize(
    "spelling",
    [
        "bücher.example",
        "[fe80::1%25eth0]",
        "ｅｘａｍｐｌｅ.com",
        "８.８.８.８",
        "1password.example",
    ],
)
def test_ordinary_spellings_have_no_problem(spelling: str) -> None:
    assert spelling_problem(spelling) is None


# -- the worker's client reads the same host ----------------------------------------------------

AGREED = [s for s in READINGS if spelling_problem(s) is None and s.startswith("[") <= s.isascii()]


@pytest.mark.parametrize("spelling", AGREED)
def test_yarl_reads_the_normalised_host(spelling: str) -> None:
    """yarl (aiohttp's URL) reads each storable spelling as the host the check judged."""
    url = f"http://{spelling}/hook"
    assert client_host(url) == normalise_host(spelling)
    assert check_url(url) == READINGS[spelling][1]


# Legacy IPv4 spellings as yarl leaves them: aiohttp hands the hex ones to getaddrinfo (it
# refuses the all-digit ones itself, see test_ssrf); any client using getaddrinfo reads them so.
RESOLVED_SPELLINGS = [
    "０ｘ７ｆ.１",
    "0x7f｡１",
    "0X7F.0X0.0X0.0X1",
    "127.0.0.0x1",
    "0xa9.0xfe.0xa9.0xfe",
    "0x8.8.8.8",
    "2130706433",
    "２１３０７０６４３３",
    "１２７．１",
    "0177.0.0.1",
]


@pytest.mark.parametrize("spelling", RESOLVED_SPELLINGS)
def test_getaddrinfo_reaches_the_address_the_check_judged(spelling: str) -> None:
    """What yarl leaves of an IPv4 spelling is read by getaddrinfo as the very address that was
    judged (AI_NUMERICHOST: no DNS, the numeric parse only)."""
    raw = URL(f"http://{spelling}/").raw_host
    assert raw is not None
    infos = socket.getaddrinfo(raw, None, flags=socket.AI_NUMERICHOST)
    assert {info[4][0] for info in infos} == {READINGS[spelling][0]}


# -- legacy IPv4: the WHATWG parser agrees with glibc's inet_aton ------------------------------

_part = st.one_of(
    st.integers(0, 2**32).map(str),
    st.integers(0, 2**32).map(lambda n: f"0{n:o}"),
    st.integers(0, 2**32).map(lambda n: f"0x{n:x}"),
    st.integers(0, 2**32).map(lambda n: f"0X{n:X}"),
    st.sampled_from(["", "08", "09", "0x", "0xg", "1_0", "+1", " 1", "１"]),
)


@given(st.lists(_part, min_size=1, max_size=5).map(".".join))
@example("0x7f.1")
@example("127.0.0.1")
@example("0377.0377.0377.0377")
def test_parse_ipv4_agrees_with_inet_aton(text: str) -> None:
    try:
        glibc: IPv4Address | None = IPv4Address(socket.inet_aton(text))
    except OSError:
        glibc = None
    ours = parse_ipv4(text)
    if glibc is None and ours is not None:
        # Only WHATWG's bare "0x" (read as 0) is beyond inet_aton, and only as an address.
        assert any(p in ("0x", "0X") for p in text.split(".")), text
    else:
        assert ours == glibc, text


# -- creation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://１２７.０.０.１:19002/",
        "http://127。0。0。1/",
        "https://ｌｏｃａｌｈｏｓｔ/hook",
        "https://０ｘ７ｆ.１/",
        "https://２１３０７０６４３３/",
        "https://ａ．ｌｏｃａｌｈｏｓｔ/",
        "https://[0:0:0:0:0:0:0:1]/",
        "https://%31%32%37.0.0.1/",
        "https://local\u00adhost/",
    ],
)
def test_spelled_private_targets_are_private_url(url: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        validation.url(url, STRICT)
    assert caught.value.code == "private_url"
    assert caught.value.field == "url"
    assert "address" in caught.value.reason


def test_private_url_names_the_normalised_host() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validation.url("http://１２７.０.０.１:19002/", STRICT)
    assert caught.value.reason == "points at a loopback address (the host normalises to 127.0.0.1)"
    with pytest.raises(ValidationFailed) as caught:
        validation.url("http://127.0.0.1/", STRICT)
    assert caught.value.reason == "points at a loopback address"


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:0/", "port from 1 to 65535"),
        ("https://example.com:0/", "port from 1 to 65535"),
        ("https://example.com:00/", "port from 1 to 65535"),
        ("https://[2606:4700::1111]:0/", "port from 1 to 65535"),
        ("https://example.com:65536/", "port from 1 to 65535"),
        ("https://example.com:８０/", "port from 1 to 65535"),
        ("https://example.com:+80/", "port from 1 to 65535"),
        ("https://example.com:80:80/", "port from 1 to 65535"),
        ("https://%65xample.com/", "percent-encoded"),
        ("https://exa\u200bmple.com/", "invisible"),
        ("https://xn--localhost-/", "punycode"),
        ("https://1.2.3.4.5/", "IPv4"),
        ("https://a..example/", "labels"),
        ("https://example.com\\@8.8.8.8/", "credentials"),
        ("https://8.8.8.8\\.example.com/", "labels"),
        ("https://[2606:4700::1111]x/", "not a valid URL"),
        ("https://[127.0.0.1]/", "not a valid URL"),
        ("https://:443/", "empty"),
        ("https://134744072/", "four decimal numbers"),
        ("https://0x8.8.8.8/", "four decimal numbers"),
        ("https://8.8.8.8./", "four decimal numbers"),
    ],
)
def test_hosts_and_ports_that_cannot_be_delivered_to(url: str, words: str) -> None:
    for rules in (STRICT, OPEN):  # whatever the address policy
        with pytest.raises(ValidationFailed, match=words) as caught:
            validation.url(url, rules)
        assert caught.value.code == "validation_failed"
        assert caught.value.field == "url"


@pytest.mark.parametrize(
    "url",
    [
        "https://bücher.example/hook",
        "https://xn--bcher-kva.example/hook",
        "https://BÜCHER.example:8443/hook?x=1",
        "https://例え.テスト/",
        "https://ｅｘａｍｐｌｅ.com/",
        "https://8.8.8.8/",
        "https://８.８.８.８/",
        "https://[2606:4700:4700::1111]:443/x",
        "https://example.com:65535/",
        "https://example.com:/",
        "https://my_host.example/",
    ],
)
def test_public_spellings_stay_accepted_and_stored_as_sent(url: str) -> None:
    assert validation.url(url, STRICT) == url
    assert check_url(url) is None  # and the worker's pre-flight agrees


def test_allow_private_still_normalises() -> None:
    assert validation.url("http://１２７.０.０.１:19002/", OPEN) == "http://１２７.０.０.１:19002/"
    with pytest.raises(ValidationFailed, match="port"):
        validation.url("http://１２７.０.０.１:0/", OPEN)
    with pytest.raises(ValidationFailed, match="percent"):
        validation.url("http://%31%32%37.0.0.1/", OPEN)


def test_check_url_refuses_what_yarl_cannot_read_instead_of_raising() -> None:
    assert check_url("http://a\\b.example/") == "not a valid URL"
    assert check_url("http://%31%32%37.0.0.1/") == "loopback"  # stored before the fix
    assert check_url("http://xn--localhost-.example/") == "not a valid host"


# -- creation and the worker cannot disagree -----------------------------------------------------

_host_chars = st.sampled_from(
    list("0123456789abcfhlostx.-_%:[]")
    + list("０１２７ｘｆｌｏｃａｈｓｔ。．｡①𝟏")
    + ["\u00ad", "\u200b", "\u200d", "%31", "%2e", "localhost", "127", "0x7f", "::1", "ffff"]
)


@given(st.lists(_host_chars, min_size=1, max_size=12).map("".join))
@example("１２７.０.０.１")
@example("0x7f.1")
@example("ｌｏｃａｌｈｏｓｔ")
@example("[::ffff:127.0.0.1]")
def test_what_creation_accepts_the_worker_may_connect_to(host: str) -> None:
    url = f"http://{host}/hook"
    try:
        validation.url(url, STRICT)
    except ValidationFailed as exc:
        assert exc.field == "url"
        return
    # Accepted with private targets refused: the pre-flight agrees, and neither a literal
    # address aiohttp or getaddrinfo reads in yarl's host nor a localhost name is blocked.
    assert check_url(url) is None
    raw = URL(url).raw_host
    assert raw is not None
    bare = raw.rstrip(".")
    assert bare not in ("localhost", "") and not bare.endswith(".localhost")
    try:
        infos = socket.getaddrinfo(bare, None, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        return  # a name: the connector judges what DNS answers
    for info in infos:
        assert is_blocked(ip_address(str(info[4][0]).split("%")[0])) is None, url
