"""The aiohttp adapter against a real aiohttp server on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hookgate_verifier import MemorySeenStore, Verifier
from hookgate_verifier.adapters.aiohttp import EVENT_KEY, verification_middleware, verified

from .conftest import BODY, EVENT, NOW, SECRET, FakeClock

Received = list[dict[str, Any]]


def build_app(verifier: Verifier, received: Received) -> web.Application:
    @verified(verifier)
    async def decorated(request: web.Request, event: dict[str, Any]) -> web.Response:
        received.append(event)
        return web.json_response({"ok": True})

    @verified(verifier)
    async def failing(request: web.Request, event: dict[str, Any]) -> web.Response:
        received.append(event)
        raise RuntimeError("handler bug")

    @verified(verifier)
    async def answering_409(request: web.Request, event: dict[str, Any]) -> web.Response:
        received.append(event)
        return web.json_response({"busy": True}, status=409)

    @verified(verifier)
    async def flaky(request: web.Request, event: dict[str, Any]) -> web.Response:
        received.append(event)
        if len(received) == 1:
            raise RuntimeError("first attempt fails")
        return web.json_response({"ok": True})

    async def via_middleware(request: web.Request) -> web.Response:
        received.append(request[EVENT_KEY])
        return web.json_response({"ok": True})

    async def unguarded(request: web.Request) -> web.Response:
        return web.Response(text="open")

    app = web.Application(middlewares=[verification_middleware(verifier, paths={"/mw"})])
    app.router.add_post("/decorated", decorated)
    app.router.add_post("/failing", failing)
    app.router.add_post("/busy", answering_409)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/mw", via_middleware)
    app.router.add_post("/open", unguarded)
    return app


@pytest.fixture
def received() -> Received:
    return []


@pytest.fixture
async def base_url(clock: FakeClock, received: Received) -> AsyncIterator[str]:
    verifier = Verifier(SECRET, clock=clock, seen=MemorySeenStore())
    server = TestServer(build_app(verifier, received), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url(""))
    finally:
        await server.close()


async def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize("path", ["/decorated", "/mw"])
async def test_valid_webhook_reaches_the_handler(
    base_url: str, received: Received, headers: dict[str, str], path: str
) -> None:
    status, payload = await post(base_url + path, BODY, headers)
    assert (status, payload) == (200, {"ok": True})
    assert received == [EVENT]


@pytest.mark.parametrize("path", ["/decorated", "/mw"])
async def test_bad_signature_is_401_with_reason(
    base_url: str, received: Received, headers: dict[str, str], path: str
) -> None:
    status, payload = await post(base_url + path, BODY + b" ", headers)
    assert status == 401
    assert payload == {"error": {"code": "invalid_signature", "message": "no matching signature"}}
    assert received == []


@pytest.mark.parametrize("path", ["/decorated", "/mw"])
async def test_missing_headers_is_400_with_reason(
    base_url: str, received: Received, path: str
) -> None:
    status, payload = await post(base_url + path, BODY, {})
    assert status == 400
    assert payload["error"]["code"] == "missing_headers"
    assert "webhook-id" in payload["error"]["message"]
    assert received == []


async def test_stale_timestamp_is_401(
    base_url: str, received: Received, make_headers: Callable[..., dict[str, str]]
) -> None:
    status, payload = await post(base_url + "/decorated", BODY, make_headers(timestamp=NOW - 900))
    assert status == 401
    assert payload["error"]["code"] == "timestamp_out_of_tolerance"


async def test_garbage_signature_header_is_401_not_500(
    base_url: str, headers: dict[str, str]
) -> None:
    for garbage in ("v1", "v1,a,b", "v1,!!!", "v1a,%%%"):
        status, payload = await post(
            base_url + "/decorated", BODY, dict(headers, **{"webhook-signature": garbage})
        )
        assert status == 401, garbage
        assert payload["error"]["code"] == "invalid_signature"


async def test_signed_non_json_body_is_400(
    base_url: str, make_headers: Callable[..., dict[str, str]]
) -> None:
    body = b"\xff\xfenot json"
    status, payload = await post(base_url + "/decorated", body, make_headers(body))
    assert (status, payload["error"]["code"]) == (400, "invalid_payload")


@pytest.mark.parametrize("path", ["/decorated", "/mw"])
async def test_resend_of_a_handled_id_is_200_without_the_handler(
    base_url: str, received: Received, headers: dict[str, str], path: str
) -> None:
    assert await post(base_url + path, BODY, headers) == (200, {"ok": True})
    assert await post(base_url + path, BODY, headers) == (200, {"duplicate": True})
    assert received == [EVENT]


async def test_forged_request_with_a_seen_id_is_still_refused(
    base_url: str, received: Received, headers: dict[str, str]
) -> None:
    assert (await post(base_url + "/decorated", BODY, headers))[0] == 200
    status, payload = await post(base_url + "/decorated", BODY + b" ", headers)
    assert (status, payload["error"]["code"]) == (401, "invalid_signature")
    assert received == [EVENT]


async def test_retry_after_a_failed_handler_reaches_it(
    base_url: str, received: Received, headers: dict[str, str]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/flaky", data=BODY, headers=headers) as response,
    ):
        assert response.status == 500
    assert await post(base_url + "/flaky", BODY, headers) == (200, {"ok": True})
    assert await post(base_url + "/flaky", BODY, headers) == (200, {"duplicate": True})
    assert received == [EVENT, EVENT]


@pytest.mark.parametrize("path", ["/failing", "/busy"])
async def test_failed_handler_lets_the_retry_through(
    base_url: str, received: Received, headers: dict[str, str], path: str
) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(2):
            async with session.post(base_url + path, data=BODY, headers=headers) as response:
                assert response.status in (500, 409)
    assert received == [EVENT, EVENT]


async def test_middleware_leaves_other_paths_alone(base_url: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(base_url + "/open", data=b"anything") as response,
    ):
        assert response.status == 200
        assert await response.text() == "open"
