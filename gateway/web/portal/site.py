"""The portal's frame around every page: templates, the session and CSRF checks, security
headers and HTML error pages (the JSON API keeps its own error shape)."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import jinja2
import structlog
from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from redis.exceptions import RedisError

from gateway import __version__
from gateway.core.errors import DomainError
from gateway.core.logs import error_fields
from gateway.web.context import ACTOR, REDIS
from gateway.web.errors import (
    BadRequest,
    client_abort_response,
    client_aborted,
    error_response,
    status_of,
)
from gateway.web.requests import read_body

from . import auth

log = structlog.get_logger("hookgate.portal")

PREFIX = "/portal"
HERE = Path(__file__).parent
FORM_LIMIT = 64 * 1024
JINJA = web.AppKey("portal_jinja", jinja2.Environment)
# The signed-in session and the parsed form of the request being handled (each request runs in
# its own task, so its own context): set by the middleware, read by the views.
SESSION: contextvars.ContextVar[auth.Session | None] = contextvars.ContextVar(
    "portal_session", default=None
)
FORM: contextvars.ContextVar[MultiDictProxy[str]] = contextvars.ContextVar("portal_form")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# Routes a browser without a session may use (their POSTs carry the double-submit token).
PUBLIC_ROUTES = frozenset(
    {"portal.login", "portal.login_post", "portal.link", "portal.link_post", "portal.static"}
)
STATUS_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Not possible right now",
    413: "Too large",
    415: "Unsupported form",
    422: "Invalid input",
    503: "Store unavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def when(value: str | int | None) -> str:
    """An ISO time (or unix seconds) as ``2026-05-01 13:10:04 UTC``."""
    if value is None or value == "":
        return "—"
    if isinstance(value, int):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``1 attempt``, ``0 attempts``, ``12 attempts``: a count with its noun (``plural`` for
    a noun that does not just take an s: ``delivery``, ``deliveries``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {plural or noun + 's'}"


def pretty(value: Any) -> str:
    """JSON indented for reading; text that is not JSON comes back unchanged."""
    if isinstance(value, str):
        raw = value
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
    text: str = json.dumps(value, indent=2, ensure_ascii=False)
    return text


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["percent"] = percent
    env.filters["pretty"] = pretty
    env.filters["counted"] = counted
    env.filters["q"] = lambda v: quote(str(v), safe="")
    env.globals["version"] = __version__
    env.globals["prefix"] = PREFIX
    return env


def session_of(request: web.Request) -> auth.Session:
    """The session of a request past the middleware's check (which every page but sign-in
    and portal links needs)."""
    session = SESSION.get()
    assert session is not None
    return session


def form_of(request: web.Request) -> MultiDictProxy[str]:
    return FORM.get()


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    session = SESSION.get()
    body = (
        request.app[JINJA]
        .get_template(template)
        .render(
            session=session,
            csrf=session.csrf if session is not None else "",
            path=request.path,
            **context,
        )
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    """A 303 to a portal path (a plain response: returning an HTTPException is deprecated)."""
    return web.Response(status=303, headers={"Location": location})


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    title = STATUS_TITLES.get(status, "Error")
    return render(request, "error.html", status=status, title=title, message=message)


async def _read_form(request: web.Request) -> MultiDictProxy[str]:
    """A urlencoded form of at most 64 KB; any other body reads as an empty form (so it fails
    the CSRF check instead of being half understood)."""
    if request.content_type != "application/x-www-form-urlencoded":
        return MultiDictProxy(MultiDict())
    raw = await read_body(request, FORM_LIMIT)
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid UTF-8") from None
    return MultiDictProxy(MultiDict(pairs))


def _is_portal(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _login_redirect(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else PREFIX + "/endpoints"
    return redirect(f"{PREFIX}/login?next={quote(target, safe='')}")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = request.match_info.route.name
    if route == "portal.static":
        return await handler(request)
    public = route in PUBLIC_ROUTES
    session = await auth.load_session(request.app[REDIS], request.cookies.get(auth.SESSION_COOKIE))
    SESSION.set(session)
    if session is not None:
        request[ACTOR] = auth.actor_of(session, request.remote or "")
    if session is None and not public and route is not None:
        if route == "portal.replay_progress":
            return error_response(401, "unauthorized", "not signed in")
        return _login_redirect(request)
    if request.method == "POST":
        form = await _read_form(request)
        FORM.set(form)
        if public:
            expected = request.cookies.get(auth.PRE_COOKIE, "")
        else:
            expected = session.csrf if session is not None else ""
        if not auth.same(form.get("csrf"), expected):
            return error_page(
                request,
                403,
                "The form's security token is missing or out of date. Go back, reload the "
                "page and try again.",
            )
    return await handler(request)


@web.middleware
async def portal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/portal`` response: session and CSRF checked, HTML errors, security headers."""
    if not _is_portal(request.path):
        return await handler(request)
    # Never let one request's session or form reach another handled in the same context.
    session_token = SESSION.set(None)
    form_token = FORM.set(MultiDictProxy(MultiDict()))
    try:
        return await _answer(request, handler)
    finally:
        SESSION.reset(session_token)
        FORM.reset(form_token)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(SECURITY_HEADERS)
            raise
        message = {404: "There is no such page.", 405: "This page does not take that method."}
        response = error_page(request, exc.status, message.get(exc.status, exc.reason))
    except DomainError as exc:
        response = error_page(request, status_of(exc), exc.message)
    except RedisError as exc:
        log.error("hookgate.portal.redis_unavailable", **error_fields(exc), path=request.path)
        response = error_page(request, 503, "The store is unavailable; try again shortly.")
    except Exception as exc:
        if client_aborted(request, exc):
            return client_abort_response(request, exc)  # nobody is left to read a page
        log.exception("hookgate.portal.unhandled", path=request.path)
        response = error_page(request, 500, "Something went wrong on our side.")
    response.headers.update(SECURITY_HEADERS)
    if request.match_info.route.name != "portal.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def query_values(query: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The named query parameters that were given non-blank (a GET form sends empty ones)."""
    return {n: query[n].strip() for n in names if query.get(n, "").strip()}
