"""Header lookup across the containers frameworks hand over, always case-insensitive."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, MultiDict
from starlette.datastructures import Headers as StarletteHeaders
from werkzeug.datastructures import EnvironHeaders
from werkzeug.datastructures import Headers as WerkzeugHeaders

from hookgate_verifier import MissingHeaders, Verifier
from hookgate_verifier.headers import read_webhook_headers

from .conftest import BODY, EVENT

WANTED = ("msg_1", "1700000000", "v1,abc=")


@pytest.mark.parametrize(
    "container",
    [
        {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,abc="},
        {"Webhook-Id": "msg_1", "Webhook-Timestamp": "1700000000", "Webhook-Signature": "v1,abc="},
        {"WEBHOOK-ID": "msg_1", "webhook-TIMESTAMP": "1700000000", "Webhook-signature": "v1,abc="},
        CIMultiDict(
            [("Webhook-Id", "msg_1"), ("WEBHOOK-TIMESTAMP", "1700000000")],
            **{"webhook-signature": "v1,abc="},
        ),
        MultiDict(
            [
                ("Webhook-Id", "msg_1"),
                ("Webhook-Timestamp", "1700000000"),
                ("Webhook-Signature", "v1,abc="),
            ]
        ),
        {
            "REQUEST_METHOD": "POST",
            "HTTP_WEBHOOK_ID": "msg_1",
            "HTTP_WEBHOOK_TIMESTAMP": "1700000000",
            "HTTP_WEBHOOK_SIGNATURE": "v1,abc=",
            "wsgi.input": object(),
        },
        [
            (b"content-type", b"application/json"),
            (b"webhook-id", b"msg_1"),
            (b"webhook-timestamp", b"1700000000"),
            (b"webhook-signature", b"v1,abc="),
        ],
        [
            (b"Webhook-ID", b"msg_1"),
            (b"Webhook-Timestamp", b"1700000000"),
            (b"Webhook-Signature", b"v1,abc="),
        ],
        [
            ("Webhook-Id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ["webhook-signature", "v1,abc="],
        ],
        (
            (bytearray(b"webhook-id"), bytearray(b"msg_1")),
            (b"webhook-timestamp", memoryview(b"1700000000")),
            (b"webhook-signature", b"v1,abc="),
        ),
        StarletteHeaders(
            raw=[
                (b"webhook-id", b"msg_1"),
                (b"webhook-timestamp", b"1700000000"),
                (b"webhook-signature", b"v1,abc="),
            ]
        ),
        WerkzeugHeaders(
            [
                ("Webhook-Id", "msg_1"),
                ("Webhook-Timestamp", "1700000000"),
                ("Webhook-Signature", "v1,abc="),
            ]
        ),
        EnvironHeaders(
            {
                "HTTP_WEBHOOK_ID": "msg_1",
                "HTTP_WEBHOOK_TIMESTAMP": "1700000000",
                "HTTP_WEBHOOK_SIGNATURE": "v1,abc=",
            }
        ),
    ],
    ids=[
        "dict-lower",
        "dict-title",
        "dict-mixed",
        "CIMultiDict",
        "MultiDict",
        "wsgi-environ",
        "asgi-list",
        "asgi-list-mixed-case",
        "str-pairs",
        "bytes-like-pairs",
        "starlette-Headers",
        "werkzeug-Headers",
        "werkzeug-EnvironHeaders",
    ],
)
def test_headers_are_found_in_every_supported_shape(container: object) -> None:
    assert read_webhook_headers(container) == WANTED


def test_first_occurrence_wins_in_lists() -> None:
    headers = [
        (b"webhook-id", b"msg_1"),
        (b"webhook-id", b"msg_2"),
        (b"webhook-timestamp", b"1700000000"),
        (b"webhook-signature", b"v1,abc="),
    ]
    assert read_webhook_headers(headers)[0] == "msg_1"


def test_asgi_list_with_missing_header_names_it() -> None:
    with pytest.raises(MissingHeaders, match="webhook-signature"):
        read_webhook_headers([(b"webhook-id", b"m"), (b"webhook-timestamp", b"1")])


def test_non_string_keys_are_ignored() -> None:
    headers = {1: "x", None: "y", "webhook-id": "msg_1"}
    with pytest.raises(MissingHeaders, match="webhook-timestamp, webhook-signature"):
        read_webhook_headers(headers)


def test_environ_spelling_needs_the_http_prefix() -> None:
    with pytest.raises(MissingHeaders):
        read_webhook_headers(
            {"WEBHOOK_ID": "m", "WEBHOOK_TIMESTAMP": "1", "WEBHOOK_SIGNATURE": "v1,x"}
        )


def test_whole_verification_through_an_asgi_list(
    verifier: Verifier, headers: dict[str, str]
) -> None:
    asgi = [(name.title().encode(), value.encode()) for name, value in headers.items()]
    assert verifier.verify(BODY, asgi) == EVENT


def test_whole_verification_through_a_wsgi_environ(
    verifier: Verifier, headers: dict[str, str]
) -> None:
    environ = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}
    assert verifier.verify(BODY, environ) == EVENT
