"""Ordered delivery: the two ordering headers, read strictly, and where a number falls."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict
from starlette.datastructures import Headers as StarletteHeaders
from werkzeug.datastructures import EnvironHeaders
from werkzeug.datastructures import Headers as WerkzeugHeaders

from hookgate_verifier import (
    MalformedHeaders,
    MissingHeaders,
    Ordering,
    SequenceCheck,
    VerificationError,
    Verifier,
    check_sequence,
    read_ordering,
)
from hookgate_verifier.ordering import KEY, MAX_KEY_LENGTH, SEQUENCE

from .conftest import BODY, EVENT

PROPERTY = settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def reference_encode(key: str) -> str:
    """The gateway's rule, written from its description: bytes 0x21-0x7E but % as is."""
    return "".join(
        chr(byte) if 0x21 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}"
        for byte in key.encode("utf-8")
    )


def ordering_headers(encoded_key: str, sequence: str) -> dict[str, str]:
    return {KEY: encoded_key, SEQUENCE: sequence}


# --- the encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "encoded"),
    [
        ("sub_9KQ2", "sub_9KQ2"),
        ("a b", "a%20b"),
        ("é", "%C3%A9"),
        ("100%", "100%25"),
        ("a+b", "a+b"),
        ("~!\"#$&'()*,-./:;<=>?@[\\]^_`{|}", "~!\"#$&'()*,-./:;<=>?@[\\]^_`{|}"),
        ("tab\there", "tab%09here"),
        ("del\x7f", "del%7F"),
        ("nbsp\u00a0", "nbsp%C2%A0"),
        ("😀", "%F0%9F%98%80"),
        ("%%", "%25%25"),
        ("%25", "%2525"),
    ],
)
def test_documented_and_edge_keys_decode(key: str, encoded: str) -> None:
    assert reference_encode(key) == encoded
    assert read_ordering(ordering_headers(encoded, "1")) == Ordering(key, 1)


@PROPERTY
@given(
    key=st.text(min_size=1, max_size=MAX_KEY_LENGTH),
    sequence=st.integers(min_value=1, max_value=10**19 - 1),
)
@example(key="x" * MAX_KEY_LENGTH, sequence=10**19 - 1)
@example(key="😀" * MAX_KEY_LENGTH, sequence=1)
@example(key="%" * MAX_KEY_LENGTH, sequence=1)
def test_every_valid_key_and_sequence_round_trip(key: str, sequence: int) -> None:
    headers = ordering_headers(reference_encode(key), str(sequence))
    assert read_ordering(headers) == Ordering(key, sequence)


# Escapes good and bad, and raw characters that must or must not be escaped.
ESCAPES = ["%", "%2", "%C3", "%A9", "%25", "%20", "%41", "%e9", "%F0%9F%98%80", "%FF", "%ED%A0%80"]
RAW = ["a", "Z", "~", " ", "\t", "é", "\x7f", "\x00"]
ENCODED_PIECES = st.sampled_from(ESCAPES) | st.sampled_from(RAW)
HEADER_TEXT = st.lists(ENCODED_PIECES | st.text(max_size=3), max_size=12).map("".join)


@PROPERTY
@given(text=HEADER_TEXT | st.text())
@example(text="%c3%a9")
@example(text="%41")
def test_only_the_gateway_spelling_of_a_key_is_accepted(text: str) -> None:
    """A header decodes only if it is exactly the encoding of what it decodes to."""
    try:
        ordering = read_ordering(ordering_headers(text, "1"))
    except MalformedHeaders as exc:
        refused = exc.message
    else:
        assert ordering is not None
        assert reference_encode(ordering.key) == text
        assert 1 <= len(ordering.key) <= MAX_KEY_LENGTH
        return
    assert refused.startswith(KEY)


