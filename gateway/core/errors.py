"""The gateway's exception tree; handlers map every ``ApiError`` to one JSON shape.

HookgateError
├── ConfigError            a bad environment value; stops start-up
└── ApiError               answered as {"error": {"code", "message", "details"?}}
    ├── BadRequest          400
    ├── Unauthorized        401
    ├── NotFound            404
    ├── RequestTimeout      408
    ├── Conflict            409
    ├── PayloadTooLarge     413
    └── ValidationFailed    422
"""

from __future__ import annotations

from typing import Any


class HookgateError(Exception):
    """Base of every error hookgate raises on purpose."""


class ConfigError(HookgateError):
    """An environment variable holds a value hookgate cannot use."""


class ApiError(HookgateError):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class RequestTimeout(ApiError):
    """The client did not send its whole body in time; the connection is closed after."""

    status = 408
    code = "request_timeout"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}", code=code, details={"field": field})
        self.field = field
