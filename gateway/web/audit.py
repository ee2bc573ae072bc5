"""The audit trail of the API and the portal: which routes are changes (``API_ACTIONS``,
``PORTAL_ACTIONS``), the middleware that records each one's outcome, and
``GET /v1/audit-log``.

``audit_middleware`` is the outermost middleware. For a route that changes something it lets
the request through (authentication, access checks, the handler, error answers), then, before
the answer leaves, appends one entry: who (``request[ACTOR]``, set by the API's gate or the
portal's session check), the action, the ids (the path's ``{id}`` and what the handler adds
with ``note``), the business, the client address, and the status. Requests that never got
past authentication (no actor) are not recorded; refused ones (403, 404, 422, …) are, as
failures.

An entry is written after its change, so a change can be stored and its entry not (Redis
failing between the two): the entry is then logged in full as
``hookgate.audit.not_written``, an error, and the change is still answered as done, because
it is. hookgate's own changes (an auto-disable) are recorded by the Lua script that makes
them, in the same atomic step.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import msgspec
import structlog
from aiohttp import web
from msgspec import UNSET
from redis.exceptions import RedisError

from gateway.core import formats
from gateway.core.audit import Entry, outcome_of
from gateway.core.errors import DomainError, StoreUnavailable
from gateway.core.logs import error_fields
from gateway.store.audit import AuditFilter, AuditLog
from gateway.web import access, bodies, schemas
from gateway.web.bodies import answer
from gateway.web.context import ACTOR, API_KEYS, AUDIT, STORE
from gateway.web.errors import HTTP_CODES, Handler
from gateway.web.requests import ID_RES, window

log = structlog.get_logger("hookgate.audit")

BUSINESS = "business"  # an Action's id kind when the path's {id} is a business id
_BUSINESS_RE = re.compile(formats.BUSINESS_ID)
# The code an entry gives a failure whose answer is not the API's JSON error (a portal page).
_STATUS_CODES = {
    **HTTP_CODES,
    409: "conflict",
    422: "validation_failed",
    429: "too_many_requests",
    500: "internal_error",
    503: "store_unavailable",
}


@dataclasses.dataclass(frozen=True)
class Action:
    """A route that changes something: the action it records and what its path's ``{id}``
    names (``ep``, ``dlv``, ``key`` or ``BUSINESS``), if it has one. ``before``: the id's
    business is looked up before the handler runs (a delete leaves nothing to look up)."""

    name: str
    id_kind: str | None = None
    before: bool = False


# Every /v1 change, by method and path as the router spells them (tests/test_audit.py fails
# on a route that changes something and is in neither table).
API_ACTIONS: dict[tuple[str, str], Action] = {
    ("POST", "/v1/endpoints"): Action("endpoint.create"),
    ("PATCH", "/v1/endpoints/{id}"): Action("endpoint.patch", "ep"),
    ("DELETE", "/v1/endpoints/{id}"): Action("endpoint.delete", "ep", before=True),
    ("POST", "/v1/endpoints/{id}/rotate-secret"): Action("endpoint.rotate_secret", "ep"),
    ("POST", "/v1/endpoints/{id}/disable"): Action("endpoint.disable", "ep"),
    ("POST", "/v1/endpoints/{id}/enable"): Action("endpoint.enable", "ep"),
    ("POST", "/v1/endpoints/{id}/test"): Action("endpoint.test", "ep"),
    ("POST", "/v1/endpoints/{id}/replay"): Action("endpoint.replay", "ep"),
    ("POST", "/v1/endpoints/{id}/ordering/keys/{key}/skip"): Action("endpoint.ordering_skip", "ep"),
    ("POST", "/v1/deliveries/{id}/replay"): Action("delivery.replay", "dlv"),
    ("POST", "/v1/api-keys"): Action("api_key.create"),
    ("DELETE", "/v1/api-keys/{id}"): Action("api_key.revoke", "key"),
    ("POST", "/v1/businesses/{id}/portal-links"): Action("portal_link.create", BUSINESS),
    ("POST", "/v1/event-types"): Action("event_type.register"),
    ("PUT", "/v1/listen-sessions/{name}"): Action("listen_session.open"),
    ("PUT", "/v1/businesses/{id}/cell"): Action("business.move_cell", BUSINESS),
}
# Changes that are not recorded: event ingest (an API key's "last used" covers it).
NOT_RECORDED = frozenset({("POST", "/v1/events"), ("POST", "/v1/events/batch")})
# Every portal form that changes something, by route name (``portal/__init__.py``).
PORTAL_ACTIONS: dict[str, Action] = {
    "portal.login_post": Action("portal.sign_in"),
    "portal.link_post": Action("portal.sign_in"),
    "portal.logout": Action("portal.sign_out"),
    "portal.endpoint_create": Action("endpoint.create"),
    "portal.disable": Action("endpoint.disable", "ep"),
    "portal.enable": Action("endpoint.enable", "ep"),
    "portal.rotate": Action("endpoint.rotate_secret", "ep"),
    "portal.test": Action("endpoint.test", "ep"),
    "portal.replay_one": Action("delivery.replay", "dlv"),
    "portal.recover_post": Action("endpoint.replay"),
    "portal.ordering_skip": Action("endpoint.ordering_skip", "ep"),
    "portal.api_key_create": Action("api_key.create"),
    "portal.api_key_revoke": Action("api_key.revoke", "key"),
}


@dataclasses.dataclass
class Note:
    """What a handler adds to its request's entry: ids it made or read from a body (checked),
    the business when the path does not say it, a code saying why it failed, or that the
    request changed nothing after all (a dry run)."""

    targets: list[str] = dataclasses.field(default_factory=list)
    business_id: str | None = None
    detail: str = ""
    skip: bool = False


NOTE = web.RequestKey("audit_note", Note)


def note(
    request: web.Request, *targets: str, business_id: str | None = None, detail: str = ""
) -> None:
    """Adds ``targets`` (ids hookgate made or checked), a business and a failure code to the
    request's audit entry; nothing when the route records none."""
    found = request.get(NOTE)
    if found is None:
        return
    found.targets.extend(targets)
    if business_id is not None:
        found.business_id = business_id
    if detail:
        found.detail = detail


