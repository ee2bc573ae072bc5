"""Starlette and FastAPI integration.

Starlette endpoint:

    from hookgate_verifier.adapters.starlette import verified

    @verified(verifier)
    async def webhook(request: Request, event: dict[str, Any]) -> Response: ...

FastAPI dependency (a failure answers `{"detail": {"code": ..., "message": ...}}`, FastAPI's
own error shape, with status 400/401):

    from hookgate_verifier.adapters.starlette import WebhookEvent

    webhook_event = WebhookEvent(verifier)

    @app.post("/webhooks")
    async def webhook(event: Annotated[dict[str, Any], Depends(webhook_event)]) -> ...
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
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
    """A FastAPI dependency returning the verified event, or answering 400/401."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def __call__(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        try:
            return await self.verifier.verify_async(body, request.headers)
        except VerificationError as exc:
            detail = error_body(exc)["error"]
            raise HTTPException(status_code=exc.status, detail=detail) from None


async def _forget(verifier: Verifier, request: Request) -> None:
    msg_id = webhook_id_of(request.headers)
    if msg_id is not None:
        await verifier.forget_async(msg_id)
