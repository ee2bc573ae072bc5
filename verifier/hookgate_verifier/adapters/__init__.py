"""Framework integrations. Each module imports its framework, so import only the one you use:

* `hookgate_verifier.adapters.aiohttp`   - `verified` decorator, `verification_middleware`
* `hookgate_verifier.adapters.starlette` - `verified` decorator, `WebhookEvent` FastAPI dependency
* `hookgate_verifier.adapters.flask`     - `verified` decorator

All answer a failed verification with the status of the error (400 or 401; 503 when the replay
store is down) and the body `{"error": {"code": ..., "message": ...}}`.
"""

from __future__ import annotations

from typing import Any

from ..errors import VerificationError
from ..headers import read_webhook_headers

__all__ = ["error_body", "webhook_id_of"]


def error_body(exc: VerificationError) -> dict[str, Any]:
    """The JSON body every adapter answers a failed verification with."""
    return {"error": {"code": exc.code, "message": exc.message}}


def webhook_id_of(headers: Any) -> str | None:
    """The webhook-id of a request that passed verification (case-insensitive lookup)."""
    try:
        return read_webhook_headers(headers)[0]
    except VerificationError:
        return None
