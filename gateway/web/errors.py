"""The one JSON error shape, and the one place that turns errors into HTTP answers.

Domain errors (``gateway.core.errors``) carry no status: ``STATUS`` maps each class to one
here. The errors below exist only at the HTTP boundary (a body too large, too slow, not JSON,
a missing token, a credential without the scope a route needs). ``error_body`` is the only
builder of the envelope ``{"error": {"code", "message", "details"?}}`` (``schemas.Error``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from redis.exceptions import RedisError

from gateway.core.errors import (
    Conflict,
    DomainError,
    LimitExceeded,
    NotFound,
    StoreUnavailable,
    ValidationFailed,
)
from gateway.core.logs import describe_error, error_fields
from gateway.web.schemas import Error, ErrorDetail

log = structlog.get_logger("hookgate.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(DomainError):
    """The request cannot be read at all (not JSON, not UTF-8)."""

    code = "bad_request"


class Unauthorized(DomainError):
    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this: its key lacks the route's scope
    (``details.required_scope``) or it named a business it does not act for
    (``details.field``)."""

    code = "forbidden"


class RequestTimeout(DomainError):
    """The client did not send its whole body in time; the connection is closed after."""

    code = "request_timeout"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class Busy(DomainError):
    """The gateway is reading and handling as many large bodies as it may at once
    (``budget.BodyBudget``); the same request may pass in a moment (503 with Retry-After)."""

    code = "busy"


class UpgradeRequired(DomainError):
    """A WebSocket route asked for without a WebSocket upgrade."""

    code = "upgrade_required"


STATUS: dict[type[DomainError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    RequestTimeout: 408,
    Conflict: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    UpgradeRequired: 426,
    LimitExceeded: 422,
    StoreUnavailable: 503,
    Busy: 503,
}

# Seconds a client should wait before sending a refused write again (a failover takes a few).
RETRY_AFTER = "1"

# Codes for aiohttp's own HTTP errors (no route, wrong method, …).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def status_of(exc: DomainError) -> int:
    """The HTTP status a domain error is answered with (400 when no class of it is mapped)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_detail(code: str, message: str, details: Any = None) -> ErrorDetail:
    return ErrorDetail(
        code=code, message=message, details=msgspec.UNSET if details is None else details
    )


def error_body(code: str, message: str, details: Any = None) -> Error:
    return Error(error=error_detail(code, message, details))


def body_of(exc: DomainError) -> Error:
    return error_body(exc.code, exc.message, exc.details)


def json_response(data: Any, status: int = 200) -> web.Response:
    """``data`` (a Struct from ``schemas``, or plain JSON values) as a JSON answer."""
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return json_response(error_body(code, message, details), status=status)


def domain_error_response(exc: DomainError) -> web.Response:
    status = status_of(exc)
    response = json_response(body_of(exc), status=status)
    if status in (408, 413):
        response.force_close()  # the rest of the body is never read: drop the connection
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="hookgate"'
    if status == 426:
        response.headers["Upgrade"] = "websocket"
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER
    return response


def http_error_response(exc: web.HTTPException) -> web.Response:
    response = error_response(exc.status, HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    if exc.status == 405 and "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def client_aborted(request: web.Request, exc: BaseException) -> bool:
    """Whether ``exc`` is the client going away mid-request: aiohttp fails a body read with
    ``ConnectionResetError`` once the connection is lost, and a write with its
    ``ClientConnectionResetError`` (a ``ConnectionResetError`` too). The same error while the
    connection is still open is a fault of ours, not an abort."""
    if not isinstance(exc, ConnectionError):
        return False
    transport = request.transport
    return transport is None or transport.is_closing()


def client_abort_response(request: web.Request, exc: BaseException) -> web.Response:
    """A client that hung up is routine (a timeout or a crash on its side), not an error of
    the gateway: one info line, no traceback, and an answer that is never sent."""
    log.info(
        "hookgate.api.client_aborted",
        path=request.path,
        method=request.method,
        error=describe_error(exc),
    )
    response = error_response(400, "client_aborted", "the client closed the connection")
    response.force_close()
    return response


def unexpected_error_response(request: web.Request, exc: Exception) -> web.Response:
    if isinstance(exc, RedisError):
        # Never str(exc): a pipeline's error quotes the whole command, bodies and all.
        log.error("hookgate.api.redis_unavailable", **error_fields(exc), path=request.path)
        response = error_response(503, "store_unavailable", "the event store is unavailable; retry")
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    if client_aborted(request, exc):
        return client_abort_response(request, exc)
    if isinstance(exc, BadHttpMessage):  # a body aiohttp cannot parse (broken chunking, …)
        log.info("hookgate.api.bad_body", path=request.path, error=describe_error(exc))
        response = error_response(400, "bad_request", "the request body is malformed")
        response.force_close()
        return response
    log.exception("hookgate.api.unhandled", path=request.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def api_middleware(admit: Callable[[web.Request], Awaitable[None]]) -> Any:
    """Access control of /v1/* (``admit``: who is asking, and may they; it raises a
    ``DomainError`` when not) and the one JSON error shape, in one middleware (each middleware
    layer costs every request a little)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if request.path.startswith("/v1/"):
                await admit(request)
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and other non-errors pass through
            return http_error_response(exc)
        except DomainError as exc:
            return domain_error_response(exc)
        except Exception as exc:
            return unexpected_error_response(request, exc)

    return middleware
