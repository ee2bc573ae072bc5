"""Pure validation of API input: each failure is a ``ValidationFailed`` naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from gateway.core.catalog import EVENT_TYPE_RE, RESERVED_FAMILY, is_pattern
from gateway.core.clock import now_timestamp
from gateway.core.errors import ValidationFailed
from gateway.core.model import EndpointFields, EventIn
from gateway.core.targets import TargetRules, check_literal_url_host

BUSINESS_ID_RE = re.compile(r"^[A-Za-z0-9_\-:.]{1,128}$")
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}$")
# Headers hookgate sets itself or that would break the request if overridden.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "host",
        "connection",
        "user-agent",
        "upgrade",
        "expect",
        "te",
        "trailer",
        "proxy-authorization",
    }
)
MAX_CUSTOM_HEADERS = 20
MAX_EVENT_TYPES = 100
MAX_URL_LENGTH = 2048
MAX_IN_FLIGHT = 1000


def require_object(value: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationFailed(field, "must be a JSON object")
    return value


def reject_unknown(body: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise ValidationFailed(prefix + (key or '""'), "is not a known field")


def _string(obj: Mapping[str, Any], field: str, *, required: bool) -> str | None:
    if field not in obj or obj[field] is None:
        if required:
            raise ValidationFailed(field, "is required")
        return None
    value = obj[field]
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    return value


def business_id(value: Any, field: str = "business_id") -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if not BUSINESS_ID_RE.match(value):
        raise ValidationFailed(field, "must be 1-128 characters of A-Z a-z 0-9 _ - : .")
    return value


def event_type_name(value: Any, field: str = "type") -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string")
    if len(value) > 128 or not EVENT_TYPE_RE.match(value):
        raise ValidationFailed(
            field, "must be dot-delimited names of [a-zA-Z0-9_], e.g. payment.succeeded"
        )
    return value


def timestamp(value: Any, field: str = "timestamp") -> str:
    if not isinstance(value, str) or len(value) > 40:
        raise ValidationFailed(field, "must be an RFC 3339 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(field, "must be an RFC 3339 date-time string") from None
    if "T" not in value.upper() or parsed.tzinfo is None:
        raise ValidationFailed(field, "must be an RFC 3339 date-time with a UTC offset")
    return value


def event_in(obj: Any, prefix: str = "") -> EventIn:
    """An event as the billing core posts it: ``{"business_id", "type", "data", "timestamp"?}``."""
    body = require_object(obj, prefix.rstrip(".") or "body")
    allowed = {"business_id", "type", "data", "timestamp", "idempotency_key"}
    reject_unknown(body, allowed, prefix)
    bid = business_id(body.get("business_id"), prefix + "business_id")
    etype = event_type_name(body.get("type"), prefix + "type")
    if etype.split(".", 1)[0] == RESERVED_FAMILY:
        raise ValidationFailed(
            prefix + "type", "the hookgate.* family is reserved", code="reserved"
        )
    if "data" not in body:
        raise ValidationFailed(prefix + "data", "is required")
    data = body["data"]
    if not isinstance(data, dict):
        raise ValidationFailed(prefix + "data", "must be a JSON object")
    ts = body.get("timestamp")
    stamp = now_timestamp() if ts is None else timestamp(ts, prefix + "timestamp")
    return EventIn(business_id=bid, type=etype, timestamp=stamp, data=data)


def idempotency_key(value: Any, field: str = "Idempotency-Key") -> str:
    if not isinstance(value, str) or not IDEMPOTENCY_KEY_RE.match(value):
        raise ValidationFailed(field, "must be 1-255 visible ASCII characters")
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
            raise ValidationFailed(name, "must be an event type or a family pattern like payment.*")
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
        if lowered in RESERVED_HEADERS or lowered.startswith("webhook-"):
            raise ValidationFailed(name, "is set by hookgate and cannot be overridden")
        if not isinstance(val, str) or len(val) > 4096:
            raise ValidationFailed(name, "must be a string of at most 4096 characters")
        if any(c in val for c in "\r\n\x00"):
            raise ValidationFailed(name, "must not contain line breaks")
        out[key] = val
    return out


def endpoint_fields(
    obj: Any, *, known_types: frozenset[str], rules: TargetRules, partial: bool
) -> EndpointFields:
    """The fields of ``POST /v1/endpoints`` (``partial=False``) or a PATCH (``partial=True``)."""
    body = require_object(obj)
    allowed = {"url", "event_types", "description", "headers", "max_in_flight"}
    if not partial:
        allowed.add("business_id")
    if partial and "business_id" in body:
        raise ValidationFailed("business_id", "cannot be changed")
    reject_unknown(body, allowed)
    values: dict[str, Any] = {}
    if not partial:
        values["business_id"] = business_id(body.get("business_id"))
        if "url" not in body:
            raise ValidationFailed("url", "is required")
    if "url" in body:
        values["url"] = url(body["url"], rules)
    if body.get("event_types") is not None:
        values["event_types"] = event_types(body["event_types"], known_types)
    elif "event_types" in body:
        values["event_types"] = ()  # explicit null: every type
    description = _string(body, "description", required=False)
    if description is not None:
        if len(description) > 1024:
            raise ValidationFailed("description", "must be at most 1024 characters")
        values["description"] = description
    if body.get("headers") is not None:
        values["headers"] = custom_headers(body["headers"])
    if body.get("max_in_flight") is not None:
        cap = body["max_in_flight"]
        if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= MAX_IN_FLIGHT:
            raise ValidationFailed(
                "max_in_flight", f"must be a whole number from 1 to {MAX_IN_FLIGHT}"
            )
        values["max_in_flight"] = cap
    return EndpointFields(**values)
