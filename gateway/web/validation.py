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

from gateway.core import formats, headers, model
from gateway.core.catalog import EVENT_TYPE_RE, RESERVED_FAMILY, is_pattern
from gateway.core.clock import now_timestamp
from gateway.core.durations import parse_time
from gateway.core.errors import ValidationFailed
from gateway.core.limits import MAX_DEPTH, depth_over, text_may_nest_over
from gateway.core.scopes import ADMIN
from gateway.core.targets import (
    HostInvalid,
    TargetRules,
    check_host,
    client_host,
    normalise_host,
    spelling_problem,
)
from gateway.web import bodies, schemas
from gateway.web.requests import LATEST_MS
from gateway.web.schemas import (
    MAX_CUSTOM_HEADERS,
    MAX_EVENT_TYPES,
    MAX_HEADER_VALUE,
    MAX_TIMESTAMP_LENGTH,
    MAX_TYPE_LENGTH,
    MAX_URL_LENGTH,
)

BUSINESS_ID_RE = re.compile(formats.BUSINESS_ID)
IDEMPOTENCY_KEY_RE = re.compile(formats.IDEMPOTENCY_KEY)
ORDERING_KEY_RE = re.compile(formats.ORDERING_KEY)
LISTEN_SESSION_RE = re.compile(formats.LISTEN_SESSION)
HEADER_NAME_RE = re.compile(formats.HEADER_NAME)
HEADER_VALUE_RE = re.compile(formats.HEADER_VALUE)
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
        business_id=event.business_id,
        type=event.type,
        timestamp=stamp,
        data=event.data,
        ordering_key=None if event.ordering_key is UNSET else event.ordering_key,
    )


def event_in(obj: Any, prefix: str = "") -> model.EventIn:
    """An event as the billing core posts it, from parsed JSON: ``{"business_id", "type",
    "data", "timestamp"?}``."""
    return event_of(bodies.convert(obj, schemas.EventIn, prefix), prefix)


def ordering_key(value: Any, field: str = "ordering_key") -> str:
    """An ordering key from elsewhere than a JSON body (a path), which may hold what JSON
    decoding refuses: a lone surrogate, from bytes that were not UTF-8."""
    if not isinstance(value, str) or not ORDERING_KEY_RE.match(value):
        raise ValidationFailed(field, "must be " + schemas.WORDS[formats.ORDERING_KEY])
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValidationFailed(field, "must be UTF-8 text") from None
    return value


def listen_session_name(value: Any, field: str = "name") -> str:
    """A listen session's name, from the path."""
    if not isinstance(value, str) or not LISTEN_SESSION_RE.match(value):
        raise ValidationFailed(field, "must be " + schemas.WORDS[formats.LISTEN_SESSION])
    return value


def idempotency_key(value: Any, field: str = "Idempotency-Key") -> str:
    if not isinstance(value, str) or not IDEMPOTENCY_KEY_RE.match(value):
        raise ValidationFailed(field, "must be " + schemas.WORDS[formats.IDEMPOTENCY_KEY])
    return value


