"""Flask integration: a view decorator.

    from hookgate_verifier.adapters.flask import verified

    @app.post("/webhooks")
    @verified(verifier)
    def webhook(event: dict[str, Any]) -> ResponseReturnValue: ...

The view receives the parsed event as the keyword argument `event`, next to its URL
parameters. Use a synchronous replay store (MemorySeenStore, RedisSeenStore) with Flask.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import current_app, jsonify, request
from flask.typing import ResponseReturnValue

from ..errors import Replayed, VerificationError
from ..verifier import Verifier
from . import DUPLICATE_BODY, DUPLICATE_STATUS, error_body, handler_succeeded, webhook_id_of

__all__ = ["verified"]

View = Callable[..., ResponseReturnValue]


def verified(verifier: Verifier) -> Callable[[View], View]:
    """Decorate `view(event=..., **url_params)` into a Flask view that verifies first."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def verifying_view(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            body = request.get_data(cache=True)
            try:
                event = verifier.verify(body, request.headers)
            except Replayed:
                # Signed and fresh, and its id already handled: a re-send, not an attack.
                return jsonify(DUPLICATE_BODY), DUPLICATE_STATUS
            except VerificationError as exc:
                return jsonify(error_body(exc)), exc.status
            try:
                response = current_app.make_response(view(*args, event=event, **kwargs))
            except BaseException:
                _forget(verifier)
                raise
            if not handler_succeeded(response.status_code):
                _forget(verifier)
            return response

        return verifying_view

    return decorate


def _forget(verifier: Verifier) -> None:
    # The id was claimed before the view ran; a failed view means the sender will retry
    # with the same id, and that retry must reach the view again.
    msg_id = webhook_id_of(request.headers)
    if msg_id is not None:
        verifier.forget(msg_id)
