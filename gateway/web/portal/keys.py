"""The portal's API keys page: operators list, create (the key is shown once) and revoke keys,
through the same store and validation as ``/v1/api-keys``. Merchants' sessions get 404."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.core.clock import iso_ms, now_ms
from gateway.core.durations import parse_time
from gateway.core.errors import ValidationFailed
from gateway.core.scopes import SCOPES
from gateway.web import audit, bodies, schemas, validation
from gateway.web.context import API_KEYS
from gateway.web.requests import path_id

from .site import PREFIX, form_of, redirect, render, session_of

PAGE = PREFIX + "/api-keys"
FORM = ("name", "business_id", "expires")


def _operator_only(request: web.Request) -> None:
    if not session_of(request).is_operator:
        raise web.HTTPNotFound()  # as if there were no such page


async def _page(
    request: web.Request, *, status: int = 200, form: dict[str, Any] | None = None, error: str = ""
) -> web.Response:
    now = now_ms()
    listed = [key.view(now) for key in await request.app[API_KEYS].list()]
    return render(
        request,
        "api_keys.html",
        status=status,
        keys=list(reversed(listed)),  # newest first
        scopes=SCOPES,
        form=form or {"scopes": []},
        error=error,
        notice=request.query.get("notice", ""),
    )


async def api_keys_page(request: web.Request) -> web.Response:
    _operator_only(request)
    return await _page(request)


def _expiry(value: str) -> str | None:
    """The form's expiry, ``30d`` (from now) or an RFC 3339 time, as the API's ``expires_at``."""
    if not value:
        return None
    try:
        seconds = parse_time(value, time.time(), ahead=True)
        return iso_ms(int(seconds * 1000))
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed(
            "expires", f"{value!r} is neither a duration like 30d nor an RFC 3339 time"
        ) from None


async def create_api_key(request: web.Request) -> web.Response:
    _operator_only(request)
    posted = form_of(request)
    form: dict[str, Any] = {k: posted.get(k, "").strip() for k in FORM}
    form["scopes"] = posted.getall("scope", [])
    try:
        body = bodies.convert(
            {
                "name": form["name"],
                "scopes": form["scopes"],
                "business_id": form["business_id"] or None,
                "expires_at": _expiry(form["expires"]),
            },
            schemas.ApiKeyIn,
        )
        scopes, expires_at_ms = validation.api_key_of(body)
    except ValidationFailed as exc:
        return await _page(request, status=422, form=form, error=exc.message)
    key, token = await request.app[API_KEYS].create(
        name=body.name, scopes=scopes, business_id=body.business_id, expires_at_ms=expires_at_ms
    )
    audit.note(request, key.id, business_id=key.business_id)
    return render(request, "api_key_created.html", key=key.view(now_ms()), token=token)


async def revoke_api_key(request: web.Request) -> web.Response:
    _operator_only(request)
    await request.app[API_KEYS].revoke(path_id(request, "key"))
    return redirect(f"{PAGE}?notice=revoked")
