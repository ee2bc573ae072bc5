"""The portal's pages. Each one calls the same store and recovery functions as the JSON API
(``gateway/web/api.py``) and checks input with the same validation; a merchant's session sees its
own business only, and anything else answers 404 as if it did not exist."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import urlencode

import structlog
from aiohttp import web

from gateway.core.audit import ACTION_FILTERS, ACTOR_FILTER, parse_stream_id
from gateway.core.clock import iso_ms
from gateway.core.errors import Conflict, NotFound, ValidationFailed
from gateway.core.headers import masked
from gateway.store.audit import AuditFilter
from gateway.store.recovery import STATUSES, DeliveryFilter, EventFilter, decode_cursor
from gateway.web import audit, validation
from gateway.web.context import ACTOR, AUDIT, RECOVERY, REDIS, SETTINGS, STORE
from gateway.web.errors import status_of
from gateway.web.requests import ID_RES, KIND_NAMES, window
from worker.signing import build_headers

from . import auth
from .charts import hourly_chart
from .site import (
    PREFIX,
    SESSION,
    error_page,
    form_of,
    query_values,
    redirect,
    render,
    session_of,
)

log = structlog.get_logger("hookgate.portal")

PAGE_SIZE = 25
ENDPOINTS_SHOWN = 200
RECENT_DELIVERIES = 10
BLOCKED_SHOWN = 50  # an endpoint page's blocked ordering keys, longest blocked first
SIGNATURE_SHOWN = "v1,…"  # the signature is not stored: it is shown redacted


# ---- scoped reads: another business's objects do not exist for a merchant ---------------


def _missing(kind: str, value: str) -> NotFound:
    """The one answer for an id a merchant may not see, whether it is unknown, of another
    business, or gone: byte for byte the same apart from the id the caller sent."""
    return NotFound(f"There is no {KIND_NAMES[kind]} {value!r}.")


def _check_id(value: str, kind: str) -> str:
    if not ID_RES[kind].match(value):
        raise _missing(kind, value)
    return value


async def _endpoint(request: web.Request, endpoint_id: str) -> dict[str, Any]:
    _check_id(endpoint_id, "ep")
    try:
        endpoint = await request.app[STORE].get_endpoint(endpoint_id)
    except NotFound:
        raise _missing("ep", endpoint_id) from None
    if not session_of(request).allows(endpoint["business_id"]):
        raise _missing("ep", endpoint_id)
    return endpoint


async def _delivery(request: web.Request, delivery_id: str) -> dict[str, Any]:
    _check_id(delivery_id, "dlv")
    try:
        delivery = await request.app[STORE].get_delivery(delivery_id)
    except NotFound:
        raise _missing("dlv", delivery_id) from None
    if not session_of(request).allows(delivery["business_id"]):
        raise _missing("dlv", delivery_id)
    return delivery


async def _event(request: web.Request, event_id: str) -> dict[str, Any]:
    _check_id(event_id, "evt")
    try:
        event = await request.app[STORE].get_event(event_id)
    except NotFound:
        raise _missing("evt", event_id) from None
    if not session_of(request).allows(event["business_id"]):
        raise _missing("evt", event_id)
    return event


async def _replay(request: web.Request, replay_id: str) -> dict[str, Any]:
    _check_id(replay_id, "rpl")
    try:
        replay = await request.app[RECOVERY].get_replay(replay_id)
    except NotFound:
        raise _missing("rpl", replay_id) from None
    if not session_of(request).is_operator:
        # A replay is its endpoint's business's; an endpoint that is another business's, or
        # deleted, makes the replay missing (never an answer that names the endpoint).
        try:
            await _endpoint(request, replay["endpoint_id"])
        except NotFound:
            raise _missing("rpl", replay_id) from None
    return replay


async def _visible_endpoints(request: web.Request, business_id: str | None) -> list[dict[str, Any]]:
    session = session_of(request)
    scope = session.business_id if session.business_id is not None else business_id
    return await request.app[STORE].list_endpoints(scope)


# ---- sign-in, sign-out, portal links ------------------------------------------------------


HOME = PREFIX + "/endpoints"
# Where a sign-in may go on to: a portal path and query in the characters RFC 3986 allows
# unescaped, and nothing else. An allow-list, because each thing it leaves out broke something:
# a control character in a Location header makes aiohttp drop the connection unanswered; a
# backslash, "//host" or a scheme can lead a browser to another site; non-ASCII is read
# differently by different browsers. Escapes are taken (a path the portal itself quoted), but
# not of a control character: the portal would decode it back into its path.
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%(?:[2-689A-Fa-f][0-9A-Fa-f]|7[0-9A-Ea-e]))"
_NEXT_RE = re.compile(
    rf"{re.escape(PREFIX)}/(?:{_PCHAR}+(?:/{_PCHAR}+)*/?)?(?:\?(?:{_PCHAR}|[/?])*)?"
)
_DOT_SEGMENTS = {".", "..", "%2e", "%2e.", ".%2e", "%2e%2e"}
MAX_NEXT = 2048


def _safe_next(value: str | None) -> str:
    """Only a plain portal path (``_NEXT_RE``); anything else goes to the portal's home."""
    if not value or len(value) > MAX_NEXT or not _NEXT_RE.fullmatch(value):
        return HOME
    path = value.partition("?")[0]
    # a browser resolves "/portal/../v1" out of the portal, escaped dots included
    if any(segment.lower() in _DOT_SEGMENTS for segment in path.split("/")):
        return HOME
    return value


