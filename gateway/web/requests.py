"""Reading requests, for the API and the portal alike: bounded bodies decoded into their
schemas, ids in paths and query strings, time windows."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from gateway.core import formats
from gateway.core.durations import DURATION_PATTERN, parse_time
from gateway.core.errors import NotFound, ValidationFailed
from gateway.web import bodies
from gateway.web.budget import SMALL_BODY
from gateway.web.context import BODY_BUDGET, SETTINGS
from gateway.web.errors import PayloadTooLarge, RequestTimeout

# The limits are the schemas' (the OpenAPI document states them); the readers here apply them.
from gateway.web.schemas import BATCH_BODY_LIMIT as BATCH_BODY_LIMIT
from gateway.web.schemas import EVENT_BODY_LIMIT as EVENT_BODY_LIMIT
from gateway.web.schemas import JSON_BODY_LIMIT as JSON_BODY_LIMIT

T = TypeVar("T")

ID_RES = {kind: re.compile(pattern) for kind, pattern in formats.IDS.items()}
DURATION_RE = re.compile(DURATION_PATTERN)
DATE_TIME_RE = re.compile(formats.DATE_TIME)
# The times a window can hold: 1970 to the end of 9999 (a time outside says the same as its end;
# clamped, it can be stored and shown).
LATEST_MS = 253_402_300_799_999

KIND_NAMES = {
    "evt": "event",
    "ep": "endpoint",
    "dlv": "delivery",
    "rpl": "replay",
    "key": "API key",
}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, read as ``read_buffer`` reads it."""
    return bytes(await read_buffer(request, limit))


async def read_buffer(request: web.Request, limit: int) -> bytearray:
    """The request body, refusing more than ``limit`` bytes without reading them all, and
    refusing a client that takes longer than ``HOOKGATE_REQUEST_TIMEOUT`` to send it (a
    slow-body client would otherwise hold its connection and handler for as long as it
    likes). A body over 256 KB is counted against the process's budget of large bodies until
    the request is over, and refused (``Busy``, 503) when the budget cannot cover it
    (``budget.py``).

    The body is written into one buffer as it arrives: joined once it is all there, a 16 MB
    body would be 16 MB of fresh memory copied in one go, holding the event loop for tens of
    milliseconds."""
    if request.content.is_eof():  # the whole body is already here (most small requests)
        return await _read(request, limit)
    seconds = request.app[SETTINGS].request_timeout
    try:
        async with asyncio.timeout(seconds):
            return await _read(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {seconds:g} s") from None


async def _read(request: web.Request, limit: int) -> bytearray:
    body = bytearray()
    length = request.content_length
    if length is not None:
        if length > limit:
            raise PayloadTooLarge(f"the body is over {limit // 1024} KB")
        if length > SMALL_BODY:
            request.app[BODY_BUDGET].reserve(request, length)  # before a byte is read
        async for chunk in request.content.iter_any():
            body += chunk
        return body
    counted = 0  # chunked: counted as it arrives, all of it once over 256 KB
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over {limit // 1024} KB")
        if len(body) > SMALL_BODY:
            request.app[BODY_BUDGET].reserve(request, len(body) - counted)
            counted = len(body)
    return body


async def read_struct(request: web.Request, limit: int, decoder: msgspec.json.Decoder[T]) -> T:
    """The body, at most ``limit`` bytes, decoded into the decoder's type (``bodies.decode``)."""
    return bodies.decode(await read_body(request, limit), decoder)


def unknown(kind: str, value: str) -> NotFound:
    """The 404 of an id that names nothing: the same answer the store gives for it (``no
    endpoint 'ep_…'``), and the one a business-scoped caller gets for another business's."""
    return NotFound(f"no {KIND_NAMES[kind]} {value!r}")


def path_id(request: web.Request, kind: str) -> str:
    value = request.match_info["id"]
    if not ID_RES[kind].match(value):
        raise unknown(kind, value)
    return value


def _time_param(value: Any, field: str, now: float) -> int:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a duration like 2h or an RFC 3339 time")
    duration = DURATION_RE.match(value) is not None
    if not duration and not DATE_TIME_RE.match(value):
        raise ValidationFailed(
            field,
            f"{value!r} is neither a duration like 30s, 15m, 2h, 5d nor an RFC 3339 time "
            "like 2026-11-20T13:10:00Z",
        )
    try:
        # upper(): fromisoformat takes RFC 3339's t and z as capitals only
        seconds = parse_time(value if duration else value.upper(), now)
    except ValueError as exc:
        raise ValidationFailed(field, str(exc)) from None
    return int(min(max(seconds * 1000, 0), LATEST_MS))  # 100000d ago is -inf: clamped first


def window(since: Any, until: Any, *, since_required: bool) -> tuple[int | None, int | None]:
    now = time.time()
    since_ms = None
    if since is not None:
        since_ms = _time_param(since, "since", now)
    elif since_required:
        raise ValidationFailed("since", "is required")
    until_ms = None if until is None else _time_param(until, "until", now)
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise ValidationFailed("until", "is before since")
    return since_ms, until_ms
