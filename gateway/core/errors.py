"""hookgate's domain errors: what went wrong, never how HTTP says it.

HookgateError
├── ConfigError            a bad environment value; stops start-up
└── DomainError            code, message, details?: the web layer answers each as
    │                      {"error": {"code", "message", "details"?}} (``gateway/web/errors.py``)
    ├── ValidationFailed   a field is missing, of the wrong type or not allowed
    ├── NotFound           no such id
    ├── Conflict           the state forbids it now (a running replay, a disabled endpoint,
    │                      a business with as many endpoints as it may have)
    ├── LimitExceeded      the request asks for more than a configured bound allows (the
    │                      deliveries one batch may create); a smaller request may pass
    └── StoreUnavailable   the store cannot make a write safe now; retry later
        ├── CellUnavailable  the cell a business or id lives in does not answer
        └── BusinessMoved    the business moved to another cell (the gateway sends the
                             event there; a client sees it only if that fails too)
"""

from __future__ import annotations

from typing import Any


class HookgateError(Exception):
    """Base of every error hookgate raises on purpose."""


class ConfigError(HookgateError):
    """An environment variable holds a value hookgate cannot use."""


class DomainError(HookgateError):
    """An operation refused for a reason its caller can act on; ``code`` is stable."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ValidationFailed(DomainError):
    code = "validation_failed"

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}", code=code, details={"field": field})
        self.field = field
        self.reason = message

    def within(self, prefix: str) -> ValidationFailed:
        """The same failure of the same field inside ``prefix`` (``"events[3]."``)."""
        return ValidationFailed(prefix + self.field, self.reason, code=self.code)


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class LimitExceeded(DomainError):
    code = "limit_exceeded"


class StoreUnavailable(DomainError):
    """The store cannot take or keep a write now (no primary, too few replicas, a Redis that
    would evict it); the caller may retry the same request later."""

    code = "store_unavailable"


class CellUnavailable(StoreUnavailable):
    """The cell (one Redis group) a business or an id lives in cannot be reached now; every
    other cell's businesses are served as usual."""

    def __init__(self, cell: str, reason: str) -> None:
        super().__init__(
            f"cell {cell!r}, where this lives, is unavailable now ({reason}); retry later",
            code="cell_unavailable",
            details={"cell": cell},
        )
        self.cell = cell


class BusinessMoved(StoreUnavailable):
    """Ingest in a cell the business moved away from: nothing was stored there."""

    def __init__(self, business_id: str, cell: str) -> None:
        super().__init__(
            "the business is moving to another cell; send the request again",
            code="business_moving",
            details={"cell": cell},
        )
        self.business_id = business_id
        self.cell = cell
