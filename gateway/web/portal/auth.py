"""Who may use the portal: operator sessions from the admin token, merchant sessions from
single-use portal links, and the CSRF tokens that guard every form.

Session ids and link tokens are random (256 bits) and reach Redis only as SHA-256 digests, so
a dump of Redis opens nothing. A link is deleted by the step that uses it; the session it
opens sees one business and ends when the link would have expired (at most 12 h).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from typing import Any

import msgspec
from aiohttp import web
from msgspec import UNSET
from redis.asyncio import Redis

from gateway.core.audit import ANONYMOUS_ID
from gateway.core.clock import iso_ms
from gateway.core.durations import format_duration, parse_duration
from gateway.core.errors import ValidationFailed
from gateway.core.model import Actor
from gateway.store import keys
from gateway.store.store import awaited
from gateway.web import schemas, validation
from gateway.web.context import REDIS, SETTINGS, STORE
from gateway.web.errors import json_response
from gateway.web.requests import JSON_BODY_LIMIT, read_struct

SESSION_COOKIE = "hg_portal"
# Forms shown before there is a session (sign-in, opening a link) carry a double-submit token:
# a hidden field that must equal this cookie's value.
PRE_COOKIE = "hg_portal_pre"
COOKIE_PATH = "/portal"
# Kept by a browser that opened, or tried to open, a portal link: without a session it is
# told that its link ended, never shown the operators' sign-in form. Holds no secret.
MERCHANT_COOKIE = "hg_portal_merchant"
MERCHANT_TTL = 30 * 86400
SESSION_TTL = 12 * 3600.0
PRE_TTL = 3600
LINK_TTL_DEFAULT = 86400.0
LINK_TTL_MIN = 1.0
LINK_TTL_MAX = 7 * 86400.0
TOKEN_MAX = 128  # longer cookie or link values are not ours: refused before hashing
# Failed sign-ins allowed from one client address per window; then it must wait for the window
# to end (even the right token is refused meanwhile, so guessing gains nothing).
LOGIN_FAILURES_ALLOWED = 10
LOGIN_WINDOW_S = 900
LINK_REQUEST = msgspec.json.Decoder(schemas.PortalLinkIn)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Constant-time equality of two secrets; an absent or empty one never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def login_wait(redis: Redis, client: str) -> int:
    """Seconds ``client`` must wait before it may try to sign in again (0: it may now)."""
    key = keys.login_failures(client)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    if count is None or int(count) < LOGIN_FAILURES_ALLOWED:
        return 0
    return max(int(ttl), 1)


async def record_login_failure(redis: Redis, client: str) -> None:
    """Counts a failed sign-in; the window starts at a client's first failure."""
    key = keys.login_failures(client)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, 0, ex=LOGIN_WINDOW_S, nx=True)
        pipe.incr(key)  # keeps the expiry set by the first failure
        await pipe.execute()


@dataclasses.dataclass(frozen=True)
class Session:
    """One signed-in browser: an operator (``business_id`` None) or one business's merchant."""

    digest: str
    business_id: str | None
    csrf: str
    expires_at_ms: int

    @property
    def is_operator(self) -> bool:
        return self.business_id is None

    def allows(self, business_id: str) -> bool:
        return self.business_id is None or self.business_id == business_id

    @property
    def ref(self) -> str:
        """The session as the audit log names it: neither its cookie nor the key of its hash
        in Redis can be found from it."""
        return "ps_" + hashlib.sha256(f"audit-ref:{self.digest}".encode()).hexdigest()[:12]


# What a merchant's session may do (an operator's may do everything).
MERCHANT_SCOPES = frozenset({"read", "endpoints:write", "deliveries:replay"})


def actor_of(session: Session, client: str) -> Actor:
    """The session as who did something (``request[ACTOR]``, the audit log)."""
    if session.is_operator:
        return Actor(kind="portal", id=session.ref, name="operator", client=client)
    return Actor(
        kind="portal",
        id=session.ref,
        name="merchant",
        business_id=session.business_id,
        scopes=MERCHANT_SCOPES,
        client=client,
    )


def anonymous(client: str) -> Actor:
    """Whoever tried to sign in and failed: there is only an address."""
    return Actor(kind="anonymous", id=ANONYMOUS_ID, scopes=frozenset(), client=client)


async def create_session(
    redis: Redis, business_id: str | None, ttl_s: float
) -> tuple[str, Session]:
    """A new session (a fresh id at every sign-in: no fixation); returns the cookie value."""
    session_id = new_token()
    ttl_ms = max(1, int(ttl_s * 1000))
    expires = int(time.time() * 1000) + ttl_ms
    session = Session(digest(session_id), business_id, new_token(), expires)
    key = keys.portal_session(session.digest)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            key,
            mapping={
                "business_id": business_id or "",
                "csrf": session.csrf,
                "expires_at": expires,
            },
        )
        pipe.pexpire(key, ttl_ms)
        await pipe.execute()
    return session_id, session


