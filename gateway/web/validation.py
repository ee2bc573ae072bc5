"""Checks of API input beyond its shape, each failure a ``ValidationFailed`` naming the field.

The shape (types, patterns, lengths, unknown fields) is the schemas' (``schemas.py``), enforced
as a body is decoded (``bodies.py``). What a schema cannot say is checked here: the URL rules and
the address policy, known event types, the reserved ``hookgate.*`` family, how deeply event data
nests, an RFC 3339 timestamp with an offset, reserved header names. The functions that take
plain values also serve the portal's forms and query strings, and repeat the shape checks for
them.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from msgspec import UNSET

from gateway.core import formats, model
from gateway.core.catalog import EVENT_TYPE_RE, RESERVED_FAMILY, is_pattern
from gateway.core.clock import now_timestamp
from gateway.core.durations import parse_time
from gateway.core.errors import ValidationFailed
from gateway.core.limits import MAX_DEPTH, depth_over, text_may_nest_over
from gateway.core.scopes import ADMIN
from gateway.core.targets import TargetRules, check_literal_url_host
from gateway.web import bodies, schemas
from gateway.web.requests import LATEST_MS
from gateway.web.schemas import (
    MAX_CUSTOM_HEADERS,
    MAX_EVENT_TYPES,
    MAX_HEADER_VALUE,
    MAX_TIMESTAMP_LENGTH,
    MAX_TYPE_LENGTH,
    MAX_URL_LENGTH,
    RESERVED_HEADER_PREFIX,
    RESERVED_HEADERS,
)

BUSINESS_ID_RE = re.compile(formats.BUSINESS_ID)
IDEMPOTENCY_KEY_RE = re.compile(formats.IDEMPOTENCY_KEY)
HEADER_NAME_RE = re.compile(formats.HEADER_NAME)
DATE_TIME_RE = re.compile(formats.DATE_TIME)
_RESERVED_PREFIX = RESERVED_FAMILY + "."


def business_id(value: Any, field: str = "business_id") -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if not BUSINESS_ID_RE.match(value):
        raise ValidationFailed(field, "must be " + schemas.WORDS[formats.BUSINESS_ID])
    return value


def event_type_name(value: Any, field: str = "type") -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if len(value) > MAX_TYPE_LENGTH or not EVENT_TYPE_RE.match(value):
        raise ValidationFailed(field, "must be " + schemas.WORDS[formats.EVENT_TYPE])
    return value


def own_event_type(value: str, field: str = "type") -> str:
    """A type the billing core may send or register: not of hookgate's own family."""
    if value.startswith(_RESERVED_PREFIX):
        raise ValidationFailed(
            field, f"the {RESERVED_FAMILY}.* family is reserved", code="reserved"
        )
    return value


def timestamp(value: Any, field: str = "timestamp") -> str:
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        raise ValidationFailed(field, "must be an RFC 3339 date-time string")
    if not DATE_TIME_RE.match(value):
        if DATE_TIME_RE.match(value + "Z"):
            raise ValidationFailed(field, "must be an RFC 3339 date-time with a UTC offset")
        raise ValidationFailed(field, "must be an RFC 3339 date-time, e.g. 2026-11-20T13:10:00Z")
    try:
        datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise ValidationFailed(field, f"is not a date-time that exists ({exc})") from None
    return value


def event_of(event: schemas.EventIn, prefix: str = "", raw: bytes | None = None) -> model.EventIn:
    """A decoded event checked beyond its shape: not of the reserved family, data that nests
    at most ``MAX_DEPTH`` levels, a timestamp that is RFC 3339 with an offset (now when it is
    absent or null). ``raw``, the JSON the event was decoded from, spares most events the walk
    over their data (``text_may_nest_over``)."""
    own_event_type(event.type, prefix + "type")
    if (raw is None or text_may_nest_over(raw)) and depth_over(event.data):
        raise ValidationFailed(
            prefix + "data", f"must nest objects and arrays at most {MAX_DEPTH} levels deep"
        )
    stamp = event.timestamp
    if stamp is UNSET or stamp is None:
        stamp = now_timestamp()
    else:
        timestamp(stamp, prefix + "timestamp")
    return model.EventIn(
        business_id=event.business_id, type=event.type, timestamp=stamp, data=event.data
    )


def event_in(obj: Any, prefix: str = "") -> model.EventIn:
    """An event as the billing core posts it, from parsed JSON: ``{"business_id", "type",
    "data", "timestamp"?}``."""
    return event_of(bodies.convert(obj, schemas.EventIn, prefix), prefix)


def idempotency_key(value: Any, field: str = "Idempotency-Key") -> str:
    if not isinstance(value, str) or not IDEMPOTENCY_KEY_RE.match(value):
        raise ValidationFailed(field, "must be " + schemas.WORDS[formats.IDEMPOTENCY_KEY])
    return value


