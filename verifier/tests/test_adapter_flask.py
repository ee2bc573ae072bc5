"""The Flask decorator through Flask's test client."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hookgate_verifier import MemorySeenStore, Verifier
from hookgate_verifier.adapters.flask import verified

from .conftest import BODY, EVENT, SECRET, FakeClock

Received = list[tuple[dict[str, Any], dict[str, Any]]]


@pytest.fixture
def received() -> Received:
    return []


@pytest.fixture
def client(clock: FakeClock, received: Received) -> FlaskClient:
    verifier = Verifier(SECRET, clock=clock, seen=MemorySeenStore())
    app = Flask(__name__)

    @app.post("/hook/<tenant>")
    @verified(verifier)
    def webhook(event: dict[str, Any], **params: Any) -> dict[str, bool]:
        received.append((event, params))
        return {"ok": True}

    @app.post("/failing")
    @verified(verifier)
    def failing(event: dict[str, Any]) -> dict[str, bool]:
        received.append((event, {}))
        raise RuntimeError("handler bug")

    @app.post("/busy")
    @verified(verifier)
    def busy(event: dict[str, Any]) -> tuple[dict[str, bool], int]:
        received.append((event, {}))
        return {"busy": True}, 409

    @app.post("/flaky")
    @verified(verifier)
    def flaky(event: dict[str, Any]) -> dict[str, bool]:
        received.append((event, {}))
        if len(received) == 1:
            raise RuntimeError("first attempt fails")
        return {"ok": True}

    return app.test_client()


def test_valid_webhook_reaches_the_view(
    client: FlaskClient, received: Received, headers: dict[str, str]
) -> None:
    response = client.post("/hook/acme", data=BODY, headers=headers)
    assert (response.status_code, response.get_json()) == (200, {"ok": True})
    assert received == [(EVENT, {"tenant": "acme"})]


def test_bad_signature_is_401(
    client: FlaskClient, received: Received, headers: dict[str, str]
) -> None:
    response = client.post("/hook/acme", data=BODY + b" ", headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {
        "error": {"code": "invalid_signature", "message": "no matching signature"}
    }
    assert received == []


def test_missing_headers_is_400(client: FlaskClient) -> None:
    response = client.post("/hook/acme", data=BODY)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "missing_headers"


def test_non_utf8_signed_body_is_400(client: FlaskClient, make_headers: Any) -> None:
    body = b"\x80\x81"
    response = client.post("/hook/acme", data=body, headers=make_headers(body))
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_payload")


def test_resend_of_a_handled_id_is_200_without_the_view(
    client: FlaskClient, received: Received, headers: dict[str, str]
) -> None:
    assert client.post("/hook/acme", data=BODY, headers=headers).status_code == 200
    response = client.post("/hook/acme", data=BODY, headers=headers)
    assert (response.status_code, response.get_json()) == (200, {"duplicate": True})
    assert received == [(EVENT, {"tenant": "acme"})]


def test_forged_request_with_a_seen_id_is_still_refused(
    client: FlaskClient, received: Received, headers: dict[str, str]
) -> None:
    assert client.post("/hook/acme", data=BODY, headers=headers).status_code == 200
    response = client.post("/hook/acme", data=BODY + b" ", headers=headers)
    assert (response.status_code, response.get_json()["error"]["code"]) == (
        401,
        "invalid_signature",
    )
    assert len(received) == 1


def test_retry_after_a_failed_view_reaches_it(
    client: FlaskClient, received: Received, headers: dict[str, str]
) -> None:
    assert client.post("/flaky", data=BODY, headers=headers).status_code == 500
    assert client.post("/flaky", data=BODY, headers=headers).get_json() == {"ok": True}
    response = client.post("/flaky", data=BODY, headers=headers)
    assert (response.status_code, response.get_json()) == (200, {"duplicate": True})
    assert [event for event, _ in received] == [EVENT, EVENT]


@pytest.mark.parametrize(("path", "status"), [("/failing", 500), ("/busy", 409)])
def test_failed_view_lets_the_retry_through(
    client: FlaskClient, received: Received, headers: dict[str, str], path: str, status: int
) -> None:
    for _ in range(2):
        assert client.post(path, data=BODY, headers=headers).status_code == status
    assert [event for event, _ in received] == [EVENT, EVENT]
