"""Who is asking, and may they: every /v1 request's credential, the one table of the scope each
route needs, and business scoping.

A request carries ``Authorization: Bearer <HOOKGATE_ADMIN_TOKEN>`` (the bootstrap token, which
may do everything) or ``Bearer hgk_…`` (an API key: its scopes, and its business when it is
bound to one). ``Gate.admit`` runs before every /v1 handler (``errors.api_middleware``): it
sets ``request[ACTOR]``, refuses a missing scope (403, ``details.required_scope``) and, for a
business-bound key, the id of another business's object in the path (404, the answer an id
that names nothing gets) or another business in the path (403, ``details.field``).

What a handler reads from a body or a query string is the handler's to check, with the helpers
at the end: ``own_business`` for a business a body names, ``listing_business`` and ``visible``
for a listing's filters.
"""

from __future__ import annotations

import dataclasses
import hmac

import structlog
from aiohttp import web

from gateway.core.model import Actor
from gateway.core.scopes import ADMIN
from gateway.store.apikeys import TOKEN_PREFIX, ApiKey, ApiKeys
from gateway.store.routed import RoutedStore
from gateway.web.context import ACTOR, STORE
from gateway.web.errors import Forbidden, Unauthorized
from gateway.web.requests import unknown

log = structlog.get_logger("hookgate.access")