def url(value: Any, rules: TargetRules, field: str = "url") -> str:
    """An absolute http(s) URL the rules accept: ``http`` only without ``https_only``; an
    IP-literal or localhost host that is not public only with ``allow_private`` or inside
    ``allowed_networks``. (Host names are checked again at every connection, after DNS.)"""
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise ValidationFailed(field, f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValidationFailed(field, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValidationFailed(field, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed(field, "must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValidationFailed(field, "must not carry credentials")
    if parts.fragment:
        raise ValidationFailed(field, "must not have a #fragment")
    if rules.https_only and parts.scheme != "https":
        raise ValidationFailed(field, "must use https", code="insecure_url")
    if not rules.allow_private:
        reason = check_literal_url_host(host, rules.allowed_networks)
        if reason is not None:
            raise ValidationFailed(field, f"points at a {reason} address", code="private_url")
    return value


def event_types(value: Any, known: frozenset[str], field: str = "event_types") -> tuple[str, ...]:
    """Exact known type names or ``family.*`` patterns; an empty list is refused (omit it)."""
    if not isinstance(value, list) or not value:
        raise ValidationFailed(field, "must be a non-empty list (omit it to receive every type)")
    if len(value) > MAX_EVENT_TYPES:
        raise ValidationFailed(field, f"must have at most {MAX_EVENT_TYPES} entries")
    out: list[str] = []
    for i, item in enumerate(value):
        name = f"{field}[{i}]"
        if not isinstance(item, str):
            raise ValidationFailed(name, "must be a string")
        if is_pattern(item):
            pass
        elif EVENT_TYPE_RE.match(item):
            if item not in known:
                raise ValidationFailed(
                    name, f"unknown event type {item!r}", code="unknown_event_type"
                )
        else:
            raise ValidationFailed(name, "must be " + schemas.WORDS[formats.SUBSCRIPTION])
        if item not in out:
            out.append(item)
    return tuple(out)


def custom_headers(value: Any, field: str = "headers") -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationFailed(field, "must be an object of header names to string values")
    if len(value) > MAX_CUSTOM_HEADERS:
        raise ValidationFailed(field, f"must have at most {MAX_CUSTOM_HEADERS} headers")
    out: dict[str, str] = {}
    for key, val in value.items():
        name = f"{field}.{key}"
        if not HEADER_NAME_RE.match(key):
            raise ValidationFailed(name, "is not a valid header name")
        lowered = key.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_HEADER_PREFIX):
            raise ValidationFailed(name, "is set by hookgate and cannot be overridden")
        if not isinstance(val, str) or len(val) > MAX_HEADER_VALUE:
            raise ValidationFailed(
                name, f"must be a string of at most {MAX_HEADER_VALUE} characters"
            )
        if any(c in val for c in "\r\n\x00"):
            raise ValidationFailed(name, "must not contain line breaks")
        out[key] = val
    return out


def endpoint_of(
    body: schemas.EndpointIn | schemas.EndpointPatch,
    *,
    known_types: frozenset[str],
    rules: TargetRules,
) -> model.EndpointFields:
    """The fields of a decoded ``POST /v1/endpoints`` or PATCH, checked beyond their shape."""
    values: dict[str, Any] = {}
    if isinstance(body, schemas.EndpointIn):
        values["business_id"] = body.business_id
    if body.url is not UNSET:
        values["url"] = url(body.url, rules)
    if body.event_types is None:
        if isinstance(body, schemas.EndpointPatch):
            values["event_types"] = ()  # an explicit null: every type
    elif body.event_types is not UNSET:
        values["event_types"] = event_types(body.event_types, known_types)
    if body.description is not None:
        values["description"] = body.description
    if body.headers is not None:
        values["headers"] = custom_headers(body.headers)
    if body.max_in_flight is not None:
        values["max_in_flight"] = int(body.max_in_flight)  # a multiple of 1 (schemas.InFlight)
    return model.EndpointFields(**values)


def endpoint_fields(
    obj: Any, *, known_types: frozenset[str], rules: TargetRules, partial: bool
) -> model.EndpointFields:
    """The fields of ``POST /v1/endpoints`` (``partial=False``) or a PATCH (``partial=True``),
    from parsed JSON (the portal's form)."""
    body: schemas.EndpointIn | schemas.EndpointPatch
    if partial:
        body = bodies.convert(obj, schemas.EndpointPatch)
    else:
        body = bodies.convert(obj, schemas.EndpointIn)
    return endpoint_of(body, known_types=known_types, rules=rules)


def api_key_of(body: schemas.ApiKeyIn) -> tuple[frozenset[str], int | None]:
    """The scopes and the expiry (ms, None: never) of a new API key, checked beyond their
    shape: ``admin`` is never bound to a business, and an expiry is an RFC 3339 time with an
    offset, in the future."""
    scopes = frozenset(body.scopes)
    if ADMIN in scopes and body.business_id is not None:
        raise ValidationFailed(
            "scopes",
            "admin cannot be bound to a business: leave out business_id, or name narrower scopes",
        )
    if body.expires_at is None:
        return scopes, None
    timestamp(body.expires_at, "expires_at")
    now = time.time()
    expires = parse_time(body.expires_at.upper(), now)
    if expires <= now:
        raise ValidationFailed("expires_at", "is not in the future")
    return scopes, int(min(expires * 1000, LATEST_MS))  # a time past 9999 means the same
