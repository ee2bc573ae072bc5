"""The HTTP API: routes, each decoding its request into a ``schemas`` Struct and answering
through another (errors become HTTP answers in ``errors.py``'s middleware)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from typing import Any

import msgspec
import structlog
from aiohttp import web
from msgspec import UNSET
from redis.exceptions import RedisError

from gateway import __version__
from gateway.core import formats, model
from gateway.core.clock import now_ms
from gateway.core.errors import DomainError, ValidationFailed
from gateway.core.model import Ingested, PreparedEvent
from gateway.store.cells import probe
from gateway.store.metrics import CellFigures, render_metrics
from gateway.store.recovery import DeliveryFilter
from gateway.store.store import encoded, fingerprint
from gateway.web import access, audit, bodies, listen, schemas, validation
from gateway.web.bodies import answer
from gateway.web.budget import SMALL_BODY
from gateway.web.context import (
    API_KEYS,
    BATCH_TURN,
    CELLS,
    INGESTER,
    RECOVERY,
    SETTINGS,
    STORE,
)
from gateway.web.errors import (
    Forbidden,
    PayloadTooLarge,
    Unauthorized,
    error_detail,
    error_response,
    json_response,
    status_of,
)
from gateway.web.openapi import openapi_json
from gateway.web.requests import (
    BATCH_BODY_LIMIT,
    EVENT_BODY_LIMIT,
    JSON_BODY_LIMIT,
    path_id,
    read_body,
    read_buffer,
    read_struct,
    window,
)

log = structlog.get_logger("hookgate.api")

# Work a large batch's handler does between handing the event loop back: a 16 MB batch is about
# half a second of parsing, checking and encoding, which would otherwise hold every other
# request (health checks included) for as long. A turn of the loop then holds one slice of it.
SLICE = 0.002

# Built once: a decoder holds what it learned of its type.
EVENT = msgspec.json.Decoder(schemas.EventIn)
BATCH = msgspec.json.Decoder(schemas.BatchEnvelope)
BATCH_ITEM = msgspec.json.Decoder(schemas.BatchItem)
ENDPOINT = msgspec.json.Decoder(schemas.EndpointIn)
ENDPOINT_PATCH = msgspec.json.Decoder(schemas.EndpointPatch)
EVENT_TYPE = msgspec.json.Decoder(schemas.EventTypeIn)
REPLAY = msgspec.json.Decoder(schemas.ReplayIn)
DISABLE = msgspec.json.Decoder(schemas.DisableIn)
API_KEY = msgspec.json.Decoder(schemas.ApiKeyIn)
CELL_MOVE = msgspec.json.Decoder(schemas.CellMoveIn)


def as_sent(event: schemas.EventIn) -> dict[str, Any]:
    """The event as the client sent it (without an idempotency key), for ``fingerprint``: the
    dict the JSON body parsed to before bodies were decoded into Structs, so a key stored then
    still matches the same body now."""
    sent: dict[str, Any] = {
        "business_id": event.business_id,
        "type": event.type,
        "data": event.data,
    }
    if event.timestamp is not UNSET:
        sent["timestamp"] = event.timestamp
    if event.ordering_key is not UNSET:
        sent["ordering_key"] = event.ordering_key
    return sent


def _given(value: Any) -> Any:
    return None if value is UNSET else value


def accepted(result: Ingested, event: model.EventIn) -> schemas.EventAccepted:
    return schemas.EventAccepted(
        id=result.event_id,
        business_id=event.business_id,
        type=event.type,
        deliveries=list(result.deliveries),
        duplicate=result.duplicate,
    )


# ---- events ------------------------------------------------------------------------------


async def post_event(request: web.Request) -> web.Response:
    raw = await read_body(request, EVENT_BODY_LIMIT)
    sent = bodies.decode(raw, EVENT)
    access.own_business(request, sent.business_id)
    key = request.headers.get("Idempotency-Key")
    idem = None if key is None else validation.idempotency_key(key)
    event = validation.event_of(sent, raw=raw)
    # The fingerprint binds an Idempotency-Key to its body; without a key there is none to bind.
    prepared = PreparedEvent(event, idem, fingerprint(as_sent(sent)) if idem else "")
    [result] = await request.app[INGESTER].submit([prepared])
    if isinstance(result, DomainError):
        raise result
    response = json_response(accepted(result, event), status=202)
    if result.duplicate:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _item(request: web.Request, raw: msgspec.Raw, i: int) -> PreparedEvent:
    """One batch item, decoded and checked on its own, within the limits of a single event;
    raises ``BadRequest`` when it is not JSON (the whole batch is then refused, as any body
    that is not JSON)."""
    # Before decoding: an item is an event, and a batch must not be a way around the limit
    # POST /v1/events puts on one (the raw item is the JSON a single request's body would be).
    if len(raw) > EVENT_BODY_LIMIT:
        raise PayloadTooLarge(
            f"events[{i}]: the event is over {EVENT_BODY_LIMIT // 1024} KB",
            details={"field": f"events[{i}]"},
        )
    prefix = f"events[{i}]."
    sent = bodies.decode(raw, BATCH_ITEM, prefix)
    access.own_business(request, sent.business_id, prefix + "business_id")
    event = validation.event_of(sent, prefix, bytes(raw))
    idem = sent.idempotency_key
    return PreparedEvent(event, idem, fingerprint(as_sent(sent)) if idem else "")


async def _prepare(
    request: web.Request,
    items: list[msgspec.Raw],
    results: list[schemas.BatchItemResult | None],
    started: float,
    *,
    large: bool,
) -> list[tuple[int, PreparedEvent]]:
    """The batch's items that pass their checks, in order; each refused one's result goes
    into ``results``.

    A ``large`` batch (over 256 KB) hands the event loop back after every ``SLICE`` seconds of
    work, counted from ``started`` (``time.perf_counter``, when the work began), and keeps each
    item encoded (``encoded``), its parsed data dropped: the data of a thousand events is
    several times their JSON. A small batch, a few ms of work at most, is done in one go and
    keeps its items as they are (re-making each would cost more than the memory it saves)."""
    prepared: list[tuple[int, PreparedEvent]] = []
    resume = started + SLICE
    for i, raw in enumerate(items):
        try:
            item = _item(request, raw, i)
            prepared.append((i, encoded(item) if large else item))
        except (ValidationFailed, PayloadTooLarge, Forbidden) as exc:
            results[i] = _rejected(i, exc)
        if large and time.perf_counter() > resume:
            await asyncio.sleep(0)
            resume = time.perf_counter() + SLICE
    return prepared


def _rejected(i: int, exc: DomainError) -> schemas.BatchItemResult:
    return schemas.BatchItemResult(
        index=i, status=status_of(exc), error=error_detail(exc.code, exc.message, exc.details)
    )


async def post_event_batch(request: web.Request) -> web.Response:
    raw = await read_buffer(request, BATCH_BODY_LIMIT)
    large = len(raw) > SMALL_BODY
    # Large batches take turns; a small one is parsed at once, never behind a large one.
    async with request.app[BATCH_TURN] if large else contextlib.nullcontext():
        started = time.perf_counter()
        batch = bodies.decode(raw, BATCH)
        del raw  # the items are views of it: it goes with them, before the store call
        results: list[schemas.BatchItemResult | None] = [None] * len(batch.events)
        prepared = await _prepare(request, batch.events, results, started, large=large)
        del batch
    if prepared:
        stored = await request.app[INGESTER].submit([p for _, p in prepared])
        for (i, item), result in zip(prepared, stored, strict=True):
            if isinstance(result, ValidationFailed):  # it names the item's own field
                results[i] = _rejected(i, result.within(f"events[{i}]."))
            elif isinstance(result, DomainError):
                results[i] = _rejected(i, result)
            else:
                view = accepted(result, item.event)
                results[i] = schemas.BatchItemResult(
                    index=i,
                    status=202,
                    id=view.id,
                    business_id=view.business_id,
                    type=view.type,
                    deliveries=view.deliveries,
                    duplicate=view.duplicate,
                )
    done = [r for r in results if r is not None]
    ok = sum(1 for r in done if r.status == 202)
    body = schemas.BatchResult(accepted=ok, rejected=len(done) - ok, results=done)
    return json_response(body, status=202)


async def get_event(request: web.Request) -> web.Response:
    view = await request.app[STORE].get_event(path_id(request, "evt"))
    return answer(view, schemas.Event)


# ---- event types -------------------------------------------------------------------------


async def list_event_types(request: web.Request) -> web.Response:
    return answer({"data": await request.app[STORE].list_types()}, schemas.EventTypeList)


async def post_event_type(request: web.Request) -> web.Response:
    body = await read_struct(request, JSON_BODY_LIMIT, EVENT_TYPE)
    name = validation.own_event_type(body.name, "name")
    created = await request.app[STORE].register_type(name, body.description)
    audit.note(request, name)
    registered = schemas.EventTypeRegistered(
        name=name, description=body.description, created=created
    )
    return json_response(registered, status=201 if created else 200)


# ---- endpoints ---------------------------------------------------------------------------


async def post_endpoint(request: web.Request) -> web.Response:
    store = request.app[STORE]
    body = await read_struct(request, JSON_BODY_LIMIT, ENDPOINT)
    access.own_business(request, body.business_id)
    fields = validation.endpoint_of(
        body, known_types=await store.known_types(), rules=request.app[SETTINGS].targets
    )
    endpoint, secret = await store.create_endpoint(fields)
    audit.note(request, endpoint["id"], business_id=endpoint["business_id"])
    return answer({**endpoint, "secret": secret}, schemas.EndpointWithSecret, status=201)


async def list_endpoints(request: web.Request) -> web.Response:
    query = bodies.convert(dict(request.query), schemas.EndpointQuery)
    business, any_match = access.listing_business(request, _given(query.business_id))
    found = await request.app[STORE].list_endpoints(business) if any_match else []
    return answer({"data": found}, schemas.EndpointList)


async def get_endpoint(request: web.Request) -> web.Response:
    view = await request.app[STORE].get_endpoint(path_id(request, "ep"))
    return answer(view, schemas.Endpoint)


async def patch_endpoint(request: web.Request) -> web.Response:
    store = request.app[STORE]
    endpoint_id = path_id(request, "ep")
    body = await read_struct(request, JSON_BODY_LIMIT, ENDPOINT_PATCH)
    fields = validation.endpoint_of(
        body, known_types=await store.known_types(), rules=request.app[SETTINGS].targets
    )
    return answer(await store.update_endpoint(endpoint_id, fields), schemas.Endpoint)


async def delete_endpoint(request: web.Request) -> web.Response:
    await request.app[STORE].delete_endpoint(path_id(request, "ep"))
    return web.Response(status=204)


async def rotate_secret(request: web.Request) -> web.Response:
    endpoint, secret = await request.app[STORE].rotate_secret(path_id(request, "ep"))
    return answer({**endpoint, "secret": secret}, schemas.EndpointWithSecret)


# ---- deliveries and operations -----------------------------------------------------------


async def get_delivery(request: web.Request) -> web.Response:
    view = await request.app[STORE].get_delivery(path_id(request, "dlv"))
    return answer(view, schemas.Delivery)


async def list_deliveries(request: web.Request) -> web.Response:
    q = bodies.convert(dict(request.query), schemas.DeliveryQuery, strict=False)
    since_ms, until_ms = window(_given(q.since), _given(q.until), since_required=False)
    business, any_match = access.listing_business(request, _given(q.business_id))
    flt = DeliveryFilter(
        endpoint_id=_given(q.endpoint_id),
        event_id=_given(q.event_id),
        business_id=business,
        status=_given(q.status),
        event_type=_given(q.event_type),
        since_ms=since_ms,
        until_ms=until_ms,
    )
    # Another business's endpoint matches nothing: answered without a scan of its deliveries,
    # whose number a next_cursor would give away. (The business filter covers the rest.)
    if any_match and flt.endpoint_id is not None:
        any_match = await access.visible(request, "ep", flt.endpoint_id)
    if not any_match:
        return answer({"data": [], "next_cursor": None}, schemas.DeliveryPage)
    found, cursor = await request.app[RECOVERY].list_deliveries(
        flt, limit=q.limit, cursor=_given(q.cursor)
    )
    return answer({"data": found, "next_cursor": cursor}, schemas.DeliveryPage)


async def replay_delivery(request: web.Request) -> web.Response:
    view = await request.app[RECOVERY].replay_delivery(path_id(request, "dlv"))
    return answer(view, schemas.Delivery, status=202)


async def replay_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "ep")
    body = await read_struct(request, JSON_BODY_LIMIT, REPLAY)
    since_ms, until_ms = window(body.since, body.until, since_required=True)
    assert since_ms is not None
    result = await request.app[RECOVERY].start_replay(
        endpoint_id,
        since_ms=since_ms,
        until_ms=until_ms if until_ms is not None else int(time.time() * 1000),
        include_succeeded=body.status == "all",
        dry_run=body.dry_run,
    )
    if body.dry_run:
        audit.skip(request)  # a dry run changes nothing
        return answer(result, schemas.ReplayPreview)
    audit.note(request, result["replay_id"], *result.get("other_replays", ()))
    return answer(result, schemas.Replay, status=202)


async def list_blocked_keys(request: web.Request) -> web.Response:
    query = bodies.convert(dict(request.query), schemas.BlockedQuery, strict=False)
    page = await request.app[RECOVERY].blocked_keys(
        path_id(request, "ep"), limit=query.limit, cursor=_given(query.cursor)
    )
    return answer(page, schemas.BlockedKeyList)


async def skip_ordering_key(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "ep")
    ordering_key = validation.ordering_key(request.match_info["key"], "key")
    result = await request.app[RECOVERY].skip_key(endpoint_id, ordering_key)
    audit.note(request, result["skipped_delivery_id"])  # the key is the sender's text: not kept
    return answer(result, schemas.KeySkipped)


async def get_replay(request: web.Request) -> web.Response:
    view = await request.app[RECOVERY].get_replay(path_id(request, "rpl"))
    return answer(view, schemas.Replay)


async def disable_endpoint(request: web.Request) -> web.Response:
    endpoint_id = path_id(request, "ep")
    if request.can_read_body:
        body = await read_struct(request, JSON_BODY_LIMIT, DISABLE)
    else:
        body = schemas.DisableIn()
    view = await request.app[RECOVERY].disable(endpoint_id, body.reason)
    return answer(view, schemas.Endpoint)


async def enable_endpoint(request: web.Request) -> web.Response:
    view = await request.app[RECOVERY].enable(path_id(request, "ep"))
    return answer(view, schemas.Endpoint)


async def test_endpoint(request: web.Request) -> web.Response:
    result = await request.app[RECOVERY].send_test(path_id(request, "ep"))
    audit.note(request, result.event_id, *result.deliveries)
    sent = schemas.TestSent(event_id=result.event_id, delivery_id=result.deliveries[0])
    return json_response(sent, status=202)


# ---- API keys ----------------------------------------------------------------------------


async def post_api_key(request: web.Request) -> web.Response:
    body = await read_struct(request, JSON_BODY_LIMIT, API_KEY)
    scopes, expires_at_ms = validation.api_key_of(body)
    key, token = await request.app[API_KEYS].create(
        name=body.name, scopes=scopes, business_id=body.business_id, expires_at_ms=expires_at_ms
    )
    audit.note(request, key.id, business_id=key.business_id)
    return answer({**key.view(now_ms()), "key": token}, schemas.ApiKeyCreated, status=201)


async def list_api_keys(request: web.Request) -> web.Response:
    now = now_ms()
    found = [key.view(now) for key in await request.app[API_KEYS].list()]
    return answer({"data": found}, schemas.ApiKeyList)


async def revoke_api_key(request: web.Request) -> web.Response:
    await request.app[API_KEYS].revoke(path_id(request, "key"))
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return json_response(schemas.Health(status="ok", version=__version__))


async def _cell_states(request: web.Request) -> list[schemas.CellState]:
    cells = request.app[CELLS]
    reasons = await probe(cells)
    return [
        schemas.CellState(
            name=name, first=name == cells.home.name, ready=reason is None, reason=reason
        )
        for name, reason in reasons.items()
    ]


async def readyz(request: web.Request) -> web.Response:
    """Ready while the first cell's Redis takes writes this gateway may acknowledge (see
    ``RedisWatch``); ``degraded`` while another cell's does not (only its businesses wait).
    The first cell holds the directory and the API keys: without it this gateway cannot
    place a business or admit a key, so it is not ready."""
    states = await _cell_states(request)
    home = states[0]
    if home.reason is not None:
        reason = home.reason if len(states) == 1 else f"cell {home.name!r}: {home.reason}"
        return error_response(503, "not_ready", reason)
    shown = states if len(states) > 1 else []
    if all(s.ready for s in states):
        return json_response(schemas.Ready(status="ready", cells=shown))
    return json_response(schemas.Ready(status="degraded", cells=shown))


async def list_cells(request: web.Request) -> web.Response:
    return json_response(schemas.CellList(data=await _cell_states(request)))


async def get_business_cell(request: web.Request) -> web.Response:
    business = validation.business_id(request.match_info["id"], "business_id")
    cells = request.app[CELLS]
    placed = await cells.placement(business)
    return json_response(
        schemas.BusinessCell(
            business_id=business,
            cell=placed.cell,
            previous_cells=list(placed.previous),
            pinned=placed.pinned,
            pending_in_previous_cells=await cells.still_pending(business, placed),
        )
    )


async def put_business_cell(request: web.Request) -> web.Response:
    """Moves a business to the body's cell: its new events go there at once; its deliveries
    in the old cell finish there."""
    business = validation.business_id(request.match_info["id"], "business_id")
    body = await read_struct(request, JSON_BODY_LIMIT, CELL_MOVE)
    moved = await request.app[CELLS].move(business, body.cell, force=body.force)
    detail = f"{moved['from_cell']}->{moved['cell']}" if moved["moved"] else "already there"
    audit.note(request, business_id=business, detail=detail)
    return answer(moved, schemas.CellMove)


async def metrics(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {token}".encode()):
            raise Unauthorized("missing or wrong bearer token (HOOKGATE_METRICS_TOKEN)")
    cells = request.app[CELLS]
    figures: list[CellFigures] = []
    for cell in cells:
        try:
            counters, queued, due, waiting = await asyncio.wait_for(cell.store.metrics(), 2.0)
        except (RedisError, OSError, TimeoutError):
            figures.append(CellFigures(cell.name, up=False))
            continue
        figures.append(
            CellFigures(
                cell.name, True, counters, queued=queued, pending=due + waiting, waiting=waiting
            )
        )
    text = render_metrics(figures)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_json(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    """The JSON API's routes, health checks, metrics and the OpenAPI document.

    A route's ``{id}`` matches ids of its kind only: ``GET /v1/events/batch`` is then a 405
    (batch is POST), not a 404 for an event named "batch".
    """
    evt, ep, dlv, rpl, key = (
        f"{{id:{formats.ID_FORMS[kind]}}}" for kind in ("evt", "ep", "dlv", "rpl", "key")
    )
    r = app.router
    r.add_post("/v1/events", post_event)
    r.add_post("/v1/events/batch", post_event_batch)
    r.add_get(f"/v1/events/{evt}", get_event)
    r.add_get("/v1/event-types", list_event_types)
    r.add_post("/v1/event-types", post_event_type)
    r.add_post("/v1/endpoints", post_endpoint)
    r.add_get("/v1/endpoints", list_endpoints)
    r.add_get(f"/v1/endpoints/{ep}", get_endpoint)
    r.add_patch(f"/v1/endpoints/{ep}", patch_endpoint)
    r.add_delete(f"/v1/endpoints/{ep}", delete_endpoint)
    r.add_post(f"/v1/endpoints/{ep}/rotate-secret", rotate_secret)
    r.add_post(f"/v1/endpoints/{ep}/replay", replay_endpoint)
    r.add_post(f"/v1/endpoints/{ep}/disable", disable_endpoint)
    r.add_post(f"/v1/endpoints/{ep}/enable", enable_endpoint)
    r.add_post(f"/v1/endpoints/{ep}/test", test_endpoint)
    r.add_get(f"/v1/endpoints/{ep}/ordering/blocked", list_blocked_keys)
    # an ordering key may hold any printable character; the router hands it over unquoted
    r.add_post(f"/v1/endpoints/{ep}/ordering/keys/{{key:[^/]+}}/skip", skip_ordering_key)
    r.add_get(f"/v1/endpoints/{ep}/listen", listen.connect)
    r.add_put("/v1/listen-sessions/{name}", listen.put_listen_session)
    r.add_get("/v1/deliveries", list_deliveries)
    r.add_get(f"/v1/deliveries/{dlv}", get_delivery)
    r.add_post(f"/v1/deliveries/{dlv}/replay", replay_delivery)
    r.add_get(f"/v1/replays/{rpl}", get_replay)
    r.add_post("/v1/api-keys", post_api_key)
    r.add_get("/v1/api-keys", list_api_keys)
    r.add_delete(f"/v1/api-keys/{key}", revoke_api_key)
    r.add_get("/v1/audit-log", audit.get_audit_log)
    r.add_get("/v1/cells", list_cells)
    r.add_get("/v1/businesses/{id}/cell", get_business_cell)
    r.add_put("/v1/businesses/{id}/cell", put_business_cell)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi)
