"""Starlette and FastAPI integration.

Starlette endpoint:

    from hookgate_verifier.adapters.starlette import verified

    @verified(verifier)
    async def webhook(request: Request, event: dict[str, Any]) -> Response: ...

FastAPI dependency (a failure answers `{"detail": {"code": ..., "message": ...}}`, FastAPI's
own error shape, with status 400/401/503; a re-send of a handled id answers 200
`{"detail": {"duplicate": true}}` without calling the endpoint):

    from hookgate_verifier.adapters.starlette import WebhookEvent

    webhook_event = WebhookEvent(verifier)

    @app.post("/webhooks")
    async def webhook(event: Annotated[dict[str, Any], Depends(webhook_event)]) -> ...
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import Replayed, VerificationError
from ..verifier import Event, Verifier
from . import DUPLICATE_BODY, DUPLICATE_STATUS, error_body, handler_succeeded, webhook_id_of

__all__ = ["WebhookEvent", "verified"]

EventEndpoint = Callable[[Request, Event], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def verified(verifier: Verifier) -> Callable[[EventEndpoint], Endpoint]:
    """Decorate `endpoint(request, event)` into a Starlette endpoint that verifies first."""

    def decorate(endpoint: EventEndpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def verifying_endpoint(request: Request) -> Response:
            body = await request.body()
            try:
                event = await verifier.verify_async(body, request.headers)
            except Replayed:
                # Signed and fresh, and its id already handled: a re-send, not an attack.
                return JSONResponse(DUPLICATE_BODY, status_code=DUPLICATE_STATUS)
            except VerificationError as exc:
                return JSONResponse(error_body(exc), status_code=exc.status)
            try:
                response = await endpoint(request, event)
            except BaseException:
                await _forget(verifier, request)
                raise
            if not handler_succeeded(response.status_code):
                await _forget(verifier, request)
            return response

        return verifying_endpoint

    return decorate


class WebhookEvent:
    """A FastAPI dependency yielding the verified event, with the decorators' replay handling.

    A failed verification raises `HTTPException` with the error's status (400/401/503). A
    signed, fresh re-send of an id already handled raises `HTTPException(200)` with the
    detail `{"duplicate": true}`: FastAPI answers 2xx and the endpoint does not run again.
    The claimed id is released, so the sender's retry reaches the endpoint, when the
    endpoint (or a dependency after this one) raises anything but a 2xx `HTTPException`, or
    sets a non-2xx status on FastAPI's `Response` parameter. A `Response` object the
    endpoint returns is out of a dependency's sight: fail by raising instead.
    """

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def __call__(self, request: Request, response: Response) -> AsyncIterator[Event]:
        body = await request.body()
        try:
            event = await self.verifier.verify_async(body, request.headers)
        except Replayed:
            # Signed and fresh, and its id already handled: a re-send, not an attack. (FastAPI
            # renders any JSON detail; Starlette's annotation says text.)
            duplicate: Any = DUPLICATE_BODY
            raise HTTPException(status_code=DUPLICATE_STATUS, detail=duplicate) from None
        except VerificationError as exc:
            detail = error_body(exc)["error"]
            raise HTTPException(status_code=exc.status, detail=detail) from None
        try:
            yield event
        except HTTPException as exc:
            if not handler_succeeded(exc.status_code):
                await _forget(self.verifier, request)
            raise
        except BaseException:
            await _forget(self.verifier, request)
            raise
        # FastAPI's shared `Response` has no status until the endpoint sets one.
        if response.status_code and not handler_succeeded(response.status_code):
            await _forget(self.verifier, request)


async def _forget(verifier: Verifier, request: Request) -> None:
    msg_id = webhook_id_of(request.headers)
    if msg_id is not None:
        await verifier.forget_async(msg_id)
