"""Behaviour of Verifier.verify: what passes, and the exact error for each bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest

from hookgate_verifier import (
    InvalidPayload,
    InvalidSignature,
    MalformedHeaders,
    MissingHeaders,
    TimestampOutOfTolerance,
    VerificationError,
    Verifier,
    sign,
)
from hookgate_verifier.verifier import MAX_SIGNATURES

from .conftest import BODY, EVENT, NOW, OTHER_SECRET, SECRET, FakeClock

MakeHeaders = Callable[..., dict[str, str]]


def test_valid_webhook_returns_parsed_event(verifier: Verifier, headers: dict[str, str]) -> None:
    assert verifier.verify(BODY, headers) == EVENT


@pytest.mark.parametrize("body_type", [bytes, bytearray, memoryview])
def test_bytes_like_bodies_verify(
    verifier: Verifier, headers: dict[str, str], body_type: type
) -> None:
    assert verifier.verify(body_type(BODY), headers) == EVENT


def test_str_body_is_taken_as_utf8(verifier: Verifier, make_headers: MakeHeaders) -> None:
    body = '{"name": "Zoë ✓"}'
    assert verifier.verify(body, make_headers(body.encode())) == {"name": "Zoë ✓"}


def test_str_body_with_lone_surrogate_is_invalid_payload(verifier: Verifier) -> None:
    with pytest.raises(InvalidPayload):
        verifier.verify(
            '{"a": "\ud800"}',
            {"webhook-id": "m", "webhook-timestamp": str(NOW), "webhook-signature": "v1,x"},
        )


@pytest.mark.parametrize("body", [None, 12, ["a"], object()])
def test_non_bytes_body_is_invalid_payload(
    verifier: Verifier, headers: dict[str, str], body: object
) -> None:
    with pytest.raises(InvalidPayload, match="body must be bytes"):
        verifier.verify(body, headers)  # type: ignore[arg-type]


# --- timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300, 300, 0, -1, 1])
def test_timestamp_inside_default_tolerance_passes(
    clock: FakeClock, verifier: Verifier, headers: dict[str, str], offset: int
) -> None:
    clock.now = NOW + offset
    assert verifier.verify(BODY, headers) == EVENT


@pytest.mark.parametrize(("offset", "reason"), [(301, "too old"), (-301, "future")])
def test_timestamp_outside_default_tolerance_fails_both_ways(
    clock: FakeClock, verifier: Verifier, headers: dict[str, str], offset: int, reason: str
) -> None:
    clock.now = NOW + offset
    with pytest.raises(TimestampOutOfTolerance, match=reason):
        verifier.verify(BODY, headers)


@pytest.mark.parametrize("tolerance", [30, 30.0, timedelta(seconds=30)])
def test_tolerance_is_configurable(
    clock: FakeClock, headers: dict[str, str], tolerance: float | timedelta
) -> None:
    verifier = Verifier(SECRET, clock=clock, tolerance=tolerance)
    assert verifier.tolerance == 30.0
    clock.now = NOW + 30
    assert verifier.verify(BODY, headers) == EVENT
    clock.now = NOW + 31
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(BODY, headers)
    clock.now = NOW - 31
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(BODY, headers)


def test_default_tolerance_is_five_minutes() -> None:
    assert Verifier(SECRET).tolerance == 300.0


@pytest.mark.parametrize("tolerance", [-1, float("nan"), float("inf")])
def test_bad_tolerance_is_refused(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        Verifier(SECRET, tolerance=tolerance)


def test_default_clock_is_wall_time(make_headers: MakeHeaders) -> None:
    import time

    verifier = Verifier(SECRET)
    assert verifier.verify(BODY, make_headers(timestamp=int(time.time()))) == EVENT
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(BODY, make_headers(timestamp=int(time.time()) - 3600))


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "1.5",
        "1e9",
        "-1700000000",
        "+1700000000",
        " 1700000000",
        "1700000000 ",
        "1_700_000_000",
        "0" + str(NOW),
        # Arabic-Indic digits: str.isdigit() says yes, the spec says no.
        "\u0661\u0667" + "\u0660" * 8,
        "9" * 13,
        "9" * 5000,
        "NaN",
    ],
)
def test_malformed_timestamp(verifier: Verifier, headers: dict[str, str], timestamp: str) -> None:
    headers["webhook-timestamp"] = timestamp
    with pytest.raises(MalformedHeaders, match="integer seconds"):
        verifier.verify(BODY, headers)


def test_huge_but_wellformed_timestamp_is_out_of_tolerance(
    verifier: Verifier, headers: dict[str, str]
) -> None:
    headers["webhook-timestamp"] = "9" * 12
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(BODY, headers)


def test_timestamp_zero_is_out_of_tolerance(verifier: Verifier, headers: dict[str, str]) -> None:
    headers["webhook-timestamp"] = "0"
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(BODY, headers)


# --- signatures ---------------------------------------------------------------------


def test_tampered_body_fails(verifier: Verifier, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidSignature):
        verifier.verify(BODY.replace(b"1200", b"9999"), headers)


def test_signature_covers_the_id(verifier: Verifier, headers: dict[str, str]) -> None:
    headers["webhook-id"] = "msg_2"
    with pytest.raises(InvalidSignature):
        verifier.verify(BODY, headers)


def test_signature_covers_the_timestamp(
    clock: FakeClock, verifier: Verifier, headers: dict[str, str]
) -> None:
    headers["webhook-timestamp"] = str(NOW + 1)
    with pytest.raises(InvalidSignature):
        verifier.verify(BODY, headers)


def test_wrong_secret_fails(clock: FakeClock, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidSignature):
        Verifier(OTHER_SECRET, clock=clock).verify(BODY, headers)


@pytest.mark.parametrize(
    "signature",
    [
        "v1",
        "v1,",
        ",",
        "v1,a,b",
        "v1,!!!not-base64!!!",
        "v1,Zm9v",
        "v2,{sig}",
        "V1,{sig}",
        "v1a,{sig}",
        "v1;{sig}",
        "{sig}",
        "v1, {sig}",
        "v1,{sig}=",
        "v1,{sig_unpadded}",
        "v1,{sig},extra",
        "v1,é",
        "v1,{sig}\t",
        "   ",
        "v1a,a,b v1a,!!! v1a,Zm9v",
    ],
)
def test_malformed_or_wrong_signatures_are_invalid_signature(
    verifier: Verifier, headers: dict[str, str], signature: str
) -> None:
    good = headers["webhook-signature"][3:]
    headers["webhook-signature"] = signature.format(sig=good, sig_unpadded=good.rstrip("="))
    with pytest.raises(InvalidSignature):
        verifier.verify(BODY, headers)


def test_any_of_several_signatures_passes(verifier: Verifier, headers: dict[str, str]) -> None:
    good = headers["webhook-signature"]
    other = sign(OTHER_SECRET, msg_id="msg_1", timestamp=NOW, body=BODY)
    for value in (
        f"{other} {good}",
        f"{good} {other}",
        f"v1,garbage v1a,Zm9v v2,x {good}",
        f"v1 v1,a,b  {good}",
    ):
        headers["webhook-signature"] = value
        assert verifier.verify(BODY, headers) == EVENT


def test_too_many_signatures_is_refused(verifier: Verifier, headers: dict[str, str]) -> None:
    good = headers["webhook-signature"]
    headers["webhook-signature"] = " ".join(["v1,x"] * MAX_SIGNATURES + [good])
    with pytest.raises(InvalidSignature, match="more than"):
        verifier.verify(BODY, headers)
    headers["webhook-signature"] = " ".join(["v1,x"] * (MAX_SIGNATURES - 1) + [good])
    assert verifier.verify(BODY, headers) == EVENT


def test_rotation_accepts_either_secret(clock: FakeClock, make_headers: MakeHeaders) -> None:
    verifier = Verifier([OTHER_SECRET, SECRET], clock=clock)
    assert verifier.verify(BODY, make_headers(secret=SECRET)) == EVENT
    assert verifier.verify(BODY, make_headers(secret=OTHER_SECRET)) == EVENT
    third = "whsec_" + "dGhpcmQtc2VjcmV0LXVzZWQtbm93aGVyZS1lbHNl"
    with pytest.raises(InvalidSignature):
        verifier.verify(BODY, make_headers(secret=third))


def test_sign_with_several_secrets_gives_several_signatures() -> None:
    value = sign([SECRET, OTHER_SECRET], msg_id="msg_1", timestamp=NOW, body=BODY)
    first, second = value.split(" ")
    assert first == sign(SECRET, msg_id="msg_1", timestamp=NOW, body=BODY)
    assert second == sign(OTHER_SECRET, msg_id="msg_1", timestamp=NOW, body=BODY)


def test_non_ascii_webhook_id_is_signed_as_utf8(
    verifier: Verifier, make_headers: MakeHeaders
) -> None:
    assert verifier.verify(BODY, make_headers(msg_id="msg_zoë")) == EVENT


def test_unencodable_webhook_id_is_malformed(verifier: Verifier, headers: dict[str, str]) -> None:
    headers["webhook-id"] = "msg_\udc80"
    with pytest.raises(MalformedHeaders, match="webhook-id"):
        verifier.verify(BODY, headers)


# --- payloads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe\x00garbage", "UTF-8 JSON"),
        (b"not json", "UTF-8 JSON"),
        (b"", "UTF-8 JSON"),
        (b'{"a": 1', "UTF-8 JSON"),
        (b'{"a": NaN}', "UTF-8 JSON"),
        (b'{"a": Infinity}', "UTF-8 JSON"),
        (b'\xef\xbb\xbf{"a": 1}', "UTF-8 JSON"),
        ('{"a": 1}'.encode("utf-16"), "UTF-8 JSON"),
        (b'{"a": "\xed\xa0\x80"}', "UTF-8 JSON"),  # an encoded lone surrogate
        (b"[" * 100_000 + b"]" * 100_000, "UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"text"', "JSON object"),
        (b"null", "JSON object"),
        (b"42", "JSON object"),
    ],
)
def test_signed_but_unusable_body_is_invalid_payload(
    verifier: Verifier, make_headers: MakeHeaders, body: bytes, reason: str
) -> None:
    with pytest.raises(InvalidPayload, match=reason):
        verifier.verify(body, make_headers(body))


def test_unsigned_garbage_body_is_invalid_signature_not_payload(
    verifier: Verifier, headers: dict[str, str]
) -> None:
    # The signature is checked before the body is parsed: garbage from strangers costs one HMAC.
    with pytest.raises(InvalidSignature):
        verifier.verify(b"\xff\xfe", headers)


def test_body_with_whitespace_and_unicode_round_trips(
    verifier: Verifier, make_headers: MakeHeaders
) -> None:
    body = json.dumps({"note": "naïve ✓", "n": [1, 2.5, None, True]}, indent=2).encode()
    assert verifier.verify(body, make_headers(body)) == json.loads(body)


# --- headers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_missing_header_is_named(
    verifier: Verifier, headers: dict[str, str], name: str
) -> None:
    del headers[name]
    with pytest.raises(MissingHeaders, match=name):
        verifier.verify(BODY, headers)


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_empty_header_counts_as_missing(
    verifier: Verifier, headers: dict[str, str], name: str
) -> None:
    headers[name] = ""
    with pytest.raises(MissingHeaders, match=name):
        verifier.verify(BODY, headers)


def test_all_headers_missing_names_all(verifier: Verifier) -> None:
    with pytest.raises(MissingHeaders, match="webhook-id, webhook-timestamp, webhook-signature"):
        verifier.verify(BODY, {})


@pytest.mark.parametrize("value", [None, 1700000000, ["v1,x"], b"\xff\xfe"])
def test_non_text_header_value_is_malformed(
    verifier: Verifier, headers: dict[str, object], value: object
) -> None:
    headers["webhook-timestamp"] = value
    with pytest.raises(MalformedHeaders, match="webhook-timestamp"):
        verifier.verify(BODY, headers)


def test_bytes_header_values_are_decoded(verifier: Verifier, headers: dict[str, str]) -> None:
    as_bytes = {name: value.encode() for name, value in headers.items()}
    assert verifier.verify(BODY, as_bytes) == EVENT


@pytest.mark.parametrize(
    "headers_obj",
    [
        None,
        42,
        "webhook-id: x",
        b"webhook-id",
        [("webhook-id",)],
        [("a", "b", "c")],
        [1, 2, 3],
        object(),
    ],
)
def test_unreadable_header_containers_are_missing_headers(
    verifier: Verifier, headers_obj: object
) -> None:
    with pytest.raises(MissingHeaders):
        verifier.verify(BODY, headers_obj)  # type: ignore[arg-type]


class ExplodingMapping(dict[str, str]):
    def get(self, *args: object, **kwargs: object) -> str:
        raise RuntimeError("boom")

    def items(self) -> object:  # type: ignore[override]
        raise RuntimeError("boom")


def test_container_raising_its_own_errors_maps_to_missing_headers(verifier: Verifier) -> None:
    with pytest.raises(MissingHeaders) as caught:
        verifier.verify(BODY, ExplodingMapping())
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_only_verification_errors_are_raised_by_the_error_tree() -> None:
    # Every error class a caller might catch is a VerificationError with a code and status.
    import hookgate_verifier.errors as errors

    classes = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, VerificationError) for cls in classes)
    codes = {cls.code for cls in classes}
    assert len(codes) == len(classes)
    assert all(cls.status in {400, 401, 500, 503} for cls in classes)