def url(value: Any, rules: TargetRules, field: str = "url") -> str:
    """An absolute http(s) URL the rules accept, returned as sent.

    ``http`` only without ``https_only``; a port from 1 to 65535; a host that normalises
    (``targets.normalise_host``: percent-escapes, UTS #46 / IDNA 2008, legacy IPv4 spellings)
    to the very host the worker's HTTP client reads in the same string; and, unless
    ``allow_private``, one whose normalised form is no blocked address or localhost name
    (``targets.check_host``, the worker's pre-flight check too). Host names are checked again
    at every connection, after DNS.

    The URL is stored as sent, not rewritten: merchants see what they typed, and the checks
    above make the host judged here, the host the worker's pre-flight judges and the host its
    client connects to one and the same.
    """
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if len(value) > MAX_URL_LENGTH:
        raise ValidationFailed(field, f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in value):
        raise ValidationFailed(field, "must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValidationFailed(field, "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationFailed(field, "must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValidationFailed(field, "must not carry credentials")
    if parts.fragment:
        raise ValidationFailed(field, "must not have a #fragment")
    if rules.https_only and parts.scheme != "https":
        raise ValidationFailed(field, "must use https", code="insecure_url")
    # The authority by hand: urlsplit drops text after "]" and accepts non-ASCII ports.
    if parts.netloc.startswith("["):
        host, bracket, port = parts.netloc.partition("]")
        host += bracket
        if port and not port.startswith(":"):
            raise ValidationFailed(field, "is not a valid URL")
        port = port[1:]
    else:
        host, _, port = parts.netloc.partition(":")
    if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValidationFailed(field, "must have a port from 1 to 65535")
    try:
        normal = normalise_host(host)
    except HostInvalid as exc:
        raise ValidationFailed(field, f"host {exc}") from None
    if not rules.allow_private:
        reason = check_host(normal, rules.allowed_networks)
        if reason is not None:
            how = "" if normal == host.lower() else f" (the host normalises to {normal})"
            raise ValidationFailed(field, f"points at a {reason} address{how}", code="private_url")
    problem = spelling_problem(host)
    if problem is not None:
        raise ValidationFailed(field, f"host {problem}")
    try:
        read = client_host(value)
    except HostInvalid as exc:
        raise ValidationFailed(field, f"host {exc}") from None
    if read != normal:
        raise ValidationFailed(field, "host is read differently by the HTTP client")
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
    """Custom request headers that the worker's HTTP client (aiohttp) sends exactly as given,
    each failure naming the header (``headers.<Name>``).

    Names are RFC 9110 tokens; a name that reaches receivers as a reserved one, or as a name
    given before it (``headers.normal``: letter case, ``_`` for ``-``), is refused. Values are
    RFC 9110 field values that aiohttp writes byte for byte and receivers read unchanged:
    printable ASCII, spaces and tabs only between visible characters (``header_value``).
    """
    if not isinstance(value, dict):
        raise ValidationFailed(field, "must be an object of header names to string values")
    if len(value) > MAX_CUSTOM_HEADERS:
        raise ValidationFailed(field, f"must have at most {MAX_CUSTOM_HEADERS} headers")
    out: dict[str, str] = {}
    seen: dict[str, str] = {}  # each name's normal form: the name it was given as
    for key, val in value.items():
        if not isinstance(key, str):
            raise ValidationFailed(field, "header names must be strings")
        name = _header_field(field, key)
        if not HEADER_NAME_RE.match(key):
            raise ValidationFailed(name, "must be " + schemas.WORDS[formats.HEADER_NAME])
        form = headers.normal(key)
        if headers.reserved(key):
            read_as = f" (receivers read it as {form})" if form != key.lower() else ""
            raise ValidationFailed(
                name, f"is set by hookgate or by HTTP itself and cannot be set here{read_as}"
            )
        if form in seen:
            raise ValidationFailed(
                name,
                f"is the same header as {seen[form]} (names are compared ignoring letter case, "
                "and _ as -): give it once",
                code="duplicate_header",
            )
        seen[form] = key
        out[key] = header_value(val, name)
    return out


def header_value(value: Any, field: str) -> str:
    """A header value aiohttp sends unchanged and receivers read as stored (``custom_headers``).
    The messages never quote the value: it may be a credential."""
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if len(value) > MAX_HEADER_VALUE:
        raise ValidationFailed(field, f"must be at most {MAX_HEADER_VALUE} characters")
    if HEADER_VALUE_RE.match(value):
        return value
    if headers.MASK in value:
        raise ValidationFailed(
            field,
            f'is the mask ("{headers.MASK}") shown in place of a stored value: send the real '
            "value (headers given in a PATCH replace every header)",
        )
    if any((c < " " and c != "\t") or c == "\x7f" for c in value):
        raise ValidationFailed(
            field,
            "must not contain control characters (line breaks, NUL, vertical tab, form feed, "
            "DEL, …): HTTP cannot send them",
        )
    if any(c > "\x7e" for c in value):
        raise ValidationFailed(
            field,
            "must be printable ASCII: the HTTP client sends other characters as UTF-8 bytes, "
            "which receivers read as other characters",
        )
    raise ValidationFailed(field, "must not start or end with a space or tab: receivers strip them")


def _header_field(field: str, name: str) -> str:
    """``headers.<Name>``, a name too long to be valid shortened."""
    limit = 128  # formats.HEADER_NAME's longest
    return f"{field}.{name if len(name) <= limit else name[:limit] + '…'}"


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
        values["signing"] = body.signing  # a PATCH refuses it (schemas.EndpointPatch.refused)
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
    if body.ordered is not UNSET:
        values["ordered"] = body.ordered
    if body.on_exhausted is not UNSET:
        values["on_exhausted"] = body.on_exhausted
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