@PROPERTY
@given(text=st.text(alphabet="0123456789+- .e", max_size=22) | st.text(max_size=22))
@example(text="\u0661")  # ARABIC-INDIC DIGIT ONE
@example(text="\u00b2")  # SUPERSCRIPT TWO
def test_only_canonical_positive_decimals_are_sequences(text: str) -> None:
    try:
        ordering = read_ordering(ordering_headers("k", text))
    except MalformedHeaders as exc:
        refused = exc.message
    else:
        assert ordering is not None
        assert str(ordering.sequence) == text
        assert 1 <= ordering.sequence < 10**19
        return
    assert refused.startswith(SEQUENCE)


# --- malformed headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("", "webhook-ordering-key is empty"),
        ("%", "bad percent-escape at offset 0: % must be followed by two uppercase hex"),
        ("ab%4", "bad percent-escape at offset 2: % must be followed"),
        ("%G0", "bad percent-escape at offset 0: % must be followed"),
        ("%c3%a9", "bad percent-escape at offset 0: % must be followed"),
        ("%C3%a9", "bad percent-escape at offset 3: % must be followed"),
        ("%%41", "bad percent-escape at offset 0: % must be followed"),
        ("%41", "bad percent-escape at offset 0: byte 0x41 is sent as is, not escaped"),
        ("x%7E", "bad percent-escape at offset 1: byte 0x7E is sent as is"),
        ("a b", "character outside 0x21-0x7E at offset 1: it must be percent-encoded"),
        ("é", "character outside 0x21-0x7E at offset 0"),
        ("ab\t", "character outside 0x21-0x7E at offset 2"),
        ("\x7f", "character outside 0x21-0x7E at offset 0"),
        ("%25\ud800", "character outside 0x21-0x7E at offset 3"),
        ("%FF", "does not decode to valid UTF-8"),
        ("%C3", "does not decode to valid UTF-8"),
        ("%C3(", "does not decode to valid UTF-8"),  # a lead byte, then "("
        ("%ED%A0%80", "does not decode to valid UTF-8"),  # an encoded surrogate
        ("%C0%AF", "does not decode to valid UTF-8"),  # an overlong "/"
        ("a" * (MAX_KEY_LENGTH + 1), "longer than 200 characters"),
        (reference_encode("é" * (MAX_KEY_LENGTH + 1)), "longer than 200 characters"),
        (reference_encode("😀" * (MAX_KEY_LENGTH + 1)), "longer than 200 characters"),
        ("%" * 100_000, "longer than 200 characters"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_malformed_keys_are_refused_precisely(encoded: str, reason: str) -> None:
    with pytest.raises(MalformedHeaders, match=r"^webhook-ordering-key ") as caught:
        read_ordering(ordering_headers(encoded, "1"))
    assert reason in caught.value.message
    assert caught.value.code == "malformed_headers"
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("sequence", "reason"),
    [
        ("", "webhook-sequence is empty"),
        ("0", "webhook-sequence must be at least 1"),
        ("00", "webhook-sequence must not have leading zeros"),
        ("01", "webhook-sequence must not have leading zeros"),
        ("+1", "digits 0-9 only, no sign"),
        ("-1", "digits 0-9 only, no sign"),
        (" 1", "digits 0-9 only"),
        ("1 ", "digits 0-9 only"),
        ("1.0", "digits 0-9 only"),
        ("1e3", "digits 0-9 only"),
        ("1_000", "digits 0-9 only"),
        ("0x10", "digits 0-9 only"),
        ("\u0661", "digits 0-9 only"),  # ARABIC-INDIC DIGIT ONE: int() would take it
        ("\u00b2", "digits 0-9 only"),  # SUPERSCRIPT TWO: str.isdigit() says yes
        ("1" * 20, "webhook-sequence is longer than 19 digits"),
        ("9" * 5000, "webhook-sequence is longer than 19 digits"),
    ],
    ids=repr,
)
def test_malformed_sequences_are_refused_precisely(sequence: str, reason: str) -> None:
    with pytest.raises(MalformedHeaders) as caught:
        read_ordering(ordering_headers("sub_9KQ2", sequence))
    assert reason in caught.value.message


