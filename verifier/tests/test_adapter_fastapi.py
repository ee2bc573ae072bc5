"""The FastAPI dependency against a real FastAPI app: a re-sent `webhook-id` is a 2xx duplicate
that never reaches the endpoint, and an endpoint that fails lets the sender's retry through,
as with the other adapters."""

# No `from __future__ import annotations`: FastAPI must see the real Depends(...) object
# of a fixture-local dependency, which a string annotation could not name.

from collections.abc import Callable
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Response
from starlette.testclient import TestClient

from hookgate_verifier import MemorySeenStore, Verifier
from hookgate_verifier.adapters.starlette import WebhookEvent

from .conftest import BODY, EVENT, SECRET, FakeClock

Received = list[dict[str, Any]]
DUPLICATE = {"detail": {"duplicate": True}}


@pytest.fixture
def received() -> Received:
    return []


@pytest.fixture
def client(clock: FakeClock, received: Received) -> TestClient:
    webhook_event = WebhookEvent(Verifier(SECRET, clock=clock, seen=MemorySeenStore()))
    Verified = Annotated[dict[str, Any], Depends(webhook_event)]  # noqa: N806
    app = FastAPI()

    @app.post("/hook")
    async def hook(event: Verified) -> dict[str, bool]:
        received.append(event)
        return {"ok": True}

    @app.post("/raises")
    async def raises(event: Verified) -> dict[str, bool]:
        received.append(event)
        if len(received) == 1:
            raise RuntimeError("first attempt fails")
        return {"ok": True}

    @app.post("/http-error")
    async def http_error(event: Verified) -> dict[str, bool]:
        received.append(event)
        if len(received) == 1:
            raise HTTPException(status_code=503, detail="database unavailable")
        return {"ok": True}

    @app.post("/status")
    async def status(event: Verified, response: Response) -> dict[str, bool]:
        received.append(event)
        if len(received) == 1:
            response.status_code = 500
            return {"ok": False}
        return {"ok": True}

    @app.post("/accepted")
    async def accepted(event: Verified, response: Response) -> dict[str, bool]:
        received.append(event)
        response.status_code = 202
        return {"ok": True}

    return TestClient(app, raise_server_exceptions=False)


def test_a_resent_id_is_a_2xx_duplicate_without_the_endpoint(
    client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    first = client.post("/hook", content=BODY, headers=headers)
    assert (first.status_code, first.json()) == (200, {"ok": True})
    for _ in range(2):
        again = client.post("/hook", content=BODY, headers=headers)
        assert (again.status_code, again.json()) == (200, DUPLICATE)
    assert received == [EVENT]


def test_a_forged_request_with_a_seen_id_is_still_refused(
    client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    assert client.post("/hook", content=BODY, headers=headers).status_code == 200
    forged = client.post("/hook", content=BODY + b" ", headers=headers)
    assert forged.status_code == 401
    assert forged.json()["detail"]["code"] == "invalid_signature"
    assert received == [EVENT]


def test_a_fresh_id_after_a_handled_one_reaches_the_endpoint(
    client: TestClient, received: Received, make_headers: Callable[..., dict[str, str]]
) -> None:
    for msg_id in ("msg_1", "msg_2"):
        response = client.post("/hook", content=BODY, headers=make_headers(msg_id=msg_id))
        assert (response.status_code, response.json()) == (200, {"ok": True})
    assert received == [EVENT, EVENT]


@pytest.mark.parametrize(("path", "failed"), [("/raises", 500), ("/http-error", 503)])
def test_a_failed_endpoint_lets_the_retry_through(
    client: TestClient, received: Received, headers: dict[str, str], path: str, failed: int
) -> None:
    assert client.post(path, content=BODY, headers=headers).status_code == failed
    retry = client.post(path, content=BODY, headers=headers)
    assert (retry.status_code, retry.json()) == (200, {"ok": True})
    # handled now: the next copy is a duplicate again
    assert client.post(path, content=BODY, headers=headers).json() == DUPLICATE
    assert received == [EVENT, EVENT]


def test_a_non_2xx_status_set_on_the_response_lets_the_retry_through(
    client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    failed = client.post("/status", content=BODY, headers=headers)
    assert (failed.status_code, failed.json()) == (500, {"ok": False})
    retry = client.post("/status", content=BODY, headers=headers)
    assert (retry.status_code, retry.json()) == (200, {"ok": True})
    assert client.post("/status", content=BODY, headers=headers).json() == DUPLICATE
    assert received == [EVENT, EVENT]


def test_a_2xx_status_set_on_the_response_keeps_the_id(
    client: TestClient, received: Received, headers: dict[str, str]
) -> None:
    assert client.post("/accepted", content=BODY, headers=headers).status_code == 202
    again = client.post("/accepted", content=BODY, headers=headers)
    assert (again.status_code, again.json()) == (200, DUPLICATE)
    assert received == [EVENT]


def test_without_a_replay_store_every_copy_reaches_the_endpoint(
    clock: FakeClock, headers: dict[str, str]
) -> None:
    calls: Received = []
    webhook_event = WebhookEvent(Verifier(SECRET, clock=clock))
    app = FastAPI()

    @app.post("/hook")
    async def hook(event: Annotated[dict[str, Any], Depends(webhook_event)]) -> dict[str, bool]:
        calls.append(event)
        return {"ok": True}

    client = TestClient(app)
    for _ in range(2):
        assert client.post("/hook", content=BODY, headers=headers).json() == {"ok": True}
    assert calls == [EVENT, EVENT]
