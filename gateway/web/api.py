"""The HTTP API: routes, authentication and the one JSON error shape."""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import __version__
from gateway.core import codec
from gateway.core.catalog import load_catalog
from gateway.core.durations import parse_time
from gateway.core.errors import (
    ApiError,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    ValidationFailed,
)
from gateway.core.settings import Settings
from gateway.store.ingest import Ingester
from gateway.store.metrics import render_metrics
from gateway.store.recovery import STATUSES, DeliveryFilter, Recovery
from gateway.store.store import Ingested, PreparedEvent, Store, fingerprint
from gateway.web import validation
from gateway.web.openapi import openapi_document

log = structlog.get_logger("hookgate.api")

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

STORE = web.AppKey("store", Store)
RECOVERY = web.AppKey("recovery", Recovery)
INGESTER = web.AppKey("ingester", Ingester)
SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=codec.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json_response({"error": error}, status=status)


def api_middleware(token: str) -> Any:
    """Bearer authentication of /v1/* and the one JSON error shape, in one middleware (each
    middleware layer costs every request a little)."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith("/v1/"):
                given = request.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    raise Unauthorized("missing or wrong bearer token")
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and other non-errors pass through
            return _http_error(exc)
        except Exception as exc:
            return _error_answer(request, exc)

    return middleware


def _http_error(exc: web.HTTPException) -> web.Response:
    code = STATUS_CODES.get(exc.status, "http_error")
    response = error_response(exc.status, code, exc.reason)
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def _error_answer(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, ApiError):
        response = json_response(exc.body(), status=exc.status)
        if exc.status in (408, 413):
            response.force_close()  # the rest of the body is never read: drop the connection
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="hookgate"'
        return response
    if isinstance(exc, RedisError):
        log.error("hookgate.api.redis_unavailable", error=str(exc), path=request.path)
        return error_response(503, "store_unavailable", "the event store is unavailable; retry")
    log.exception("hookgate.api.unhandled", path=request.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


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


def ingested_view(result: Ingested, prepared: PreparedEvent) -> dict[str, Any]:
    return {
        "id": result.event_id,
        "business_id": prepared.event.business_id,
        "type": prepared.event.type,
        "deliveries": list(result.deliveries),
        "duplicate": result.duplicate,
    }


# ---- events ------------------------------------------------------------------------------


async def post_event(request: web.Request) -> web.Response:
    raw = await read_json(request, EVENT_BODY_LIMIT)
    key = request.headers.get("Idempotency-Key")
    idem = None if key is None else validation.idempotency_key(key)
    event = validation.event_in(raw)
    if isinstance(raw, dict) and "idempotency_key" in raw:
        raise ValidationFailed("idempotency_key", "use the Idempotency-Key header here")
    # The fingerprint binds an Idempotency-Key to its body; without a key there is none to bind.
    prepared = PreparedEvent(event, idem, fingerprint(raw) if idem else "")
    [result] = await request.app[INGESTER].submit([prepared])
    if isinstance(result, ApiError):
        raise result
    response = json_response(ingested_view(result, prepared), status=202)
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def post_event_batch(request: web.Request) -> web.Response:
    raw = validation.require_object(await read_json(request, BATCH_BODY_LIMIT))
    items = raw.get("events")
    if not isinstance(items, list) or not items:
        raise ValidationFailed("events", "must be a non-empty list")
    if len(items) > BATCH_MAX_EVENTS:
        raise ValidationFailed("events", f"must have at most {BATCH_MAX_EVENTS} items")
    results: list[dict[str, Any] | None] = [None] * len(items)
    prepared: list[tuple[int, PreparedEvent]] = []
    for i, item in enumerate(items):
        try:
            event = validation.event_in(item, prefix=f"events[{i}].")
            key = item.get("idempotency_key")
            idem = (
                None
                if key is None
                else validation.idempotency_key(key, f"events[{i}].idempotency_key")
            )
            body = {k: v for k, v in item.items() if k != "idempotency_key"}
            fp = fingerprint(body) if idem else ""
            prepared.append((i, PreparedEvent(event, idem, fp)))
        except ApiError as exc:
            results[i] = {"index": i, "status": exc.status, **exc.body()}
    if prepared:
        stored = await request.app[INGESTER].submit([p for _, p in prepared])
        for (i, item), result in zip(prepared, stored, strict=True):
            if isinstance(result, ApiError):
                results[i] = {"index": i, "status": result.status, **result.body()}
            else:
                results[i] = {"index": i, "status": 202, **ingested_view(result, item)}
    accepted = sum(1 for r in results if r is not None and r["status"] == 202)
    return json_response(
        {"accepted": accepted, "rejected": len(items) - accepted, "results": results}, status=202
    )


async def get_event(request: web.Request) -> web.Response:
    return json_response(await request.app[STORE].get_event(path_id(request, "evt")))


# ---- event types -------------------------------------------------------------------------


async def list_event_types(request: web.Request) -> web.Response:
    return json_response({"data": await request.app[STORE].list_types()})


async def post_event_type(request: web.Request) -> web.Response:
    raw = validation.require_object(await read_json(request, JSON_BODY_LIMIT))
    validation.reject_unknown(raw, {"name", "description"})
    name = validation.event_type_name(raw.get("name"), "name")
    if name.split(".", 1)[0] == "hookgate":
        raise ValidationFailed("name", "the hookgate.* family is reserved", code="reserved")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 1024:
        raise ValidationFailed("description", "must be a string of at most 1024 characters")
    created = await request.app[STORE].register_type(name, description)
    body = {"name": name, "description": description, "created": created}
    return json_response(body, status=201 if created else 200)


# ---- endpoints ---------------------------------------------------------------------------


async def post_endpoint(request: web.Request) -> web.Response:
    store = request.app[STORE]
    raw = await read_json(request, JSON_BODY_LIMIT)
    fields = validation.endpoint_fields(
        raw,
        known_types=await store.known_types(),
        rules=request.app[SETTINGS].targets,
        partial=False,
    )
    endpoint, secret = await store.create_endpoint(fields)
    return json_response({**endpoint, "secret": secret}, status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    business = request.query.get("business_id")
    if business is not None:
        validation.business_id(business)
    return json_response({"data": await request.app[STORE].list_endpoints(business)})


async def get_endpoint(request: web.Request) -> web.Response:
    return json_response(await request.app[STORE].get_endpoint(path_id(request, "ep")))


async def patch_endpoint(request: web.Request) -> web.Response:
    store = request.app[STORE]
    endpoint_id = path_id(request, "ep")
    raw = await read_json(request, JSON_BODY_LIMIT)
    fields = validation.endpoint_fields(
        raw,
        known_types=await store.known_types(),
        rules=request.app[SETTINGS].targets,
        partial=True,
    )
    return json_response(await store.update_endpoint(endpoint_id, fields))


async def delete_endpoint(request: web.Request) -> web.Response:
    await request.app[STORE].delete_endpoint(path_id(request, "ep"))
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    endpoint, secret = await request.app[STORE].rotate_secret(path_id(request, "ep"))
    return json_response({**endpoint, "secret": secret})


# ---- deliveries and operations -----------------------------------------------------------


async def get_delivery(request: web.Request) -> web.Response:
    return json_response(await request.app[STORE].get_delivery(path_id(request, "dlv")))


def _time_param(value: Any, field: str, now: float) -> int:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a duration like 2h or an RFC 3339 time")
    try:
        return int(parse_time(value, now) * 1000)
    except ValueError as exc:
        raise ValidationFailed(field, str(exc)) from None


def _window(since: Any, until: Any, *, since_required: bool) -> tuple[int | None, int | None]:
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


def _query_id(query: Any, name: str, kind: str) -> str | None:
    value = query.get(name)
    if value is not None and not ID_RES[kind].match(value):
        raise ValidationFailed(name, f"is not a {KIND_NAMES[kind]} id")
    return value  # type: ignore[no-any-return]


LIST_PARAMS = {
    "endpoint_id",
    "event_id",
    "business_id",
    "status",
    "event_type",
    "since",
    "until",
    "limit",
    "cursor",
}


async def list_deliveries(request: web.Request) -> web.Response:
    q = request.query
    validation.reject_unknown(q, LIST_PARAMS)
    status = q.get("status")
    if status is not None and status not in STATUSES:
        raise ValidationFailed("status", f"must be one of {', '.join(STATUSES)}")
    event_type = q.get("event_type")
    if event_type is not None:
        validation.event_type_name(event_type, "event_type")
    business = q.get("business_id")
    if business is not None:
        validation.business_id(business)
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 500:
        raise ValidationFailed("limit", "must be a whole number from 1 to 500")
    since_ms, until_ms = _window(q.get("since"), q.get("until"), since_required=False)
    flt = DeliveryFilter(
        endpoint_id=_query_id(q, "endpoint_id", "ep"),
        event_id=_query_id(q, "event_id", "evt"),
        business_id=business,
        status=status,
        event_type=event_type,
        since_ms=since_ms,
        until_ms=until_ms,
    )
    found, cursor = await request.app[RECOVERY].list_deliveries(
        flt, limit=limit, cursor=q.get("cursor")
    )
    return json_response({"data": found, "next_cursor": cursor})


async def replay_delivery(request: web.Request) -> web.Response:
    view = await request.app[RECOVERY].replay_delivery(path_id(request, "dlv"))
    return json_response(view, status=202)


async def replay_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "ep")
    raw = validation.require_object(await read_json(request, JSON_BODY_LIMIT))
    validation.reject_unknown(raw, {"since", "until", "status", "dry_run"})
    since_ms, until_ms = _window(raw.get("since"), raw.get("until"), since_required=True)
    status = raw.get("status", "failed")
    if status not in ("failed", "all"):
        raise ValidationFailed("status", 'must be "failed" or "all"')
    dry_run = raw.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ValidationFailed("dry_run", "must be true or false")
    assert since_ms is not None
    result = await request.app[RECOVERY].start_replay(
        endpoint_id,
        since_ms=since_ms,
        until_ms=until_ms if until_ms is not None else int(time.time() * 1000),
        include_succeeded=status == "all",
        dry_run=dry_run,
    )
    return json_response(result, status=200 if dry_run else 202)


async def get_replay(request: web.Request) -> web.Response:
    return json_response(await request.app[RECOVERY].get_replay(path_id(request, "rpl")))


async def disable_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "ep")
    raw = await read_json(request, JSON_BODY_LIMIT) if request.can_read_body else {}
    raw = validation.require_object(raw)
    validation.reject_unknown(raw, {"reason"})
    reason = raw.get("reason", "disabled by an operator")
    if not isinstance(reason, str) or not 1 <= len(reason) <= 500:
        raise ValidationFailed("reason", "must be a string of 1 to 500 characters")
    return json_response(await request.app[RECOVERY].disable(endpoint_id, reason))


async def enable_endpoint(request: web.Request) -> web.Response:
    return json_response(await request.app[RECOVERY].enable(path_id(request, "ep")))


async def test_endpoint(request: web.Request) -> web.Response:
    result = await request.app[RECOVERY].send_test(path_id(request, "ep"))
    return json_response(
        {"event_id": result.event_id, "delivery_id": result.deliveries[0]}, status=202
    )


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS].ping()
    except (RedisError, OSError) as exc:
        return error_response(503, "not_ready", f"redis: {exc}")
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            raise Unauthorized("missing or wrong bearer token (HOOKGATE_METRICS_TOKEN)")
    counters, queued, pending = await request.app[STORE].metrics()
    text = render_metrics(counters, queued=queued, pending=pending)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def create_app(settings: Settings, redis: Redis) -> web.Application:
    """The gateway application over an injected Redis pool (closed by the caller)."""
    app = web.Application(
        middlewares=[api_middleware(settings.admin_token)],
        client_max_size=BATCH_BODY_LIMIT + 1,
    )
    store = Store(redis, settings, load_catalog())
    app[STORE] = store
    app[INGESTER] = Ingester(store)
    app[RECOVERY] = Recovery(store)
    app[SETTINGS] = settings
    app[REDIS] = redis
    # Imported here: the portal's modules import this one (its keys, validation helpers).
    from gateway.web.portal import post_portal_link, setup_portal

    r = app.router
    r.add_post("/v1/events", post_event)
    r.add_post("/v1/events/batch", post_event_batch)
    r.add_get("/v1/events/{id}", get_event)
    r.add_get("/v1/event-types", list_event_types)
    r.add_post("/v1/event-types", post_event_type)
    r.add_post("/v1/endpoints", post_endpoint)
    r.add_get("/v1/endpoints", list_endpoints)
    r.add_get("/v1/endpoints/{id}", get_endpoint)
    r.add_patch("/v1/endpoints/{id}", patch_endpoint)
    r.add_delete("/v1/endpoints/{id}", delete_endpoint)
    r.add_post("/v1/endpoints/{id}/rotate-secret", rotate_secret)
    r.add_post("/v1/endpoints/{id}/replay", replay_endpoint)
    r.add_post("/v1/endpoints/{id}/disable", disable_endpoint)
    r.add_post("/v1/endpoints/{id}/enable", enable_endpoint)
    r.add_post("/v1/endpoints/{id}/test", test_endpoint)
    r.add_get("/v1/deliveries", list_deliveries)
    r.add_get("/v1/deliveries/{id}", get_delivery)
    r.add_post("/v1/deliveries/{id}/replay", replay_delivery)
    r.add_get("/v1/replays/{id}", get_replay)
    r.add_post("/v1/businesses/{id}/portal-links", post_portal_link)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi)
    setup_portal(app)
    return app