def test_nineteen_digits_are_still_a_sequence() -> None:
    assert read_ordering(ordering_headers("k", "9" * 19)) == Ordering("k", 10**19 - 1)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({KEY: "sub_9KQ2"}, "webhook-ordering-key is present without webhook-sequence"),
        ({"Webhook-Ordering-Key": ""}, "webhook-ordering-key is present without webhook-seq"),
        ({SEQUENCE: "3"}, "webhook-sequence is present without webhook-ordering-key"),
        ([(b"webhook-sequence", b"3")], "webhook-sequence is present without webhook-ord"),
        ({"HTTP_WEBHOOK_ORDERING_KEY": "k"}, "webhook-ordering-key is present without"),
    ],
    ids=["key-only", "empty-key-only", "sequence-only", "sequence-only-asgi", "key-only-wsgi"],
)
def test_one_header_without_the_other_is_refused(headers: Any, reason: str) -> None:
    with pytest.raises(MalformedHeaders, match=reason):
        read_ordering(headers)


def test_header_values_must_be_utf8_text() -> None:
    with pytest.raises(MalformedHeaders, match="header webhook-sequence is not valid UTF-8"):
        read_ordering([(b"webhook-ordering-key", b"k"), (b"webhook-sequence", b"\xff")])
    not_text: Any = [("webhook-ordering-key", 7), ("webhook-sequence", "1")]
    with pytest.raises(MalformedHeaders, match="header webhook-ordering-key is not text"):
        read_ordering(not_text)


class Unreadable:
    def get(self, name: str) -> str:
        raise RuntimeError("boom")

    def items(self) -> list[tuple[str, str]]:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ("webhook-sequence: 1", "not a string"),
        (b"webhook-sequence: 1", "not a string"),
        (42, "cannot read headers from int"),
        (None, "cannot read headers from NoneType"),
        (Unreadable(), "cannot read headers from Unreadable"),
        ([("webhook-sequence", "1", "extra")], r"\(name, value\) pairs"),
        (["webhook-sequence"], r"\(name, value\) pairs"),
    ],
    ids=["str", "bytes", "int", "None", "raising-container", "triple", "bare-name"],
)
def test_what_is_not_a_header_container_is_refused(headers: Any, reason: str) -> None:
    with pytest.raises(MissingHeaders, match=reason):
        read_ordering(headers)


# --- the header containers the library accepts ---------------------------------------------

WANTED = Ordering("a b/é", 42)
ENCODED = "a%20b/%C3%A9"


@pytest.mark.parametrize(
    "container",
    [
        {"webhook-ordering-key": ENCODED, "webhook-sequence": "42"},
        {"Webhook-Ordering-Key": ENCODED, "Webhook-Sequence": "42"},
        {"WEBHOOK-ORDERING-KEY": ENCODED, "webhook-sequence": "42"},
        {"webhook-ordering-key": ENCODED.encode(), "webhook-sequence": b"42"},
        CIMultiDict([("Webhook-Ordering-Key", ENCODED), ("WEBHOOK-SEQUENCE", "42")]),
        MultiDict([("Webhook-Ordering-Key", ENCODED), ("Webhook-Sequence", "42")]),
        {
            "REQUEST_METHOD": "POST",
            "HTTP_WEBHOOK_ORDERING_KEY": ENCODED,
            "HTTP_WEBHOOK_SEQUENCE": "42",
            "wsgi.input": object(),
        },
        [
            (b"content-type", b"application/json"),
            (b"webhook-ordering-key", ENCODED.encode()),
            (b"webhook-sequence", b"42"),
        ],
        [(b"Webhook-Ordering-Key", ENCODED.encode()), (b"Webhook-Sequence", b"42")],
        [("Webhook-Ordering-Key", ENCODED), ["webhook-sequence", "42"]],
        (
            (bytearray(b"webhook-ordering-key"), bytearray(ENCODED.encode())),
            (b"webhook-sequence", memoryview(b"42")),
        ),
        StarletteHeaders(
            raw=[(b"webhook-ordering-key", ENCODED.encode()), (b"webhook-sequence", b"42")]
        ),
        WerkzeugHeaders([("Webhook-Ordering-Key", ENCODED), ("Webhook-Sequence", "42")]),
        EnvironHeaders({"HTTP_WEBHOOK_ORDERING_KEY": ENCODED, "HTTP_WEBHOOK_SEQUENCE": "42"}),
    ],
    ids=[
        "dict-lower",
        "dict-title",
        "dict-mixed",
        "dict-bytes-values",
        "CIMultiDict",
        "MultiDict",
        "wsgi-environ",
        "asgi-list",
        "asgi-list-title-case",
        "str-pairs",
        "bytes-like-pairs",
        "starlette-Headers",
        "werkzeug-Headers",
        "werkzeug-EnvironHeaders",
    ],
)
def test_both_headers_are_found_in_every_supported_shape(container: Any) -> None:
    assert read_ordering(container) == WANTED


