"""The OpenAPI 3.1 document served at ``/openapi.json``, generated: the bodies' schemas from
the Structs in ``schemas.py`` (``msgspec.json.schema_components``), the operations from the
route table below.

Error answers follow from what an operation does, so none is forgotten: every ``/v1`` route
can answer 401 and 403; one that reads a body 400, 408, 413 and 422; one with a query string
422; one with an ``{id}`` 404; one that touches Redis 503 ``store_unavailable``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import msgspec

from gateway import __version__
from gateway.core import formats
from gateway.web import schemas

REF = "#/components/schemas/{name}"

# What the body of an answer is: a Struct, an OpenAPI content map, or nothing.
Shape = type[msgspec.Struct] | dict[str, Any] | None

ERRORS = {
    400: "Malformed JSON (invalid_json)",
    401: "Missing or wrong bearer token, or an API key that is revoked or expired (unauthorized)",
    403: "The API key lacks the scope this route needs (forbidden, details.required_scope), or "
    "is bound to a business and named another (forbidden, details.field)",
    404: "Unknown id (not_found)",
    408: "The body did not arrive within the request timeout (request_timeout)",
    409: "Conflict",
    413: "Body too large (payload_too_large)",
    422: "A field is missing, of the wrong type or not allowed (validation_failed; also "
    "unknown_event_type, reserved, private_url, insecure_url, duplicate_header)",
    503: "The store is unavailable (store_unavailable); retry",
}


@dataclasses.dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    answers: Mapping[int, tuple[Shape, str]]
    body: type[msgspec.Struct] | None = None
    body_required: bool = True
    query: type[msgspec.Struct] | None = None
    id_kind: str | None = None  # what the path's {id} names
    parameters: tuple[dict[str, Any], ...] = ()  # others: headers, a business id in the path
    conflict: str | None = None  # when the operation can answer 409: why
    store: bool = True  # it reads or writes Redis
    public: bool = False  # no bearer token
    description: str | None = None

    def errors(self) -> dict[int, str]:
        found: dict[int, str] = {}
        if self.path.startswith("/v1/"):
            found[401] = ERRORS[401]
            found[403] = ERRORS[403]
        if self.body is not None:
            found.update({s: ERRORS[s] for s in (400, 408, 413, 422)})
        if self.query is not None or any(p["in"] == "path" for p in self.parameters):
            found[422] = ERRORS[422]
        if self.id_kind is not None or any(p["in"] == "path" for p in self.parameters):
            found[404] = ERRORS[404]
        if self.conflict is not None:
            found[409] = f"{ERRORS[409]}: {self.conflict}"
        if self.store:
            found[503] = ERRORS[503]
        return dict(sorted(found.items()))


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": formats.IDEMPOTENCY_KEY},
    "description": "the same key with the same body within 24 h stores the event once; with "
    "another body it is a 409",
}
BUSINESS_IN_PATH = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": formats.BUSINESS_ID},
    "description": "the business the link opens the portal for",
}
ORDERING_KEY_IN_PATH = {
    "name": "key",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": formats.ORDERING_KEY},
    "description": "the ordering key, percent-encoded",
}
LISTEN_SESSION_IN_PATH = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": formats.LISTEN_SESSION},
    "description": "the session's name, one of the business's",
}
DISABLED = "the endpoint is disabled: enable it first (endpoint_disabled)"
CONCURRENT = "the endpoint is being changed concurrently; try again"
S = schemas

OPERATIONS = (
    Operation(
        "post",
        "/v1/events",
        "Ingest one event; 202 only once it and its deliveries are stored",
        {202: (S.EventAccepted, "Stored")},
        body=S.EventIn,
        parameters=(IDEMPOTENCY_KEY,),
        conflict="the Idempotency-Key was used with another body (idempotency_conflict)",
    ),
    Operation(
        "post",
        "/v1/events/batch",
        "Ingest up to 1000 events; one result per item",
        {202: (S.BatchResult, "Per-item results")},
        body=S.BatchIn,
    ),
    Operation(
        "get",
        "/v1/events/{id}",
        "An event and the state of each of its deliveries",
        {200: (S.Event, "The event")},
        id_kind="evt",
    ),
    Operation(
        "get",
        "/v1/event-types",
        "Catalogue and registered event types",
        {200: (S.EventTypeList, "Types")},
    ),
    Operation(
        "post",
        "/v1/event-types",
        "Register a custom event type",
        {
            201: (S.EventTypeRegistered, "Registered"),
            200: (S.EventTypeRegistered, "Already known"),
        },
        body=S.EventTypeIn,
    ),
    Operation(
        "get",
        "/v1/endpoints",
        "List endpoints, optionally of one business",
        {200: (S.EndpointList, "Endpoints")},
        query=S.EndpointQuery,
    ),
    Operation(
        "post",
        "/v1/endpoints",
        "Create an endpoint; the answer holds its secret, once (or its ed25519 public key)",
        {201: (S.EndpointWithSecret, "Created")},
        body=S.EndpointIn,
        conflict="the business has as many endpoints as HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS "
        "allows (endpoint_limit): delete one first",
    ),
    Operation(
        "get",
        "/v1/endpoints/{id}",
        "One endpoint (never its secret)",
        {200: (S.Endpoint, "The endpoint")},
        id_kind="ep",
    ),
    Operation(
        "patch",
        "/v1/endpoints/{id}",
        "Change an endpoint",
        {200: (S.Endpoint, "Changed")},
        id_kind="ep",
        body=S.EndpointPatch,
        conflict=CONCURRENT,
    ),
    Operation(
        "delete",
        "/v1/endpoints/{id}",
        "Delete; pending deliveries are cancelled",
        {204: (None, "Deleted")},
        id_kind="ep",
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/rotate-secret",
        "New secret or key pair; the old ones keep signing for the grace period",
        {200: (S.EndpointWithSecret, "Rotated")},
        id_kind="ep",
        conflict=CONCURRENT,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/replay",
        "Replay an endpoint's deliveries of a time window, in batches",
        {
            202: (S.Replay, "Started (or the same one, already running)"),
            200: (S.ReplayPreview, "A dry run: what would be replayed"),
        },
        id_kind="ep",
        body=S.ReplayIn,
        conflict=DISABLED,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/disable",
        "Disable: pending deliveries are cancelled, new ones skipped",
        {200: (S.Endpoint, "Disabled")},
        id_kind="ep",
        body=S.DisableIn,
        body_required=False,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/enable",
        "Enable again",
        {200: (S.Endpoint, "Enabled")},
        id_kind="ep",
        conflict=CONCURRENT,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/test",
        "Send a signed hookgate.test event to this endpoint alone",
        {202: (S.TestSent, "Sent through the normal path")},
        id_kind="ep",
        conflict=DISABLED,
    ),
    Operation(
        "get",
        "/v1/endpoints/{id}/ordering/blocked",
        "Ordering keys held by a head whose retries are spent, longest blocked first",
        {200: (S.BlockedKeyList, "A page of blocked keys")},
        id_kind="ep",
        query=S.BlockedQuery,
    ),
    Operation(
        "post",
        "/v1/endpoints/{id}/ordering/keys/{key}/skip",
        "Move an ordering key past its head; the key's next delivery goes",
        {200: (S.KeySkipped, "Skipped: the head stays failed, and can be replayed")},
        id_kind="ep",
        parameters=(ORDERING_KEY_IN_PATH,),
        conflict="an attempt of the key's head is open right now (attempt_in_flight)",
        description="A blocked head stays failed; a head still being retried ends failed with "
        "the reason skipped. 404 when no delivery holds the key.",
    ),
    Operation(
        "get",
        "/v1/endpoints/{id}/listen",
        "A listen session's WebSocket: its deliveries, for hookgate listen to forward",
        {
            101: (None, "Switching Protocols: the session's WebSocket"),
            426: (S.Error, "Not a WebSocket upgrade (upgrade_required)"),
        },
        id_kind="ep",
        conflict="the endpoint is not a listen session (not_a_listen_session), or is disabled "
        "(endpoint_disabled)",
        description=(
            "While a client holds it, the session's deliveries are made: each attempt comes as "
            'a JSON message {"type": "delivery", "job_id", "delivery_id", "event_id", '
            '"event_type", "attempt", "headers", "body", "timeout"}, and the client answers '
            '{"type": "outcome", "job_id", "status", "latency_ms", "body", "error"}, which is '
            "recorded as the attempt's outcome. A newer connection takes the session over: the "
            'older one gets {"type": "replaced"} and is closed (code 4001). While no client is '
            "connected the session's deliveries wait, spending no attempt."
        ),
    ),
    Operation(
        "put",
        "/v1/listen-sessions/{name}",
        "Open a listen session (hookgate listen): the business's session of this name, made "
        "when it has none; the answer holds its secret",
        {
            201: (S.ListenSession, "Made"),
            200: (S.ListenSession, "Found: the same session, resumed"),
        },
        body=S.ListenSessionIn,
        parameters=(LISTEN_SESSION_IN_PATH,),
        conflict="the business has as many endpoints as HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS "
        "allows (endpoint_limit)",
        description=(
            "A listen session is an endpoint of kind listen (url listen://<name>) that delivers "
            "one event at a time, in ingest order, to the client holding its WebSocket "
            "(GET /v1/endpoints/{id}/listen). Its deliveries wait while no client is connected; "
            "it is deleted HOOKGATE_LISTEN_SESSION_TTL (24h unless set) after a client was last "
            "connected. Every answer shows its current secret, for the receiver behind "
            "hookgate listen; event_types replace the session's subscription (absent: every "
            "type)."
        ),
    ),
    Operation(
        "get",
        "/v1/deliveries",
        "Deliveries, newest first, cursor-paginated",
        {200: (S.DeliveryPage, "A page of deliveries")},
        query=S.DeliveryQuery,
    ),
    Operation(
        "get",
        "/v1/deliveries/{id}",
        "A delivery with every attempt and its next attempt time",
        {200: (S.Delivery, "The delivery")},
        id_kind="dlv",
    ),
    Operation(
        "post",
        "/v1/deliveries/{id}/replay",
        "A new attempt chain for one delivery: same webhook-id and body",
        {202: (S.Delivery, "Replaying")},
        id_kind="dlv",
        conflict="the delivery is still pending (pending), or its endpoint was deleted "
        "(endpoint_deleted) or is disabled (endpoint_disabled)",
    ),
    Operation(
        "get",
        "/v1/replays/{id}",
        "A bulk replay's progress",
        {200: (S.Replay, "Progress")},
        id_kind="rpl",
    ),
    Operation(
        "post",
        "/v1/businesses/{id}/portal-links",
        "A single-use link that opens the delivery portal for one business",
        {201: (S.PortalLink, "The link: give it to the merchant; it works once")},
        body=S.PortalLinkIn,
        body_required=False,
        parameters=(BUSINESS_IN_PATH,),
    ),
    Operation(
        "get",
        "/v1/cells",
        "The cells (Redis groups) this gateway serves, and whether each takes writes now",
        {200: (S.CellList, "The cells, the first holding the directory")},
    ),
    Operation(
        "get",
        "/v1/businesses/{id}/cell",
        "Where a business lives: its cell and the cells it lived in before",
        {200: (S.BusinessCell, "Its placement")},
        parameters=(BUSINESS_IN_PATH,),
    ),
    Operation(
        "put",
        "/v1/businesses/{id}/cell",
        "Move a business to another cell",
        {200: (S.CellMove, "Moved (or already there): new events go to the new cell")},
        body=S.CellMoveIn,
        parameters=(BUSINESS_IN_PATH,),
        conflict=(
            "its ordered endpoints have deliveries pending (ordered_deliveries_pending), or "
            "it is being moved already (move_in_progress)"
        ),
        description=(
            "Its endpoints (sealed secrets and all) are copied to the new cell and its new "
            "events go there at once; deliveries already in the old cell finish there. Reads "
            "(events, deliveries, listings, replays, the portal) find both."
        ),
    ),
    Operation(
        "post",
        "/v1/api-keys",
        "Create an API key; the answer holds the key, once",
        {201: (S.ApiKeyCreated, "Created: give the key to its user; it is stored nowhere")},
        body=S.ApiKeyIn,
    ),
    Operation(
        "get",
        "/v1/api-keys",
        "Every API key: scopes, business, expiry, last use (never the key)",
        {200: (S.ApiKeyList, "API keys")},
    ),
    Operation(
        "delete",
        "/v1/api-keys/{id}",
        "Revoke an API key: every gateway refuses it within a second",
        {204: (None, "Revoked (again: no change)")},
        id_kind="key",
    ),
    Operation(
        "get",
        "/v1/audit-log",
        "Who changed what: the audit log, newest first, cursor-paginated",
        {200: (S.AuditPage, "A page of entries")},
        query=S.AuditQuery,
        description=(
            "Every change made through the API, the CLI or the portal, failed and refused "
            "attempts too, and hookgate's own (an endpoint disabled after a 410 or after "
            "failing for HOOKGATE_DISABLE_AFTER). A key bound to a business sees that "
            "business's entries only. A filter on actor or action looks at up to 5000 "
            "entries per page: a page can then hold fewer than limit entries and still have "
            "a next_cursor."
        ),
    ),
    Operation(
        "get",
        "/healthz",
        "Liveness",
        {200: (S.Health, "Alive")},
        store=False,
        public=True,
    ),
    Operation(
        "get",
        "/readyz",
        "Readiness: the first cell takes writes (and how each cell is)",
        {200: (S.Ready, "Ready"), 503: (S.Error, "Not ready (not_ready)")},
        store=False,
        public=True,
    ),
    Operation(
        "get",
        "/metrics",
        "Prometheus metrics",
        {200: ({"text/plain": {"schema": {"type": "string"}}}, "Prometheus text")},
        public=True,
        description=(
            "Open unless HOOKGATE_METRICS_TOKEN is set; then it needs "
            "`Authorization: Bearer <that token>`."
        ),
    ),
    Operation(
        "get",
        "/openapi.json",
        "This document",
        {200: ({"application/json": {"schema": {"type": "object"}}}, "OpenAPI")},
        store=False,
        public=True,
    ),
)


def _json(shape: Shape, description: str) -> dict[str, Any]:
    if shape is None:
        return {"description": description}
    if isinstance(shape, dict):
        return {"description": description, "content": shape}
    ref = {"$ref": REF.format(name=shape.__name__)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _id_parameter(kind: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": formats.IDS[kind]},
        "description": f"an id starting with {kind}_",
    }


def query_parameters(query: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """A query string's Struct as OpenAPI parameters, one per field, with its constraints."""
    _, components = msgspec.json.schema_components([query], ref_template=REF)
    schema = components.pop(query.__name__)
    assert not components, "a query string's fields are plain values"
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        param = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        params.append({**param, "schema": prop})
    return params


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {"summary": op.summary}
    if op.description:
        doc["description"] = op.description
    if op.public:
        doc["security"] = []
    params = [*op.parameters]
    if op.id_kind is not None:
        params.insert(0, _id_parameter(op.id_kind))
    if op.query is not None:
        params += query_parameters(op.query)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(name=op.body.__name__)}}
            },
        }
    answers = {status: _json(shape, text) for status, (shape, text) in op.answers.items()}
    errors = {s: _json(S.Error, text) for s, text in op.errors().items() if s not in answers}
    doc["responses"] = {str(s): answers.get(s) or errors[s] for s in sorted({*answers, *errors})}
    return doc


def shapes() -> list[type[msgspec.Struct]]:
    """Every Struct the document shows a body of (query Structs become parameters)."""
    found: dict[str, type[msgspec.Struct]] = {"Error": S.Error}
    for op in OPERATIONS:
        for shape in (op.body, *(shape for shape, _ in op.answers.values())):
            if isinstance(shape, type):
                found[shape.__name__] = shape
    return list(found.values())


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(shapes(), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookgate",
            "version": __version__,
            "description": "Durable ingest and signed, retried webhook delivery.",
        },
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


@functools.cache
def openapi_json() -> bytes:
    return msgspec.json.encode(openapi_document())