async def load_session(redis: Redis, session_id: str | None) -> Session | None:
    if not session_id or len(session_id) > TOKEN_MAX:
        return None
    hashed = digest(session_id)
    raw = await awaited(redis.hgetall(keys.portal_session(hashed)))
    if not raw:
        return None
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    expires = int(fields["expires_at"])
    if expires <= time.time() * 1000:  # Redis expires it lazily; never trust a late read
        return None
    return Session(hashed, fields["business_id"] or None, fields["csrf"], expires)


async def end_session(redis: Redis, session: Session) -> None:
    await awaited(redis.delete(keys.portal_session(session.digest)))


async def create_link(redis: Redis, business_id: str, ttl_s: float) -> tuple[str, int]:
    """A single-use link token for one business; returns it and when it expires (ms)."""
    token = new_token()
    ttl_ms = int(ttl_s * 1000)
    expires = int(time.time() * 1000) + ttl_ms
    key = keys.portal_link(digest(token))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping={"business_id": business_id, "expires_at": expires})
        pipe.pexpire(key, ttl_ms)
        await pipe.execute()
    return token, expires


def _link_fields(raw: dict[bytes, bytes]) -> tuple[str, int] | None:
    if not raw:
        return None
    expires = int(raw[b"expires_at"])
    if expires <= time.time() * 1000:
        return None
    return raw[b"business_id"].decode(), expires


async def peek_link(redis: Redis, token: str) -> tuple[str, int] | None:
    """The business and expiry of an unused, unexpired link, without using it."""
    if not token or len(token) > TOKEN_MAX:
        return None
    return _link_fields(await awaited(redis.hgetall(keys.portal_link(digest(token)))))


async def use_link(redis: Redis, token: str) -> tuple[str, int] | None:
    """Uses a link up: read and delete in one transaction, so two clicks get one session."""
    if not token or len(token) > TOKEN_MAX:
        return None
    key = keys.portal_link(digest(token))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hgetall(key)
        pipe.delete(key)
        raw, _ = await pipe.execute()
    return _link_fields(raw)


def link_ttl(value: Any) -> float:
    """The ``ttl`` of ``POST /v1/businesses/{id}/portal-links``: a duration from 1s to 7d."""
    if not isinstance(value, str):
        raise ValidationFailed("ttl", "must be a duration like 30m, 2h or 1d")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValidationFailed("ttl", str(exc)) from None
    if not LINK_TTL_MIN <= seconds <= LINK_TTL_MAX:
        raise ValidationFailed(
            "ttl",
            f"must be from {format_duration(LINK_TTL_MIN)} to {format_duration(LINK_TTL_MAX)}",
        )
    return seconds


def public_origin(request: web.Request) -> str:
    """Where clients reach the gateway: HOOKGATE_PUBLIC_URL, else the request's own origin."""
    return request.app[SETTINGS].public_url or str(request.url.origin())


def is_secure(request: web.Request) -> bool:
    """Whether cookies get ``Secure``: https as the client sees it (HOOKGATE_PUBLIC_URL when
    a TLS proxy sits in front), or as the gateway itself sees it."""
    return request.secure or public_origin(request).startswith("https://")


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=is_secure(request),
    )


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    response.del_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=is_secure(request)
    )


def is_merchant_browser(request: web.Request) -> bool:
    return request.cookies.get(MERCHANT_COOKIE) == "1"


def mark_merchant_browser(request: web.Request, response: web.StreamResponse) -> None:
    set_cookie(request, response, MERCHANT_COOKIE, "1", MERCHANT_TTL)


def pre_token(request: web.Request) -> str:
    """The double-submit token of a sign-in or link form: the browser's, or a new one."""
    current = request.cookies.get(PRE_COOKIE, "")
    return current if 0 < len(current) <= TOKEN_MAX else new_token()


async def post_portal_link(request: web.Request) -> web.Response:
    """``POST /v1/businesses/{id}/portal-links`` (admin bearer auth, like all of ``/v1``)."""
    business = validation.business_id(request.match_info["id"], "business_id")
    if request.can_read_body:
        body = await read_struct(request, JSON_BODY_LIMIT, LINK_REQUEST)
    else:
        body = schemas.PortalLinkIn()
    ttl = LINK_TTL_DEFAULT if body.ttl is UNSET else link_ttl(body.ttl)
    token, expires = await create_link(request.app[REDIS], business, ttl)
    await request.app[STORE].home.scripts.wait_for_replicas()  # the link is on a replica first
    url = f"{public_origin(request)}{COOKIE_PATH}/link/{token}"
    link = schemas.PortalLink(url=url, expires_at=iso_ms(expires) or "", business_id=business)
    return json_response(link, status=201)