@pytest.mark.parametrize(
    "container",
    [
        {},
        [],
        {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,x"},
        [(b"content-type", b"application/json")],
        {"REQUEST_METHOD": "POST", "HTTP_WEBHOOK_ID": "msg_1"},
        {"WEBHOOK_ORDERING_KEY": "k", "WEBHOOK_SEQUENCE": "1"},  # environ needs HTTP_
        {"webhook-ordering": "k", "webhook-sequence-number": "1"},
        CIMultiDict([("Webhook-Id", "msg_1")]),
        StarletteHeaders(raw=[(b"webhook-id", b"msg_1")]),
        {1: "x", None: "y"},
    ],
    ids=[
        "empty-dict",
        "empty-list",
        "webhook-headers-only",
        "asgi-other-headers",
        "wsgi-other-headers",
        "environ-without-http-prefix",
        "near-miss-names",
        "CIMultiDict",
        "starlette-Headers",
        "non-string-names",
    ],
)
def test_an_unordered_delivery_reads_as_none(container: Any) -> None:
    assert read_ordering(container) is None


def test_first_occurrence_wins() -> None:
    headers = [
        (b"webhook-ordering-key", b"first"),
        (b"Webhook-Ordering-Key", b"second"),
        (b"webhook-sequence", b"7"),
        (b"webhook-sequence", b"8"),
    ]
    assert read_ordering(headers) == Ordering("first", 7)
    multi = CIMultiDict([("webhook-sequence", "7"), ("webhook-ordering-key", "first")])
    multi.add("webhook-sequence", "8")
    assert read_ordering(multi) == Ordering("first", 7)


HEADER_NAMES = st.sampled_from(
    [KEY, SEQUENCE, "Webhook-Ordering-Key", "HTTP_WEBHOOK_SEQUENCE", "webhook-id"]
) | st.text(max_size=12)
HEADER_VALUES = st.one_of(
    st.text(max_size=30), st.binary(max_size=30), st.integers(), st.none(), HEADER_TEXT
)


@PROPERTY
@given(
    pairs=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    as_dict=st.booleans(),
)
def test_nothing_but_verification_errors_escape(pairs: list[Any], as_dict: bool) -> None:
    container: Any = dict(pairs) if as_dict else pairs
    try:
        ordering = read_ordering(container)
    except VerificationError:
        return
    assert ordering is None or isinstance(ordering, Ordering)


# --- with a verified webhook -----------------------------------------------------------------


def test_read_from_the_same_headers_a_verifier_accepted(
    verifier: Verifier, headers: dict[str, str]
) -> None:
    delivery = {**headers, "Webhook-Ordering-Key": "sub_9KQ2", "Webhook-Sequence": "3"}
    assert verifier.verify(BODY, delivery) == EVENT
    assert read_ordering(delivery) == Ordering("sub_9KQ2", 3)


def test_the_signature_does_not_cover_the_ordering_headers(
    verifier: Verifier, headers: dict[str, str]
) -> None:
    """Why the README says a replay store is what stops an altered re-send."""
    altered = {**headers, KEY: "someone_else", SEQUENCE: "999"}
    assert verifier.verify(BODY, altered) == EVENT


# --- check_sequence ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_acknowledged", "sequence", "expected"),
    [
        (None, 1, SequenceCheck.NEXT),
        (None, 2, SequenceCheck.GAP),
        (None, 10**30, SequenceCheck.GAP),
        (1, 2, SequenceCheck.NEXT),
        (41, 42, SequenceCheck.NEXT),
        (1, 1, SequenceCheck.REPEAT),
        (42, 42, SequenceCheck.REPEAT),
        (42, 1, SequenceCheck.REPEAT),
        (42, 41, SequenceCheck.REPEAT),
        (1, 3, SequenceCheck.GAP),
        (42, 44, SequenceCheck.GAP),
        (10**19 - 2, 10**19 - 1, SequenceCheck.NEXT),
    ],
)
def test_check_sequence(last_acknowledged: int | None, sequence: int, expected: str) -> None:
    assert check_sequence(last_acknowledged, sequence) is expected