def skip(request: web.Request) -> None:
    """The request changed nothing (a dry run): no entry."""
    found = request.get(NOTE)
    if found is not None:
        found.skip = True


def action_of(request: web.Request) -> Action | None:
    route = request.match_info.route
    if route.resource is None:
        return None
    if route.name is not None and route.name in PORTAL_ACTIONS:
        return PORTAL_ACTIONS[route.name]
    return API_ACTIONS.get((route.method, route.resource.canonical))


def _path_id(request: web.Request, action: Action) -> str | None:
    """The path's ``{id}`` when it is of the kind the action names (a portal path takes any
    text: what is not an id is never recorded)."""
    if action.id_kind is None:
        return None
    value = request.match_info.get("id", "")
    pattern = _BUSINESS_RE if action.id_kind == BUSINESS else ID_RES[action.id_kind]
    return value if pattern.match(value) else None


async def _business_of(request: web.Request, kind: str, object_id: str) -> str | None:
    if kind == BUSINESS:
        return object_id
    try:
        if kind == "key":
            key = await request.app[API_KEYS].load(object_id)
            return None if key is None else key.business_id
        return await request.app[STORE].business_of(kind, object_id)
    except RedisError:
        return None  # the entry is still worth writing without it


def _failure_code(status: int, response: web.StreamResponse | None) -> str:
    """The API's error code from the answer (a JSON error body), else one for the status."""
    if (
        isinstance(response, web.Response)
        and isinstance(response.body, bytes)
        and response.content_type == "application/json"
    ):
        try:
            return msgspec.json.decode(response.body, type=schemas.Error).error.code
        except msgspec.DecodeError:
            pass
    return _STATUS_CODES.get(status, "error")


async def write(audit: AuditLog, entry: Entry) -> None:
    """Appends ``entry``; when the store fails, the entry goes to the log instead, as an
    error (never dropped without a trace)."""
    try:
        await audit.append(entry)
    except StoreUnavailable as exc:  # stored, but too few replicas confirmed it in time
        log.error("hookgate.audit.not_replicated", **entry.log_fields(), **error_fields(exc))
    except (RedisError, DomainError, OSError) as exc:
        log.error("hookgate.audit.not_written", **entry.log_fields(), **error_fields(exc))


async def _record(
    request: web.Request,
    action: Action,
    path_id: str | None,
    status: int,
    response: web.StreamResponse | None,
    before: str | None,
) -> None:
    actor = request.get(ACTOR)
    found = request[NOTE]
    if actor is None or found.skip:
        return  # never got past authentication, or changed nothing
    targets = ([path_id] if path_id else []) + found.targets
    # A business-bound caller acts for its own business only: its entries (refusals of
    # another business's ids too) are its business's, and say nothing to the other one.
    business = actor.business_id or found.business_id or before
    if business is None and path_id is not None and action.id_kind is not None:
        business = await _business_of(request, action.id_kind, path_id)
    outcome = outcome_of(status)
    detail = found.detail or ("" if status < 400 else _failure_code(status, response))
    entry = Entry(
        actor=actor,
        action=action.name,
        targets=tuple(targets),
        business_id=business,
        outcome=outcome,
        status=status,
        detail=detail,
    )
    await write(request.app[AUDIT], entry)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Records every change made through the API or the portal (see the module's text)."""
    action = action_of(request)
    if action is None:
        return await handler(request)
    request[NOTE] = Note()
    path_id = _path_id(request, action)
    before = None
    if action.before and path_id is not None and action.id_kind is not None:
        before = await _business_of(request, action.id_kind, path_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a redirect the portal raised, or an error unanswered
        await _record(request, action, path_id, exc.status, None, before)
        raise
    except Exception:  # the API and the portal answer every error: this is a bug
        await _record(request, action, path_id, 500, None, before)
        raise
    await _record(request, action, path_id, response.status, response, before)
    return response


# ---- GET /v1/audit-log -------------------------------------------------------------------


async def get_audit_log(request: web.Request) -> web.Response:
    """Entries newest first; a business-bound key sees its own business's only."""
    q = bodies.convert(dict(request.query), schemas.AuditQuery, strict=False)
    since_ms, until_ms = window(_given(q.since), _given(q.until), since_required=False)
    business, any_match = access.listing_business(request, _given(q.business_id))
    if not any_match:
        return answer({"data": [], "next_cursor": None}, schemas.AuditPage)
    flt = AuditFilter(
        business_id=business,
        actor=_given(q.actor),
        action=_given(q.action),
        since_ms=since_ms,
        until_ms=until_ms,
    )
    found, cursor = await request.app[AUDIT].page(flt, limit=q.limit, cursor=_given(q.cursor))
    return answer({"data": found, "next_cursor": cursor}, schemas.AuditPage)


def _given(value: Any) -> Any:
    return None if value is UNSET else value
