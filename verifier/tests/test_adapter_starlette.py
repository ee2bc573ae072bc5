"""The Starlette decorator and the FastAPI dependency, through Starlette's TestClient."""

# No `from __future__ import annotations`: FastAPI must see the real Depends(...) object
# of a fixture-local dependency, which a string annotation could not name.

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hookgate_verifier import MemorySeenStore, Verifier
from hookgate_verifier.adapters.starlette import WebhookEvent, verified

from .conftest import BODY, EVENT, NOW, SECRET, FakeClock

Received = list[dict[str, Any]]


@pytest.fixture
def received() -> Received:
    return []


@pytest.fixture
def starlette_client(clock: FakeClock, received: Received) -> TestClient:
    verifier = Verifier(SECRET, clock=clock, seen=MemorySeenStore())

    @verified(verifier)
    async def webhook(request: Request, event: dict[str, Any]) -> Response:
        received.append(event)
        return JSONResponse({"ok": True})

    @verified(verifier)
    async def failing(request: Request, event: dict[str, Any]) -> Response:
        received.append(event)
        raise RuntimeError("handler bug")

    @verified(verifier)
    async def flaky(request: Request, event: dict[str, Any]) -> Response:
        received.append(event)
        if len(received) == 1:
            raise RuntimeError("first attempt fails")
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/hook", webhook, methods=["POST"]),
            Route("/failing", failing, methods=["POST"]),
            Route("/flaky", flaky, methods=["POST"]),
        ]
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def fastapi_client(clock: FakeClock, received: Received) -> TestClient:
    webhook_event = WebhookEvent(Verifier(SECRET, clock=clock))
    app = FastAPI()

    @app.post("/hook")
    async def webhook(event: Annotated[dict[str, Any], Depends(webhook_event)]) -> dict[str, bool]:
        received.append(event)
        return {"ok": True}

    return TestClient(app)


def test_starlette_valid_webhook(
    starlette_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    response = starlette_client.post("/hook", content=BODY, headers=headers)
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert received == [EVENT]


def test_starlette_bad_signature_is_401(
    starlette_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    response = starlette_client.post("/hook", content=BODY + b"x", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {"code": "invalid_signature", "message": "no matching signature"}
    }
    assert received == []


def test_starlette_missing_headers_is_400(starlette_client: TestClient) -> None:
    response = starlette_client.post("/hook", content=BODY)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_headers"


def test_starlette_malformed_timestamp_is_400(
    starlette_client: TestClient, headers: dict[str, str]
) -> None:
    headers["webhook-timestamp"] = "yesterday"
    response = starlette_client.post("/hook", content=BODY, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "malformed_headers")


def test_starlette_resend_of_a_handled_id_is_200_without_the_endpoint(
    starlette_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    assert starlette_client.post("/hook", content=BODY, headers=headers).status_code == 200
    response = starlette_client.post("/hook", content=BODY, headers=headers)
    assert (response.status_code, response.json()) == (200, {"duplicate": True})
    assert received == [EVENT]


def test_starlette_forged_request_with_a_seen_id_is_still_refused(
    starlette_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    assert starlette_client.post("/hook", content=BODY, headers=headers).status_code == 200
    response = starlette_client.post("/hook", content=BODY + b" ", headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_signature")
    assert received == [EVENT]


def test_starlette_retry_after_a_failed_endpoint_reaches_it(
    starlette_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    assert starlette_client.post("/flaky", content=BODY, headers=headers).status_code == 500
    response = starlette_client.post("/flaky", content=BODY, headers=headers)
    assert (response.status_code, response.json()) == (200, {"ok": True})
    response = starlette_client.post("/flaky", content=BODY, headers=headers)
    assert (response.status_code, response.json()) == (200, {"duplicate": True})
    assert received == [EVENT, EVENT]


def test_starlette_failed_handler_lets_the_retry_through(
    starlette_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    for _ in range(2):
        assert starlette_client.post("/failing", content=BODY, headers=headers).status_code == 500
    assert received == [EVENT, EVENT]


def test_fastapi_dependency_hands_over_the_event(
    fastapi_client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    response = fastapi_client.post("/hook", content=BODY, headers=headers)
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert received == [EVENT]


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (lambda h, b: (h, b + b" "), 401, "invalid_signature"),
        (lambda h, b: ({}, b), 400, "missing_headers"),
        (
            lambda h, b: (dict(h, **{"webhook-timestamp": str(NOW - 3600)}), b),
            401,
            "timestamp_out_of_tolerance",
        ),
    ],
)
def test_fastapi_dependency_failures(
    fastapi_client: TestClient,
    received: Received,
    headers: dict[str, str],
    change: Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]],
    status: int,
    code: str,
) -> None:
    sent_headers, body = change(headers, BODY)
    response = fastapi_client.post("/hook", content=body, headers=sent_headers)
    assert response.status_code == status
    assert response.json()["detail"]["code"] == code
    assert received == []
