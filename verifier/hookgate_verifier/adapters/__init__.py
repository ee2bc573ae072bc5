"""Framework integrations. Each module imports its framework, so import only the one you use:

* `hookgate_verifier.adapters.aiohttp`   - `verified` decorator, `verification_middleware`
* `hookgate_verifier.adapters.starlette` - `verified` decorator, `WebhookEvent` FastAPI dependency
* `hookgate_verifier.adapters.flask`     - `verified` decorator

All answer a failed verification with the status of the error (400 or 401; 503 when the replay
store is down) and the body `{"error": {"code": ..., "message": ...}}`.

A seen `webhook-id` is the receiver's idempotency key: hookgate sends the same id on every
retry and on `hookgate replay`. A correctly signed, fresh request whose id was already
handled is answered `200 {"duplicate": true}` (by the FastAPI dependency, in FastAPI's shape:
`200 {"detail": {"duplicate": true}}`) without calling the handler again (the low-level
`Verifier.verify` raises `Replayed` for it). The id is claimed atomically before
the handler runs (one `SET NX` in Redis, a locked insert in memory) so two concurrent copies
cannot both run it, and released when the handler raises or answers non-2xx, so the
sender's retry reaches the handler.
"""

from __future__ import annotations

from typing import Any

from ..errors import VerificationError
from ..headers import read_webhook_headers

__all__ = ["DUPLICATE_BODY", "DUPLICATE_STATUS", "error_body", "handler_succeeded", "webhook_id_of"]


DUPLICATE_STATUS = 200
DUPLICATE_BODY: dict[str, Any] = {"duplicate": True}
"""What the adapters answer a signed re-send of an already handled webhook-id with."""


def handler_succeeded(status: int) -> bool:
    """Whether a handler's answer counts as handled; anything else releases the id."""
    return 200 <= status < 300


def error_body(exc: VerificationError) -> dict[str, Any]:
    """The JSON body every adapter answers a failed verification with."""
    return {"error": {"code": exc.code, "message": exc.message}}


def webhook_id_of(headers: Any) -> str | None:
    """The webhook-id of a request that passed verification (case-insensitive lookup)."""
    try:
        return read_webhook_headers(headers)[0]
    except VerificationError:
        return None