BUSINESS = "business"  # a Rule's owner when the path's {id} is a business id
ACTORS_KEPT = 10_000  # (credential, client address) pairs whose Actor is reused


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a route needs: a scope (``admin`` has them all) and, when its path has an
    ``{id}``, what that id names: an ``evt``, ``ep``, ``dlv`` or ``rpl`` (a business-bound
    caller sees only its business's) or ``BUSINESS`` (it must be the caller's own). Routes only
    ``admin`` may use name no owner: an admin key is never bound to a business."""

    scope: str
    owner: str | None = None


READ = Rule("read")
ADMIN_ONLY = Rule(ADMIN)

# Every /v1 route, by method and path as the router spells them (a GET's HEAD goes with it).
# A route missing here is refused to everyone, the bootstrap token included, and fails
# tests/test_access_table.py: a new route gets its row here, with the scope it needs.
RULES: dict[tuple[str, str], Rule] = {
    ("POST", "/v1/events"): Rule("events:write"),
    ("POST", "/v1/events/batch"): Rule("events:write"),
    ("GET", "/v1/events/{id}"): Rule("read", "evt"),
    ("GET", "/v1/event-types"): READ,
    ("POST", "/v1/event-types"): ADMIN_ONLY,
    ("POST", "/v1/endpoints"): Rule("endpoints:write"),
    ("GET", "/v1/endpoints"): READ,
    ("GET", "/v1/endpoints/{id}"): Rule("read", "ep"),
    ("PATCH", "/v1/endpoints/{id}"): Rule("endpoints:write", "ep"),
    ("DELETE", "/v1/endpoints/{id}"): Rule("endpoints:write", "ep"),
    ("POST", "/v1/endpoints/{id}/rotate-secret"): Rule("endpoints:write", "ep"),
    ("POST", "/v1/endpoints/{id}/disable"): Rule("endpoints:write", "ep"),
    ("POST", "/v1/endpoints/{id}/enable"): Rule("endpoints:write", "ep"),
    ("POST", "/v1/endpoints/{id}/test"): Rule("endpoints:write", "ep"),
    ("POST", "/v1/endpoints/{id}/replay"): Rule("deliveries:replay", "ep"),
    ("GET", "/v1/endpoints/{id}/ordering/blocked"): Rule("read", "ep"),
    # skipping gives up on a delivery, as a replay retries one
    ("POST", "/v1/endpoints/{id}/ordering/keys/{key}/skip"): Rule("deliveries:replay", "ep"),
    ("GET", "/v1/endpoints/{id}/listen"): Rule("endpoints:write", "ep"),
    # a listen session is an endpoint: opening one may make one (its business is the body's)
    ("PUT", "/v1/listen-sessions/{name}"): Rule("endpoints:write"),
    ("GET", "/v1/deliveries"): READ,
    ("GET", "/v1/deliveries/{id}"): Rule("read", "dlv"),
    ("POST", "/v1/deliveries/{id}/replay"): Rule("deliveries:replay", "dlv"),
    ("GET", "/v1/replays/{id}"): Rule("read", "rpl"),
    ("POST", "/v1/businesses/{id}/portal-links"): Rule("portal-links:create", BUSINESS),
    ("GET", "/v1/api-keys"): ADMIN_ONLY,
    ("POST", "/v1/api-keys"): ADMIN_ONLY,
    ("DELETE", "/v1/api-keys/{id}"): ADMIN_ONLY,
    # A business-bound key sees its business's entries only (the handler filters).
    ("GET", "/v1/audit-log"): READ,
    # cells: where businesses live is the platform operator's, moving one too
    ("GET", "/v1/cells"): ADMIN_ONLY,
    ("GET", "/v1/businesses/{id}/cell"): ADMIN_ONLY,
    ("PUT", "/v1/businesses/{id}/cell"): ADMIN_ONLY,
}


def rule_of(method: str, path: str) -> Rule | None:
    return RULES.get(("GET" if method == "HEAD" else method, path))


class Gate:
    """Authenticates /v1 requests and applies ``RULES`` (``admit``)."""

    def __init__(self, admin_token: str, api_keys: ApiKeys, store: RoutedStore) -> None:
        self._bootstrap = f"Bearer {admin_token}".encode()
        self._key_header = f"Bearer {TOKEN_PREFIX}"
        self.api_keys = api_keys
        self.store = store
        # An Actor is immutable, so the one made for a credential used from an address serves
        # its next requests too (making one costs more than the rest of the check); a key's is
        # made again whenever its record is read again.
        self._actors: dict[tuple[str, str], tuple[ApiKey | None, Actor]] = {}

    def _actor(self, key: ApiKey | None, client: str) -> Actor:
        """The bootstrap token's actor (``key`` None) or the key's, from ``client``."""
        slot = (key.id if key else "", client)
        kept = self._actors.get(slot)
        if kept is not None and kept[0] is key:
            return kept[1]
        if key is None:
            actor = Actor(kind="token", id="bootstrap", client=client)
        else:
            actor = Actor(
                kind="key",
                id=key.id,
                name=key.name,
                business_id=key.business_id,
                scopes=key.scopes,
                client=client,
            )
        if len(self._actors) >= ACTORS_KEPT:
            self._actors.clear()
        self._actors[slot] = (key, actor)
        return actor

    async def authenticate(self, request: web.Request) -> Actor:
        """The caller; ``Unauthorized`` (the same answer whatever the reason: no header, a
        wrong token, a key that is malformed, unknown, revoked or expired)."""
        header = request.headers.get("Authorization", "")
        client = request.remote or ""
        if hmac.compare_digest(header.encode(), self._bootstrap):
            return self._actor(None, client)
        if header.startswith(self._key_header):
            key = await self.api_keys.verify(header.removeprefix("Bearer "))
            if key is not None:
                self.api_keys.note_use(key.id, client)
                return self._actor(key, client)
        raise Unauthorized("missing or wrong bearer token")

    async def admit(self, request: web.Request) -> None:
        """Sets ``request[ACTOR]`` and lets the request through to its handler, or raises."""
        actor = await self.authenticate(request)
        request[ACTOR] = actor
        route = request.match_info.route
        if route.resource is None:
            return  # no such route: the router's 404 or 405 follows
        rule = rule_of(route.method, route.resource.canonical)
        if rule is None:
            log.error("hookgate.access.no_rule", method=route.method, path=request.path)
            raise Forbidden("this route has no access rule: it is refused to every caller")
        if ADMIN in actor.scopes:
            return
        if rule.scope not in actor.scopes:
            raise Forbidden(
                f"this API key does not have the scope {rule.scope!r}",
                details={"required_scope": rule.scope},
            )
        if actor.business_id is not None and rule.owner is not None:
            await self._check_owner(request, actor.business_id, rule.owner)

    async def _check_owner(self, request: web.Request, business_id: str, owner: str) -> None:
        object_id = request.match_info["id"]
        if owner == BUSINESS:
            own_business(request, object_id)
        elif await self.store.business_of(owner, object_id) != business_id:
            raise unknown(owner, object_id)  # another business's: as if there were none


# ---- for handlers: businesses named in bodies and filters --------------------------------


def own_business(request: web.Request, business_id: str, field: str = "business_id") -> None:
    """Refuses (403) a business that a business-bound caller does not act for."""
    bound = request[ACTOR].business_id
    if bound is not None and business_id != bound:
        raise Forbidden(
            f"{field}: this API key acts for business {bound!r} only", details={"field": field}
        )


def listing_business(request: web.Request, asked: str | None) -> tuple[str | None, bool]:
    """The business a listing is limited to (None: all), and whether anything can match:
    a business-bound caller's own business always, so a filter naming another business
    matches nothing (an empty page, as for a business with nothing yet)."""
    bound = request[ACTOR].business_id
    if bound is None:
        return asked, True
    return bound, asked is None or asked == bound


async def visible(request: web.Request, kind: str, object_id: str) -> bool:
    """Whether the caller may see the object (of ``kind``) that a filter names: always
    unless it is business-bound and the object is not its business's (or does not exist)."""
    bound = request[ACTOR].business_id
    return bound is None or await request.app[STORE].business_of(kind, object_id) == bound