def test_the_outcomes_are_plain_strings() -> None:
    assert [str(check) for check in SequenceCheck] == ["next", "repeat", "gap"]
    assert check_sequence(None, 1) == "next"
    assert check_sequence(3, 2) == "repeat"
    assert check_sequence(3, 5) == "gap"
    assert SequenceCheck("gap") is SequenceCheck.GAP


@PROPERTY
@given(
    last=st.none() | st.integers(min_value=1, max_value=10**20),
    sequence=st.integers(min_value=1, max_value=10**20),
)
def test_check_sequence_matches_its_definition(last: int | None, sequence: int) -> None:
    if sequence == (last or 0) + 1:
        expected = SequenceCheck.NEXT
    elif last is not None and sequence <= last:
        expected = SequenceCheck.REPEAT
    else:
        expected = SequenceCheck.GAP
    assert check_sequence(last, sequence) is expected


def test_a_receiver_sees_next_repeat_and_gap_in_one_stream() -> None:
    """Retries, a replay of an old event and a skipped range, as a receiver meets them."""
    acknowledged: dict[str, int] = {}
    seen = []
    for key, sequence in [("a", 1), ("a", 2), ("a", 2), ("b", 1), ("a", 1), ("a", 5), ("a", 6)]:
        outcome = check_sequence(acknowledged.get(key), sequence)
        seen.append(outcome.value)
        if outcome is not SequenceCheck.REPEAT:
            acknowledged[key] = sequence
    assert seen == ["next", "next", "repeat", "next", "repeat", "gap", "next"]
    assert acknowledged == {"a": 6, "b": 1}


@pytest.mark.parametrize(
    ("last_acknowledged", "sequence", "error", "message"),
    [
        (None, 0, ValueError, "sequence must be at least 1, not 0"),
        (None, -1, ValueError, "sequence must be at least 1, not -1"),
        (0, 1, ValueError, "last_acknowledged must be at least 1, not 0"),
        (-5, 1, ValueError, "last_acknowledged must be at least 1, not -5"),
        (None, True, TypeError, "sequence must be an int, not bool"),
        (None, False, TypeError, "sequence must be an int, not bool"),
        (True, 2, TypeError, "last_acknowledged must be an int, not bool"),
        (None, 1.0, TypeError, "sequence must be an int, not float"),
        (None, "1", TypeError, "sequence must be an int, not str"),
        (None, None, TypeError, "sequence must be an int, not NoneType"),
        ("3", 4, TypeError, "last_acknowledged must be an int, not str"),
        (3.0, 4, TypeError, "last_acknowledged must be an int, not float"),
    ],
)
def test_check_sequence_refuses_bad_arguments(
    last_acknowledged: Any, sequence: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        check_sequence(last_acknowledged, sequence)


# --- Ordering --------------------------------------------------------------------------------


def test_ordering_is_a_frozen_value() -> None:
    ordering = Ordering("sub_9KQ2", 3)
    assert ordering == Ordering("sub_9KQ2", 3)
    assert len({ordering, Ordering("sub_9KQ2", 3), Ordering("sub_9KQ2", 4)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        ordering.sequence = 4  # type: ignore[misc]
