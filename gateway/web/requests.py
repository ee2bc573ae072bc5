"""Reading requests, for the API and the portal alike: bounded bodies, JSON, ids in paths and
query strings, time windows."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from aiohttp import web

from gateway.core import codec
from gateway.core.durations import parse_time
from gateway.core.errors import NotFound, ValidationFailed
from gateway.web.context import SETTINGS
from gateway.web.errors import BadRequest, PayloadTooLarge, RequestTimeout

EVENT_BODY_LIMIT = 256 * 1024
BATCH_BODY_LIMIT = 16 * 1024 * 1024
BATCH_MAX_EVENTS = 1000
JSON_BODY_LIMIT = 64 * 1024  # endpoints, event types

ID_RES = {
    "evt": re.compile(r"^evt_[0-9A-Z]{26}$"),
    "ep": re.compile(r"^ep_[0-9A-Z]{26}$"),
    "dlv": re.compile(r"^dlv_[0-9A-Z]{26}[0-9a-f]{1,8}$"),
    "rpl": re.compile(r"^rpl_[0-9A-Z]{26}$"),
}

KIND_NAMES = {"evt": "event", "ep": "endpoint", "dlv": "delivery", "rpl": "replay"}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all, and
    refusing a client that takes longer than ``HOOKGATE_REQUEST_TIMEOUT`` to send it (a
    slow-body client would otherwise hold its connection and handler for as long as it
    likes)."""
    if request.content.is_eof():  # the whole body is already here (most small requests)
        return await _read_body(request, limit)
    seconds = request.app[SETTINGS].request_timeout
    try:
        async with asyncio.timeout(seconds):
            return await _read_body(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"the body did not arrive within {seconds:g} s") from None


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None:
        if request.content_length > limit:
            raise PayloadTooLarge(f"the body is over {limit // 1024} KB")
        return await request.read()  # a known length within the limit: one read
    data = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"the body is over {limit // 1024} KB")
    return bytes(data)


async def read_json(request: web.Request, limit: int) -> Any:
    raw = await read_body(request, limit)
    try:
        return codec.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("the body nests too deeply", code="invalid_json") from None


def path_id(request: web.Request, kind: str) -> str:
    value = request.match_info["id"]
    if not ID_RES[kind].match(value):
        raise NotFound(f"no {KIND_NAMES[kind]} {value!r}")
    return value


def _time_param(value: Any, field: str, now: float) -> int:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a duration like 2h or an RFC 3339 time")
    try:
        return int(parse_time(value, now) * 1000)
    except ValueError as exc:
        raise ValidationFailed(field, str(exc)) from None


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


def query_id(query: Any, name: str, kind: str) -> str | None:
    value = query.get(name)
    if value is not None and not ID_RES[kind].match(value):
        raise ValidationFailed(name, f"is not a {KIND_NAMES[kind]} id")
    return value  # type: ignore[no-any-return]
