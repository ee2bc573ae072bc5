"""The HTTP API: routes, authentication and the one JSON error shape."""

from __future__ import annotations

import hmac
import time
from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from gateway import __version__
from gateway.core.errors import DomainError, ValidationFailed
from gateway.core.model import Ingested, PreparedEvent
from gateway.store.metrics import render_metrics
from gateway.store.recovery import STATUSES, DeliveryFilter
from gateway.store.store import fingerprint
from gateway.web import validation
from gateway.web.context import INGESTER, RECOVERY, REDIS, SETTINGS, STORE
from gateway.web.errors import Unauthorized, body_of, error_response, json_response, status_of
from gateway.web.openapi import openapi_document
from gateway.web.requests import (
    BATCH_BODY_LIMIT,
    BATCH_MAX_EVENTS,
    EVENT_BODY_LIMIT,
    JSON_BODY_LIMIT,
    path_id,
    query_id,
    read_json,
    window,
)

log = structlog.get_logger("hookgate.api")


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
    if isinstance(result, DomainError):
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
        except DomainError as exc:
            results[i] = {"index": i, "status": status_of(exc), **body_of(exc)}
    if prepared:
        stored = await request.app[INGESTER].submit([p for _, p in prepared])
        for (i, item), result in zip(prepared, stored, strict=True):
            if isinstance(result, DomainError):
                results[i] = {"index": i, "status": status_of(result), **body_of(result)}
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
    since_ms, until_ms = window(q.get("since"), q.get("until"), since_required=False)
    flt = DeliveryFilter(
        endpoint_id=query_id(q, "endpoint_id", "ep"),
        event_id=query_id(q, "event_id", "evt"),
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
    since_ms, until_ms = window(raw.get("since"), raw.get("until"), since_required=True)
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


def add_routes(app: web.Application) -> None:
    """The JSON API's routes, health checks, metrics and the OpenAPI document."""
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
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi)
