"""Listen sessions (``hookgate listen``): what the gateway, the worker and the command line
agree on. No I/O.

A listen session is an endpoint of kind ``listen`` whose URL is ``listen://<session name>``.
Its deliveries are made like any endpoint's (signed, recorded, retried), one at a time and in
ingest order under one implicit ordering key, but instead of an HTTP request the worker hands
each attempt to whichever gateway holds the session's WebSocket (``gateway/store/listen.py``),
which sends it to the ``hookgate listen`` process on a developer's machine as a ``Delivery``
message; that process forwards it to its local receiver and answers with an ``Outcome``.

Messages on the WebSocket are JSON objects told apart by their ``type``: ``ready`` (the
gateway reads the session's deliveries now), ``delivery``, ``replaced`` (a newer connection
took the session over: this one is closed) from the gateway; ``outcome`` from the client.
"""

from __future__ import annotations

import re
from typing import Annotated

from msgspec import Meta, Struct

from gateway.core import formats

KIND = "listen"  # the endpoint's ``kind``; every other endpoint is ``http``
HTTP_KIND = "http"
SCHEME = "listen://"
# The one ordering key every delivery of a session is ordered by, whatever key its event has:
# a session's deliveries go one at a time, in ingest order.
ORDERING_KEY = "~session"
# A session with no connection for this long is deleted (HOOKGATE_LISTEN_SESSION_TTL).
SESSION_TTL = 24 * 3600.0
# An attempt of a session no client is connected to looks again after 1-3 times this (ms); a
# client that connects starts the waiting attempt at once.
OFFLINE_DEFER_MS = 5000
RESPONSE_LIMIT = 4096  # characters of the receiver's answer an outcome carries
ERROR_LIMIT = 500  # characters of an outcome's error

_NAME_RE = re.compile(formats.LISTEN_SESSION)
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")


def session_url(name: str) -> str:
    return SCHEME + name


def is_listen_url(url: str) -> bool:
    return url.startswith(SCHEME)


def valid_name(name: str) -> bool:
    return _NAME_RE.match(name) is not None


def default_session(business_id: str, user: str) -> str:
    """The session ``hookgate listen`` uses unless told another: one per business and user
    of the machine, so running it again resumes the same session (``alice-bus_demo``)."""
    text = _NOT_NAME.sub("-", f"{user}-{business_id}").strip("-._") or "listen"
    return text[:64].rstrip("-._") or "listen"


# ---- the WebSocket's messages ----------------------------------------------------------------


class Ready(Struct, tag="ready", tag_field="type", kw_only=True):
    """The gateway holds the session and sends its deliveries from now on."""

    session: str
    endpoint_id: str


class Delivery(Struct, tag="delivery", tag_field="type", kw_only=True):
    """One attempt to forward: ``body`` (UTF-8 text, the exact bytes signed) with exactly
    ``headers``; the outcome is wanted within ``timeout`` seconds."""

    job_id: str
    delivery_id: str
    event_id: str
    event_type: str
    attempt: int
    headers: dict[str, str]
    body: str
    timeout: float


class Replaced(Struct, tag="replaced", tag_field="type", kw_only=True):
    """A newer connection holds the session now; the gateway closes this one."""


JobId = Annotated[str, Meta(min_length=1, max_length=200)]
StatusCode = Annotated[int, Meta(ge=100, le=599)]
LatencyMs = Annotated[float, Meta(ge=0, le=86_400_000)]


class Outcome(Struct, tag="outcome", tag_field="type", kw_only=True, forbid_unknown_fields=True):
    """What became of a ``Delivery``: the receiver's status code and the start of its answer,
    or (``status`` null) why there was no answer: ``connection refused at localhost:3000``."""

    job_id: JobId
    status: StatusCode | None
    latency_ms: LatencyMs
    body: Annotated[str, Meta(max_length=RESPONSE_LIMIT)] = ""
    error: Annotated[str, Meta(max_length=ERROR_LIMIT)] | None = None


ToClient = Ready | Delivery | Replaced
