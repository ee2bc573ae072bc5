"""Frozen data types that cross layers: what the web layer hands the store, what the store
hands the worker. No I/O; no HTTP."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class EventIn:
    business_id: str
    type: str
    timestamp: str
    data: dict[str, Any]
    # Events with the same key reach each ordered endpoint in ingest order (README, Ordering).
    ordering_key: str | None = None


@dataclasses.dataclass(frozen=True)
class EndpointFields:
    """The writable fields of an endpoint; ``None`` means "not given" in a PATCH."""

    business_id: str | None = None
    url: str | None = None
    event_types: tuple[str, ...] | None = None
    description: str | None = None
    headers: dict[str, str] | None = None
    max_in_flight: int | None = None
    ordered: bool | None = None
    on_exhausted: str | None = None  # block | skip
    # hmac | ed25519 (``signing_keys.SCHEMES``): chosen at creation, never changed; None: hmac.
    signing: str | None = None


@dataclasses.dataclass(frozen=True)
class PreparedEvent:
    event: EventIn
    idempotency_key: str | None
    fingerprint: str
    only_endpoint: str = ""  # deliver to this endpoint alone (test events)
    # The delivered body, when it is encoded already (``store.encoded``: a large batch encodes
    # each event as soon as it is checked and drops its parsed data); empty: the store encodes.
    body: bytes = b""


@dataclasses.dataclass(frozen=True)
class Ingested:
    event_id: str
    deliveries: tuple[str, ...]
    duplicate: bool


@dataclasses.dataclass(frozen=True)
class Claim:
    """What the worker needs for one attempt it claimed (an attempt not to make is ended by
    the claim itself, in Redis, and never reaches the worker)."""

    body: bytes
    url: str
    # The keys that sign now, in clear, newest first: ``whsec_`` secrets (``v1`` signatures)
    # or, for an ed25519 endpoint, ``whsk_`` signing keys (``v1a``); the prefix says which.
    secrets: tuple[str, ...]
    headers: dict[str, str]
    attempt: int
    event_id: str
    endpoint_id: str
    chain: int  # 0 for the first attempt chain, n for the nth replay
    event_type: str
    # The delivery's ordering key and sequence number on an ordered endpoint; "" and 0 else.
    ordering_key: str = ""
    sequence: int = 0
    # Set when the endpoint's secrets cannot be opened (a wrong HOOKGATE_SECRET_KEY): the
    # attempt is recorded as failed and retried, so fixing the key lets it through.
    secret_error: str | None = None


@dataclasses.dataclass(frozen=True)
class Finished:
    """One attempt's outcome, for the FINISH script."""

    delivery_id: str
    job_id: str
    record: dict[str, Any]
    outcome: str  # succeeded | retry | failed | gone
    next_at_ms: int
    latency_bucket: str
    latency_s: float


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who did something, as the audit log records it and as access checks see it.

    ``kind`` is ``token`` (the bootstrap HOOKGATE_ADMIN_TOKEN), ``key`` (an API key: ``id`` is
    its id, ``name`` its name), ``portal`` (a portal session: ``id`` is a non-secret session
    reference, ``business_id`` its business or None for an operator) or ``system`` (hookgate
    itself, e.g. an auto-disable). ``scopes`` are what it may do (``admin`` covers all);
    ``business_id`` set means it sees and changes only that business. ``client`` is the
    address the request came from, empty for ``system``.
    """

    kind: str
    id: str
    name: str = ""
    business_id: str | None = None
    scopes: frozenset[str] = frozenset({"admin"})
    client: str = ""
