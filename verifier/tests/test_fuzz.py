"""Property tests: nothing but VerificationError escapes `verify`, whatever comes in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hookgate_verifier import (
    InvalidSignature,
    MalformedHeaders,
    MemorySeenStore,
    VerificationError,
    Verifier,
    generate_ed25519_keypair,
    sign,
    signed_headers,
)
from hookgate_verifier.headers import read_webhook_headers

from .conftest import NOW, SECRET, FakeClock

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PRIVATE_KEY, PUBLIC_KEY = generate_ed25519_keypair()

HMAC_VERIFIER = Verifier(SECRET, clock=FakeClock())
MIXED_VERIFIER = Verifier(
    [SECRET, PUBLIC_KEY, SECRET.rstrip("=")],
    clock=FakeClock(),
    seen=MemorySeenStore(max_entries=50),
)

NAMES = st.sampled_from(
    [
        "webhook-id",
        "Webhook-Timestamp",
        "WEBHOOK-SIGNATURE",
        "HTTP_WEBHOOK_ID",
        "http_webhook_timestamp",
        "HTTP_WEBHOOK_SIGNATURE",
        "content-type",
    ]
) | st.text(max_size=20)
B64ISH = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_,", max_size=100
)
SIGNATURE_PART = st.one_of(
    st.builds(lambda v, s: f"{v},{s}", st.sampled_from(["v1", "v1a", "v2", "V1", ""]), B64ISH),
    st.sampled_from(["v1", "v1,", "v1,a,b", ",", "v1a,", "v1a,a,b", "v1,====", "v1a,====="]),
    st.text(max_size=60),
)
SIGNATURES = st.lists(SIGNATURE_PART, max_size=40).map(" ".join) | st.text()
TIMESTAMPS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.integers(min_value=NOW - 400, max_value=NOW + 400).map(str),
    st.sampled_from(
        ["", "0", "01700000000", "1e9", "1.5", "NaN", "inf", " 1", "\u0661", "9" * 400]
    ),
    st.text(max_size=30),
)
TEXT_OR_BYTES = st.one_of(st.text(), st.binary(), st.none(), st.integers(), st.lists(st.text()))

WEBHOOK_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "webhook-id": st.text(max_size=40) | st.binary(max_size=40),
        "webhook-timestamp": TIMESTAMPS,
        "webhook-signature": SIGNATURES,
    },
)
ARBITRARY_HEADERS = st.one_of(
    WEBHOOK_HEADERS,
    st.dictionaries(NAMES, TEXT_OR_BYTES, max_size=8),
    st.lists(
        st.tuples(st.binary(max_size=30) | NAMES, st.binary(max_size=60) | st.text()), max_size=8
    ),
    st.lists(st.lists(st.text(max_size=5), max_size=3), max_size=4),
    st.none(),
    st.integers(),
    st.text(),
    st.binary(),
    st.tuples(st.integers()),
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100),
    st.sampled_from([b"", b"{}", b"[]", b"null", b'{"a": NaN}', b"\xff", b"[" * 5000]),
)


def _check_only_verification_errors(verifier: Verifier, body: Any, headers: Any) -> None:
    try:
        event = verifier.verify(body, headers)
    except VerificationError:
        return
    assert isinstance(event, dict)


@settings(FUZZ, max_examples=1500)
@given(body=BODIES, headers=ARBITRARY_HEADERS)
@example(
    body=b"{}",
    headers={"webhook-id": "x", "webhook-timestamp": str(NOW), "webhook-signature": "v1"},
)
@example(
    body=b"{}",
    headers={"webhook-id": "x", "webhook-timestamp": str(NOW), "webhook-signature": "v1,a,b"},
)
@example(
    body=b"{}",
    headers={"webhook-id": "x", "webhook-timestamp": str(NOW), "webhook-signature": "v1a,%%"},
)
@example(
    body=b"\xff",
    headers={"webhook-id": "\udc80", "webhook-timestamp": str(NOW), "webhook-signature": "v1,x"},
)
def test_arbitrary_input_raises_only_verification_errors(body: Any, headers: Any) -> None:
    _check_only_verification_errors(HMAC_VERIFIER, body, headers)
    _check_only_verification_errors(MIXED_VERIFIER, body, headers)


@FUZZ
@given(
    body=st.binary(max_size=300),
    msg_id=st.text(min_size=1, max_size=40),
    signatures=SIGNATURES.filter(bool),
    offset=st.integers(-300, 300),
)
def test_garbage_signatures_on_fresh_messages_are_invalid_signature(
    body: bytes, msg_id: str, signatures: str, offset: int
) -> None:
    # Headers present and timestamp in range: only the id's text or the signature can fail.
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(NOW + offset),
        "webhook-signature": signatures,
    }
    unencodable_id = any(0xD800 <= ord(c) < 0xE000 for c in msg_id)
    expected = MalformedHeaders if unencodable_id else InvalidSignature
    with pytest.raises(expected):
        MIXED_VERIFIER.verify(body, headers)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    event=st.dictionaries(st.text(), JSON_VALUES, max_size=6),
    msg_id=st.text(min_size=1, max_size=40).filter(
        lambda s: not any(0xD800 <= ord(c) < 0xE000 for c in s)
    ),
    offset=st.integers(-300, 300),
    indent=st.none() | st.integers(0, 4),
    ensure_ascii=st.booleans(),
)
def test_whatever_we_sign_we_verify(
    event: dict[str, Any], msg_id: str, offset: int, indent: int | None, ensure_ascii: bool
) -> None:
    body = json.dumps(event, indent=indent, ensure_ascii=ensure_ascii).encode()
    headers = signed_headers([SECRET, PRIVATE_KEY], body, msg_id=msg_id, timestamp=NOW + offset)
    assert HMAC_VERIFIER.verify(body, headers) == event
    assert Verifier(PUBLIC_KEY, clock=FakeClock()).verify(body, headers) == event


@FUZZ
@given(
    body=st.binary(min_size=1, max_size=200),
    position=st.integers(min_value=0),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_in_the_body_is_invalid_signature(
    body: bytes, position: int, bit: int
) -> None:
    headers = signed_headers(SECRET, body, msg_id="msg_1", timestamp=NOW)
    tampered = bytearray(body)
    tampered[position % len(body)] ^= 1 << bit
    try:
        HMAC_VERIFIER.verify(bytes(tampered), headers)
    except InvalidSignature:
        pass
    else:
        raise AssertionError("tampered body verified")


@FUZZ
@given(
    casing=st.lists(st.booleans(), min_size=60, max_size=60),
    shape=st.sampled_from(["dict", "pairs", "bytes-pairs", "environ"]),
)
def test_header_names_match_in_any_case(casing: list[bool], shape: str) -> None:
    headers = signed_headers(SECRET, b"{}", msg_id="msg_1", timestamp=NOW)

    def recase(name: str) -> str:
        return "".join(c.upper() if up else c for c, up in zip(name, casing, strict=False))

    pairs = [(recase(name), value) for name, value in headers.items()]
    container: Any
    if shape == "dict":
        container = dict(pairs)
    elif shape == "pairs":
        container = pairs
    elif shape == "bytes-pairs":
        container = [(name.encode(), value.encode()) for name, value in pairs]
    else:
        container = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in pairs}
    assert read_webhook_headers(container) == (
        "msg_1",
        str(NOW),
        sign(SECRET, msg_id="msg_1", timestamp=NOW, body=b"{}"),
    )
    assert HMAC_VERIFIER.verify(b"{}", container) == {}
