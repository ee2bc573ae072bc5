"""The byte budget of large request bodies read and handled at once
(``HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT``).

A body over ``SMALL_BODY`` (256 KB: only a batch may be larger) reserves its bytes before they
are read: its Content-Length, or, sent chunked, what it has sent once past 256 KB and then each
chunk as it arrives. It keeps them until its request is over: parsed, checked, stored and
answered, or failed, cancelled or abandoned by its client (``release_bodies``, a middleware, so
no way out of a handler forgets them). A body the rest of the budget cannot cover is refused
with ``Busy`` (503 with Retry-After) before it is read, or, chunked, as soon as it outgrows the
rest.

Bodies of at most 256 KB (a single event, an endpoint, a portal form) are neither counted nor
refused, so batches can never starve them: each costs little, and counting them would let slow
senders of small bodies (unauthenticated sign-in forms of the portal among them) hold the budget
for as long as they take and lock every batch out.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.web.errors import Busy, Handler
from gateway.web.schemas import EVENT_BODY_LIMIT

log = structlog.get_logger("hookgate.api")

SMALL_BODY = EVENT_BODY_LIMIT  # the largest body that is never counted: one event's (256 KB)


class BodyBudget:
    """Bytes of large bodies in flight, at most ``limit``; one per process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def reserve(self, request: web.Request, size: int) -> None:
        """Counts ``size`` more bytes of ``request``'s body until the request is over; raises
        ``Busy`` (counting nothing) when the budget cannot cover them."""
        held = request.get(HELD)
        if self.in_use + size > self.limit:
            log.info(
                "hookgate.api.body_budget_full",
                path=request.path,
                wanted=size + (0 if held is None else held.size),
                in_use=self.in_use,
                limit=self.limit,
            )
            raise Busy(
                "the gateway is reading as many large bodies as it may at once; retry shortly"
            )
        if held is None:
            held = request[HELD] = Held(self)
        held.size += size
        self.in_use += size


class Held:
    """What one request holds of the budget."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def release(self) -> None:
        self.budget.in_use -= self.size
        self.size = 0


HELD = web.RequestKey("body_bytes_held", Held)


def release(request: web.Request) -> None:
    """Gives back what ``request`` holds of the budget (a handler done with its body early)."""
    held = request.get(HELD)
    if held is not None:
        held.release()


@web.middleware
async def release_bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gives back a request's bytes once its handler is over, however it ended."""
    try:
        return await handler(request)
    finally:
        release(request)