def _pre_form(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    token = auth.pre_token(request)
    response = render(request, template, status=status, pre_csrf=token, **ctx)
    auth.set_cookie(request, response, auth.PRE_COOKIE, token, auth.PRE_TTL)
    return response


async def login_page(request: web.Request) -> web.Response:
    if auth.is_merchant_browser(request) and "operator" not in request.query:
        # A merchant whose link ended (or who signed out) is sent here like anyone without a
        # session: tell them what happened, not how operators sign in.
        session = SESSION.get()
        if session is not None and not session.is_operator:
            return redirect(HOME)
        return _link_ended(request, 200, _SESSION_ENDED, title="Your portal link has ended")
    return _pre_form(request, "login.html", next=_safe_next(request.query.get("next")), error="")


async def login(request: web.Request) -> web.Response:
    form = form_of(request)
    given = form.get("token", "")
    target = _safe_next(form.get("next"))
    redis = request.app[REDIS]
    client = request.remote or "unknown"
    wait = await auth.login_wait(redis, client)
    if wait:
        audit.skip(request)  # refused unread: a flood of these writes nothing
        response = _pre_form(
            request,
            "login.html",
            status=429,
            next=target,
            error=f"Too many failed sign-ins from this address: try again in {-(-wait // 60)} min.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if not auth.same(given, request.app[SETTINGS].admin_token):
        await auth.record_login_failure(redis, client)
        log.warning("hookgate.portal.sign_in_failed", client=client)
        _failed_sign_in(request, client, "wrong_token")
        return _pre_form(
            request, "login.html", status=401, next=target, error="That is not the admin token."
        )
    old = SESSION.get()
    if old is not None:
        await auth.end_session(redis, old)
    session_id, session = await auth.create_session(redis, None, auth.SESSION_TTL)
    request[ACTOR] = auth.actor_of(session, client)
    response = redirect(target)
    auth.set_cookie(request, response, auth.SESSION_COOKIE, session_id, int(auth.SESSION_TTL))
    auth.clear_cookie(request, response, auth.PRE_COOKIE)
    auth.clear_cookie(request, response, auth.MERCHANT_COOKIE)
    return response


def _failed_sign_in(request: web.Request, client: str, why: str) -> None:
    """The audit entry of a failed sign-in: by the browser's session if it has one, else by
    no one but its address."""
    if request.get(ACTOR) is None:
        request[ACTOR] = auth.anonymous(client)
    audit.note(request, detail=why)


async def logout(request: web.Request) -> web.Response:
    await auth.end_session(request.app[REDIS], session_of(request))
    response = redirect(PREFIX + "/login")
    auth.clear_cookie(request, response, auth.SESSION_COOKIE)
    return response


_LINK_GONE = (
    "This portal link is not valid: it has expired, it was already used, or it never "
    "existed. Ask the platform for a new one."
)
_SESSION_ENDED = (
    "The link that opened the delivery portal has expired or was already used (each link "
    "works once, for a limited time), or you signed out. Ask your platform for a new link."
)


def _link_ended(
    request: web.Request, status: int, message: str, *, title: str = "This link does not open"
) -> web.Response:
    """What a merchant sees without a session: why, and whom to ask. The browser is marked
    as a merchant's, so its next visit without a session says the same."""
    response = render(request, "ended.html", status=status, title=title, message=message)
    auth.mark_merchant_browser(request, response)
    return response


async def link_page(request: web.Request) -> web.Response:
    found = await auth.peek_link(request.app[REDIS], request.match_info["token"])
    if found is None:
        return _link_ended(request, 404, _LINK_GONE)
    business, expires = found
    return _pre_form(request, "link.html", business_id=business, expires_at=iso_ms(expires))


async def use_link(request: web.Request) -> web.Response:
    redis = request.app[REDIS]
    client = request.remote or "unknown"
    # A link that does not open is a failed sign-in: it counts against the same budget per
    # address as a wrong token (so failures, and their audit entries, stay bounded).
    wait = await auth.login_wait(redis, client)
    if wait:
        audit.skip(request)
        response = error_page(
            request,
            429,
            f"Too many failed sign-ins from this address: try again in {-(-wait // 60)} min.",
        )
        response.headers["Retry-After"] = str(wait)
        return response
    found = await auth.use_link(redis, request.match_info["token"])
    if found is None:
        await auth.record_login_failure(redis, client)
        log.warning("hookgate.portal.link_failed", client=client)
        _failed_sign_in(request, client, "link_not_valid")
        return _link_ended(request, 404, _LINK_GONE)
    business, expires = found
    ttl = min(auth.SESSION_TTL, (expires - time.time() * 1000) / 1000)
    session_id, session = await auth.create_session(redis, business, ttl)
    request[ACTOR] = auth.actor_of(session, client)
    response = redirect(PREFIX + "/endpoints")
    auth.set_cookie(request, response, auth.SESSION_COOKIE, session_id, max(1, int(ttl)))
    auth.clear_cookie(request, response, auth.PRE_COOKIE)
    auth.mark_merchant_browser(request, response)
    return response


async def home(request: web.Request) -> web.Response:
    return redirect(HOME)


# ---- endpoints ---------------------------------------------------------------------------


async def _endpoint_rows(request: web.Request, business_id: str | None) -> list[dict[str, Any]]:
    listed = await _visible_endpoints(request, business_id)
    store = request.app[STORE]

    async def health(endpoint_id: str) -> dict[str, Any] | None:
        try:
            return await store.get_endpoint(endpoint_id)
        except NotFound:  # deleted since it was listed
            return None

    found = await asyncio.gather(*(health(e["id"]) for e in listed[:ENDPOINTS_SHOWN]))
    rows = [e for e in found if e is not None]
    await _with_deliveries(request, rows)
    return rows


async def _with_deliveries(request: web.Request, endpoints: list[dict[str, Any]]) -> None:
    """Adds ``deliveries_24h`` to each endpoint's health: of its deliveries that ended in the
    last 24 h, how many succeeded (after retries or not) and failed, and the share that
    succeeded. The health's own rate counts attempts, so a delivery that succeeded on its
    third attempt is one success in three there."""
    outcomes = await request.app[STORE].delivery_outcomes([e["id"] for e in endpoints])
    for endpoint, outcome in zip(endpoints, outcomes, strict=True):
        ended = outcome["succeeded"] + outcome["failed"]
        rate = round(outcome["succeeded"] / ended, 4) if ended else None
        endpoint["health"]["deliveries_24h"] = {**outcome, "ended": ended, "success_rate": rate}


async def _endpoints_page(
    request: web.Request,
    *,
    status: int = 200,
    form: dict[str, str] | None = None,
    error: str = "",
) -> web.Response:
    q = query_values(request.query, ("business_id",))
    business = q.get("business_id")
    if business is not None:
        validation.business_id(business)
    rows = await _endpoint_rows(request, business)
    return render(
        request,
        "endpoints.html",
        status=status,
        endpoints=rows,
        business_filter=business or "",
        form=form or {},
        error=error,
        truncated=len(rows) >= ENDPOINTS_SHOWN,
    )


async def endpoints(request: web.Request) -> web.Response:
    return await _endpoints_page(request)


_FORM_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _endpoint_body(form: dict[str, str], business_id: str | None) -> dict[str, Any]:
    """The form as the JSON body of ``POST /v1/endpoints``, for the API's own validation."""
    body: dict[str, Any] = {"url": form.get("url", "").strip()}
    body["business_id"] = business_id if business_id is not None else form.get("business_id", "")
    types = [t for t in form.get("event_types", "").replace(",", " ").split() if t]
    if types:
        body["event_types"] = types
    if form.get("description", "").strip():
        body["description"] = form["description"].strip()
    headers: dict[str, str] = {}
    # Lines end at a line break only (str.splitlines would also break at a vertical tab, a
    # form feed, …), and only spaces and tabs around a name or value are the form's: any
    # other character reaches validation, which refuses it naming the header.
    for line in _FORM_LINE_BREAK.split(form.get("headers", "")):
        if not line.strip(" \t"):
            continue
        name, sep, value = line.partition(":")
        name = name.strip(" \t")
        if not sep or not name:
            raise ValidationFailed("headers", "write one header per line, as Name: value")
        if name in headers:  # a dict keeps one: say so rather than drop a line
            raise ValidationFailed(
                f"headers.{name}", "is given twice: give it once", code="duplicate_header"
            )
        headers[name] = value.strip(" \t")
    if headers:
        body["headers"] = headers
    cap = form.get("max_in_flight", "").strip()
    if cap:
        try:
            body["max_in_flight"] = int(cap)
        except ValueError:
            raise ValidationFailed("max_in_flight", "must be a whole number") from None
    # A checkbox sends "on" when ticked and nothing otherwise; anything else was not the form.
    ordered = form.get("ordered", "")
    if ordered not in ("", "on"):
        raise ValidationFailed("ordered", "must be ticked or not")
    if ordered:
        body["ordered"] = True
    # The selects' values go to the API's validation as they are (it names what it accepts).
    for choice in ("on_exhausted", "signing"):
        if form.get(choice, ""):
            body[choice] = form[choice]
    return body


ENDPOINT_FORM = (
    "business_id",
    "url",
    "event_types",
    "description",
    "headers",
    "max_in_flight",
    "ordered",
    "on_exhausted",
    "signing",
)


async def create_endpoint(request: web.Request) -> web.Response:
    store = request.app[STORE]
    form = {k: form_of(request).get(k, "") for k in ENDPOINT_FORM}
    try:
        fields = validation.endpoint_fields(
            _endpoint_body(form, session_of(request).business_id),
            known_types=await store.known_types(),
            rules=request.app[SETTINGS].targets,
            partial=False,
        )
        endpoint, secret = await store.create_endpoint(fields)
    except ValidationFailed as exc:  # the form's fields, or a cap above the gateway's bound
        return await _endpoints_page(request, status=422, form=form, error=exc.message)
    except Conflict as exc:
        if exc.code != "endpoint_limit":
            raise
        # The business has as many endpoints as it may have: say so on the form, keep it.
        return await _endpoints_page(request, status=409, form=form, error=exc.message)
    audit.note(request, endpoint["id"], business_id=endpoint["business_id"])
    return render(request, "secret.html", endpoint=endpoint, secret=secret, created=True)


async def endpoint_page(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request, request.match_info["id"])
    # After a skip: the ids it names, shown only when they are ids (the query is anyone's).
    skipped = {
        name: value
        for name in ("skipped", "next")
        if ID_RES["dlv"].match(value := request.query.get(name, ""))
    }
    return await _endpoint_view(
        request, endpoint, notice=request.query.get("notice", ""), skipped=skipped
    )


async def _endpoint_view(
    request: web.Request,
    endpoint: dict[str, Any],
    *,
    status: int = 200,
    notice: str = "",
    skipped: dict[str, str] | None = None,
    error: str = "",
) -> web.Response:
    """The endpoint page: health, settings, recent deliveries and, when it orders deliveries
    (or still holds keys blocked from when it did), its blocked ordering keys."""
    recovery = request.app[RECOVERY]
    recent, _ = await recovery.list_deliveries(
        DeliveryFilter(endpoint_id=endpoint["id"], business_id=endpoint["business_id"]),
        limit=RECENT_DELIVERIES,
        cursor=None,
    )
    blocked: dict[str, Any] = {"data": [], "next_cursor": None}
    if endpoint["ordered"] or endpoint["health"]["blocked_keys"]:
        blocked = await recovery.blocked_keys(endpoint["id"], limit=BLOCKED_SHOWN)
    await _with_deliveries(request, [endpoint])
    return render(
        request,
        "endpoint.html",
        status=status,
        endpoint=endpoint,
        chart=hourly_chart(endpoint["health"]["hourly"]),
        deliveries=recent,
        blocked=blocked["data"],
        blocked_more=blocked["next_cursor"] is not None,
        notice=notice,
        skipped=skipped or {},
        error=error,
    )


async def disable_endpoint(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request, request.match_info["id"])
    reason = form_of(request).get("reason", "").strip() or "disabled from the portal"
    if len(reason) > 500:
        raise ValidationFailed("reason", "must be at most 500 characters")
    await request.app[RECOVERY].disable(endpoint["id"], reason)
    return redirect(f"{PREFIX}/endpoints/{endpoint['id']}?notice=disabled")


async def enable_endpoint(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request, request.match_info["id"])
    await request.app[RECOVERY].enable(endpoint["id"])
    return redirect(f"{PREFIX}/endpoints/{endpoint['id']}?notice=enabled")


async def skip_ordering_key(request: web.Request) -> web.Response:
    """Moves a blocked (or still retried) ordering key past its head, as
    ``POST /v1/endpoints/{id}/ordering/keys/{key}/skip`` does; a key that nothing holds, or
    whose head has an attempt open right now, is said on the endpoint page."""
    endpoint = await _endpoint(request, request.match_info["id"])
    try:
        key = validation.ordering_key(form_of(request).get("key", ""), "key")
        result = await request.app[RECOVERY].skip_key(endpoint["id"], key)
    except (ValidationFailed, NotFound, Conflict) as exc:
        audit.note(request, detail=exc.code)
        return await _endpoint_view(request, endpoint, status=status_of(exc), error=exc.message)
    going = result["next_delivery_id"]
    audit.note(
        request,
        result["skipped_delivery_id"],
        *([going] if going else []),
        business_id=endpoint["business_id"],
    )
    shown = {"notice": "skipped", "skipped": result["skipped_delivery_id"]}
    if going:
        shown["next"] = going
    return redirect(f"{PREFIX}/endpoints/{endpoint['id']}?{urlencode(shown)}")


async def rotate_secret(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request, request.match_info["id"])
    updated, secret = await request.app[STORE].rotate_secret(endpoint["id"])
    grace = request.app[SETTINGS].rotation_grace
    return render(
        request, "secret.html", endpoint=updated, secret=secret, created=False, grace_s=grace
    )


async def send_test(request: web.Request) -> web.Response:
    endpoint = await _endpoint(request, request.match_info["id"])
    result = await request.app[RECOVERY].send_test(endpoint["id"])
    audit.note(request, result.event_id, *result.deliveries)
    return redirect(f"{PREFIX}/deliveries/{result.deliveries[0]}?notice=test")


# ---- deliveries --------------------------------------------------------------------------

DELIVERY_QUERY = ("status", "event_type", "endpoint_id", "business_id", "since", "until", "cursor")


async def deliveries(request: web.Request) -> web.Response:
    q = query_values(request.query, DELIVERY_QUERY)
    session = session_of(request)
    status = q.get("status")
    if status is not None and status not in STATUSES:
        raise ValidationFailed("status", f"must be one of {', '.join(STATUSES)}")
    if "event_type" in q:
        validation.event_type_name(q["event_type"], "event_type")
    business = session.business_id
    if business is None and "business_id" in q:
        business = validation.business_id(q["business_id"])
    endpoint_id = q.get("endpoint_id")
    if endpoint_id is not None:
        if not ID_RES["ep"].match(endpoint_id):
            raise ValidationFailed("endpoint_id", "is not an endpoint id")
        await _endpoint(request, endpoint_id)
    since_ms, until_ms = window(q.get("since"), q.get("until"), since_required=False)
    flt = DeliveryFilter(
        endpoint_id=endpoint_id,
        business_id=business,
        status=status,
        event_type=q.get("event_type"),
        since_ms=since_ms,
        until_ms=until_ms,
    )
    found, cursor = await request.app[RECOVERY].list_deliveries(
        flt, limit=PAGE_SIZE, cursor=q.get("cursor")
    )
    filters, older, newest = _paging(q, cursor)
    visible = await _visible_endpoints(request, business)
    return render(
        request,
        "deliveries.html",
        deliveries=found,
        filters=filters,
        statuses=STATUSES,
        endpoints=visible,
        urls={e["id"]: e["url"] for e in visible},
        older=older,
        newest=newest,
    )


def _paging(q: dict[str, str], cursor: str | None) -> tuple[dict[str, str], str, str]:
    """A listing page's filters (its query without the cursor) and the query strings of its
    "older" link (when there is a next page) and "newest" link (when this is not the first)."""
    filters = {k: v for k, v in q.items() if k != "cursor"}
    older = f"?{urlencode({**filters, 'cursor': cursor})}" if cursor else ""
    newest = f"?{urlencode(filters)}" if "cursor" in q else ""
    return filters, older, newest


def request_headers(
    event_id: str,
    timestamp: int,
    custom: dict[str, str],
    *,
    ordering: tuple[str, int] | None = None,
    signing: str = "hmac",
) -> list[tuple[str, str]]:
    """The headers an attempt sent, rebuilt with the worker's own ``build_headers``; the
    signature is not stored (nor are the secrets), so it is shown redacted, and custom header
    values (often the receiver's credentials) are shown masked."""
    built = build_headers(
        msg_id=event_id,
        timestamp=timestamp,
        body=b"",
        secrets=(),
        custom=masked(list(custom)),
        ordering=ordering,
    )
    built["webhook-signature"] = "v1a,…" if signing == "ed25519" else SIGNATURE_SHOWN
    return list(built.items())


async def delivery_page(request: web.Request) -> web.Response:
    delivery = await _delivery(request, request.match_info["id"])
    return await _delivery_view(request, delivery, notice=request.query.get("notice", ""))


def _replay_refusal(delivery: dict[str, Any], endpoint: dict[str, Any] | None) -> str:
    """Why the delivery cannot be replayed now ("" when it can): the Replay button shows it
    instead of leading to an error."""
    if delivery["status"] == "pending":
        return "It is still in progress: it can be replayed once it ends."
    if endpoint is None:
        return "Its endpoint was deleted: there is nowhere to replay it to."
    if endpoint["disabled"]:
        reason = endpoint["disabled_reason"] or "no reason given"
        return f"Its endpoint is disabled ({reason}): enable the endpoint first, then replay."
    return ""


def _latest_failed(newest_first: list[dict[str, Any]]) -> int | None:
    """Where the newest attempt that did not succeed, and got an answer, is in the list: that
    answer is what a developer needs first, so the page shows it unfolded."""
    for i, a in enumerate(newest_first):
        if a["outcome"] != "succeeded" and a["response_body"]:
            return i
    return None


async def _delivery_view(
    request: web.Request,
    delivery: dict[str, Any],
    *,
    status: int = 200,
    notice: str = "",
    error: str = "",
) -> web.Response:
    store = request.app[STORE]
    try:
        endpoint: dict[str, Any] | None = await store.get_endpoint(delivery["endpoint_id"])
    except NotFound:
        endpoint = None
    try:
        event: dict[str, Any] | None = await store.get_event(delivery["event_id"])
    except NotFound:
        event = None
    attempts = delivery["attempts"]
    newest_first = list(reversed(attempts))
    last_sent = attempts[-1]["webhook_timestamp"] if attempts else None
    headers = (
        request_headers(
            delivery["event_id"],
            last_sent,
            endpoint["headers"] if endpoint else {},
            ordering=(delivery["ordering_key"], delivery["sequence"])
            if delivery["sequence"]
            else None,
            signing=endpoint["signing"] if endpoint else "hmac",
        )
        if last_sent is not None
        else []
    )
    return render(
        request,
        "delivery.html",
        status=status,
        delivery=delivery,
        endpoint=endpoint,
        event=event,
        attempts=newest_first,
        unfolded=_latest_failed(newest_first),
        headers=headers,
        live=delivery["status"] == "pending",
        replay_refusal=_replay_refusal(delivery, endpoint),
        notice=notice,
        error=error,
    )


async def replay_delivery(request: web.Request) -> web.Response:
    delivery = await _delivery(request, request.match_info["id"])
    try:
        await request.app[RECOVERY].replay_delivery(delivery["id"])
    except Conflict as exc:  # disabled or deleted endpoint, or still pending: said on its page
        audit.note(request, detail=exc.code)
        current = await _delivery(request, delivery["id"])
        return await _delivery_view(request, current, status=409, error=exc.message)
    return redirect(f"{PREFIX}/deliveries/{delivery['id']}?notice=replayed")


# ---- recover: bulk replays ---------------------------------------------------------------

RECOVER_QUERY = ("endpoint_id", "since", "until", "status")


def _replay_status(value: str | None) -> str:
    status = value or "failed"
    if status not in ("failed", "all"):
        raise ValidationFailed("status", 'must be "failed" or "all"')
    return status


async def _recover_window(
    request: web.Request, values: dict[str, str]
) -> tuple[dict[str, Any], int, int, str]:
    endpoint_id = values.get("endpoint_id")
    if endpoint_id is None:
        raise ValidationFailed("endpoint_id", "choose an endpoint")
    if not ID_RES["ep"].match(endpoint_id):
        raise ValidationFailed("endpoint_id", "is not an endpoint id")
    endpoint = await _endpoint(request, endpoint_id)
    since_ms, until_ms = window(values.get("since"), values.get("until"), since_required=True)
    assert since_ms is not None
    until = until_ms if until_ms is not None else int(time.time() * 1000)
    return endpoint, since_ms, until, _replay_status(values.get("status"))


async def recover(request: web.Request) -> web.Response:
    q = query_values(request.query, RECOVER_QUERY)
    preview: dict[str, Any] | None = None
    if "endpoint_id" in q or "since" in q:
        endpoint, since_ms, until_ms, status = await _recover_window(request, q)
        result = await request.app[RECOVERY].start_replay(
            endpoint["id"],
            since_ms=since_ms,
            until_ms=until_ms,
            include_succeeded=status == "all",
            dry_run=True,
        )
        preview = {
            "endpoint": endpoint,
            "matched": result["matched"],
            "since": iso_ms(since_ms),
            "until": iso_ms(until_ms),
            "status": status,
        }
    return render(
        request,
        "recover.html",
        endpoints=await _visible_endpoints(request, None),
        values={"since": "24h", "status": "failed", **q},
        preview=preview,
    )


async def start_recovery(request: web.Request) -> web.Response:
    values = {k: v.strip() for k in RECOVER_QUERY if (v := form_of(request).get(k, "")).strip()}
    endpoint, since_ms, until_ms, status = await _recover_window(request, values)
    audit.note(request, endpoint["id"], business_id=endpoint["business_id"])
    result = await request.app[RECOVERY].start_replay(
        endpoint["id"],
        since_ms=since_ms,
        until_ms=until_ms,
        include_succeeded=status == "all",
        dry_run=False,
    )
    audit.note(request, result["replay_id"])
    return redirect(f"{PREFIX}/replays/{result['replay_id']}")


def progress_view(replay: dict[str, Any]) -> dict[str, Any]:
    """A replay's counters plus what the progress bar shows: ``done`` of ``total``."""
    done = replay["succeeded"] + replay["failed"] + replay["cancelled"]
    total = replay["matched"] if replay["state"] == "enqueuing" else replay["enqueued"]
    return {**replay, "done": done, "total": total}


async def replay_page(request: web.Request) -> web.Response:
    replay = progress_view(await _replay(request, request.match_info["id"]))
    return render(request, "replay.html", replay=replay)


async def replay_progress(request: web.Request) -> web.Response:
    replay = progress_view(await _replay(request, request.match_info["id"]))
    return web.json_response(replay)


# ---- events ------------------------------------------------------------------------------


EVENT_QUERY = ("type", "business_id", "since", "until", "cursor")


async def events(request: web.Request) -> web.Response:
    """Recent events, newest first, filtered by type, business (operators) and time; or, given
    an ``id``, that event's page. A merchant sees its own business's events only."""
    event_id = request.query.get("id", "").strip()
    if event_id:
        if not ID_RES["evt"].match(event_id):
            raise ValidationFailed("id", "is not an event id (evt_ and 26 characters)")
        await _event(request, event_id)
        return redirect(f"{PREFIX}/events/{event_id}")
    q = query_values(request.query, EVENT_QUERY)
    filters = {k: v for k, v in q.items() if k != "cursor"}
    try:
        flt = _event_filter(q, session_of(request))
        cursor = q.get("cursor")
        if cursor is not None:
            try:
                decode_cursor(cursor)
            except ValidationFailed:
                raise ValidationFailed("cursor", "is not a cursor this page made") from None
    except ValidationFailed as exc:
        # Said above the form, which keeps what was typed (escaped, like every value shown).
        return render(
            request,
            "events.html",
            status=422,
            events=[],
            filters=filters,
            statuses=STATUSES,
            older="",
            newest="",
            error=exc.message,
        )
    found, next_cursor = await request.app[RECOVERY].list_events(
        flt, limit=PAGE_SIZE, cursor=cursor
    )
    _, older, newest = _paging(q, next_cursor)
    return render(
        request,
        "events.html",
        events=found,
        filters=filters,
        statuses=STATUSES,
        older=older,
        newest=newest,
        error="",
    )


def _event_filter(q: dict[str, str], session: auth.Session) -> EventFilter:
    business = session.business_id
    if business is None and "business_id" in q:
        business = validation.business_id(q["business_id"])
    if "type" in q:
        validation.event_type_name(q["type"], "type")
    since_ms, until_ms = window(q.get("since"), q.get("until"), since_required=False)
    return EventFilter(
        business_id=business, event_type=q.get("type"), since_ms=since_ms, until_ms=until_ms
    )


async def event_page(request: web.Request) -> web.Response:
    event = await _event(request, request.match_info["id"])
    endpoints = await request.app[STORE].list_endpoints(event["business_id"])
    return render(request, "event.html", event=event, urls={e["id"]: e["url"] for e in endpoints})


# ---- activity: the audit log -------------------------------------------------------------

ACTIVITY_QUERY = ("action", "actor", "business_id", "since", "until", "cursor")
_ACTOR_RE = re.compile(ACTOR_FILTER)


async def activity(request: web.Request) -> web.Response:
    """Who changed what, newest first: a merchant sees its own business's entries only."""
    q = query_values(request.query, ACTIVITY_QUERY)
    session = session_of(request)
    action = q.get("action")
    if action is not None and action not in ACTION_FILTERS:
        raise ValidationFailed("action", "is not an action this log records")
    actor = q.get("actor")
    if actor is not None and not _ACTOR_RE.match(actor):
        raise ValidationFailed("actor", "must be an actor id: 1-64 of A-Z a-z 0-9 _")
    business = session.business_id
    if business is None and "business_id" in q:
        business = validation.business_id(q["business_id"])
    cursor = q.get("cursor")
    if cursor is not None and parse_stream_id(cursor) is None:
        raise ValidationFailed("cursor", "is not a cursor this page made")
    since_ms, until_ms = window(q.get("since"), q.get("until"), since_required=False)
    flt = AuditFilter(
        business_id=business, actor=actor, action=action, since_ms=since_ms, until_ms=until_ms
    )
    found, next_cursor = await request.app[AUDIT].page(flt, limit=PAGE_SIZE, cursor=cursor)
    filters, older, newest = _paging(q, next_cursor)
    return render(
        request,
        "activity.html",
        entries=found,
        filters=filters,
        actions=ACTION_FILTERS,
        older=older,
        newest=newest,
    )
