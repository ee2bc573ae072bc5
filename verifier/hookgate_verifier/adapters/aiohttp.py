"""aiohttp integration: a handler decorator and a middleware.

    from hookgate_verifier.adapters.aiohttp import verified

    @verified(verifier)
    async def handle(request: web.Request, event: dict[str, Any]) -> web.Response: ...

or, for several routes, `verification_middleware(verifier, paths={"/webhooks"})` and read
`request[EVENT_KEY]` in the handler.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..errors import Replayed, VerificationError
from ..verifier import Event, Verifier
from . import DUPLICATE_BODY, DUPLICATE_STATUS, error_body, handler_succeeded, webhook_id_of

__all__ = ["EVENT_KEY", "EventHandler", "verification_middleware", "verified"]

try:
    EVENT_KEY = web.RequestKey("hookgate_verifier.event", dict[str, Any])
except AttributeError:  # aiohttp before typed request keys: a plain string key
    EVENT_KEY = "hookgate_verifier.event"  # type: ignore[assignment]
"""Where `verification_middleware` puts the parsed event: `request[EVENT_KEY]`."""

EventHandler = Callable[[web.Request, Event], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def verified(verifier: Verifier) -> Callable[[EventHandler], Handler]:
    """Decorate `handler(request, event)` into an aiohttp handler that verifies first."""

    def decorate(handler: EventHandler) -> Handler:
        @functools.wraps(handler)
        async def verifying_handler(request: web.Request) -> web.StreamResponse:
            outcome = await _verify(verifier, request)
            if isinstance(outcome, web.Response):
                return outcome
            return await _run(verifier, request, functools.partial(handler, request, outcome))

        return verifying_handler

    return decorate


def verification_middleware(verifier: Verifier, *, paths: Collection[str]) -> Middleware:
    """A middleware verifying requests to the exact `paths`; handlers read request[EVENT_KEY]."""
    watched = frozenset(paths)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in watched:
            return await handler(request)
        outcome = await _verify(verifier, request)
        if isinstance(outcome, web.Response):
            return outcome
        request[EVENT_KEY] = outcome
        return await _run(verifier, request, functools.partial(handler, request))

    return middleware


async def _verify(verifier: Verifier, request: web.Request) -> Event | web.Response:
    body = await request.read()
    try:
        return await verifier.verify_async(body, request.headers)
    except Replayed:
        # Signed and fresh, and its id already handled: a re-send, not an attack.
        return web.json_response(DUPLICATE_BODY, status=DUPLICATE_STATUS)
    except VerificationError as exc:
        return web.json_response(error_body(exc), status=exc.status)


async def _run(
    verifier: Verifier, request: web.Request, call: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # The id was claimed before the handler ran; if the handler fails, the sender retries
    # with the same id, and that retry must reach the handler again.
    try:
        response = await call()
    except web.HTTPException as exc:
        if not handler_succeeded(exc.status):
            await _forget(verifier, request)
        raise
    except BaseException:
        await _forget(verifier, request)
        raise
    if not handler_succeeded(response.status):
        await _forget(verifier, request)
    return response


async def _forget(verifier: Verifier, request: web.Request) -> None:
    msg_id = webhook_id_of(request.headers)
    if msg_id is not None:
        await verifier.forget_async(msg_id)
