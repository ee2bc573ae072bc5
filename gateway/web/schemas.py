"""Every JSON body of the API as a msgspec Struct: the one definition of what each route reads
and answers.

Requests are decoded straight into their Struct (``bodies.py``), so the types, patterns and
lengths below are enforced, not only documented; what a schema cannot say (an SSRF-safe URL, a
known event type, …) is checked by ``validation.py``. Answers are converted to their Struct
before they are encoded, and answer Structs forbid unknown fields too: a field a store view
gains without a schema here fails loudly instead of reaching clients undocumented. The OpenAPI
document is generated from these types (``openapi.py``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from gateway.core import formats
from gateway.core.audit import ACTOR_FILTER, STREAM_ID, ActionFilter, ActorKind
from gateway.core.audit import Outcome as AuditOutcome
from gateway.core.catalog import RESERVED_FAMILY
from gateway.core.durations import DURATION_PATTERN
from gateway.core.headers import MASK, RESERVED_HEADERS, RESERVED_PREFIXES
from gateway.core.limits import MAX_DEPTH
from gateway.core.scopes import SCOPES, Scope
from gateway.core.settings import IN_FLIGHT_CEILING
from gateway.core.signing_keys import PUBLIC_KEY_PREFIX, Scheme
from worker.retry import Outcome

# ---- limits ------------------------------------------------------------------------------

# Bytes of a request body (``requests.read_body``); each item of a batch is held to the
# single event's limit as well, so the batch route is no way around it.
EVENT_BODY_LIMIT = 256 * 1024
BATCH_BODY_LIMIT = 16 * 1024 * 1024
JSON_BODY_LIMIT = 64 * 1024  # endpoints, event types
BATCH_MAX_EVENTS = 1000
MAX_TYPE_LENGTH = 128
MAX_TIMESTAMP_LENGTH = 40
MAX_URL_LENGTH = 2048
MAX_EVENT_TYPES = 100
MAX_CUSTOM_HEADERS = 20
MAX_HEADER_VALUE = 4096
MAX_DESCRIPTION = 1024
# The schema states the ceiling; a deployment's own bound (HOOKGATE_MAX_IN_FLIGHT, 100 unless
# set) is checked where endpoints are written, with a 422 naming it.
MAX_IN_FLIGHT = IN_FLIGHT_CEILING
MAX_REASON = 500
MAX_PAGE = 500
DEFAULT_PAGE = 50


def _any_spelling(name: str) -> str:
    """A pattern for a header name (letters, digits, hyphens) in any letter case and with
    ``_`` for any ``-``, as ``headers.normal`` compares names: ECMA-262 patterns have no inline
    ``(?i)``, and ``\\-`` outside a class is an error in their Unicode mode."""
    return "".join(
        f"[{c}{c.upper()}]" if c.isalpha() else "[-_]" if c == "-" else c for c in name.lower()
    )


# The custom header names that are refused: hookgate's own, the framing and hop-by-hop ones
# (``gateway.core.headers``), in any spelling that reaches receivers as one of them.
_RESERVED_HEADER = (
    f"^((?:{'|'.join(_any_spelling(h) for h in sorted(RESERVED_HEADERS))})$"
    f"|{'|'.join(_any_spelling(p) for p in RESERVED_PREFIXES)})"
)
_RESERVED_TYPE = f"^{re.escape(RESERVED_FAMILY)}\\."
# The scheme only: the rest of a URL's rules (a host, no credentials, no #fragment, a valid
# port, the address policy) are more than a pattern can say; validation.url checks them.
_HTTP_URL = "^[Hh][Tt][Tt][Pp][Ss]?://"
_CURSOR = formats.whole("[A-Za-z0-9_-]+")
# An ed25519 public key as hookgate-verifier reads it: base64 of its 32 raw bytes.
_PUBLIC_KEY = formats.whole(PUBLIC_KEY_PREFIX + "[A-Za-z0-9+/]{43}=")
_TIME_SPEC = {
    "anyOf": [{"pattern": DURATION_PATTERN}, {"format": "date-time"}],
    "examples": ["2h", "2026-11-20T13:10:00Z"],
}

# Every pattern below in words, for error messages ("<field>: must be <words>").
WORDS = {
    **formats.WORDS,
    _HTTP_URL: "an absolute http:// or https:// URL",
    DURATION_PATTERN: "a duration like 30m, 2h or 1d",
    _CURSOR: "a next_cursor this API returned",
    STREAM_ID: "a next_cursor this API returned",
    ACTOR_FILTER: "an actor id: 1-64 of A-Z a-z 0-9 _",
    _PUBLIC_KEY: "whpk_ and the base64 of a 32-byte ed25519 public key",
}

# ---- field types -------------------------------------------------------------------------

BusinessId = Annotated[
    str, Meta(pattern=formats.BUSINESS_ID, description="the merchant", examples=["bus_1"])
]
EventType = Annotated[
    str,
    Meta(pattern=formats.EVENT_TYPE, max_length=MAX_TYPE_LENGTH, examples=["payment.succeeded"]),
]
# A type the billing core may send or register: not one of hookgate's own (checked in code,
# answered with the code ``reserved``).
OwnEventType = Annotated[
    str,
    Meta(
        pattern=formats.EVENT_TYPE,
        max_length=MAX_TYPE_LENGTH,
        examples=["payment.succeeded"],
        extra_json_schema={"not": {"pattern": _RESERVED_TYPE}},
        description=f"dot-delimited names; the {RESERVED_FAMILY}.* family is reserved",
    ),
]
Subscription = Annotated[
    str,
    Meta(
        pattern=formats.SUBSCRIPTION,
        max_length=MAX_TYPE_LENGTH,
        examples=["payment.succeeded", "payment.*"],
    ),
]
IdempotencyKey = Annotated[str, Meta(pattern=formats.IDEMPOTENCY_KEY, examples=["order-42"])]
OrderingKey = Annotated[
    str,
    Meta(
        pattern=formats.ORDERING_KEY,
        description="events with the same key reach each ordered endpoint in the order they "
        "were accepted, one at a time (README, Ordering); e.g. the subscription's id",
        examples=["sub_9KQ2"],
    ),
]
OnExhausted = Annotated[
    Literal["block", "skip"],
    Meta(
        description="when the first of a key's waiting deliveries fails for good: block (the "
        "key waits for an operator's replay or skip) or skip (the key goes on without it)"
    ),
]
Signing = Annotated[
    Scheme,
    Meta(
        description="how deliveries are signed, chosen at creation for good: hmac (v1, "
        "HMAC-SHA256 under the whsec_ secret shown once) or ed25519 (v1a, Standard Webhooks' "
        "asymmetric signatures: receivers verify with the whpk_ public key every answer shows; "
        "the private key is never shown)"
    ),
]
PublicKey = Annotated[str, Meta(pattern=_PUBLIC_KEY, examples=["whpk_" + "A" * 43 + "="])]
RFC3339 = Annotated[
    str,
    Meta(
        max_length=MAX_TIMESTAMP_LENGTH,
        extra_json_schema={"format": "date-time"},
        examples=["2026-11-20T13:10:00Z"],
    ),
]
Url = Annotated[
    str,
    Meta(
        pattern=_HTTP_URL,
        max_length=MAX_URL_LENGTH,
        extra_json_schema={"format": "uri"},
        examples=["https://merchant.example/hooks"],
    ),
]
# A header's name and value rules are stated here for the document only: msgspec would refuse
# a bad one as "headers" alone, and validation.custom_headers refuses it naming the header
# (``headers.<Name>``), with the rules JSON Schema cannot state (two names that are one header).
HeaderName = Annotated[
    str,
    Meta(
        extra_json_schema={
            "pattern": formats.HEADER_NAME,
            "not": {"pattern": _RESERVED_HEADER},
        }
    ),
]
# Decoded as any JSON value, so that one of another type is refused naming its header too.
_HEADER_VALUE = {"type": "string", "pattern": formats.HEADER_VALUE, "maxLength": MAX_HEADER_VALUE}
Headers = Annotated[
    dict[HeaderName, Any],
    Meta(
        max_length=MAX_CUSTOM_HEADERS,
        extra_json_schema={"additionalProperties": _HEADER_VALUE},
        description="sent with every delivery, exactly as given. Names are RFC 9110 tokens; "
        "two names that differ only in letter case or in _ for - are one header (receivers "
        "read them alike) and are refused, and so is any spelling of content-type, host, "
        "webhook-*, the framing and hop-by-hop headers and the others hookgate or HTTP sets. "
        "Values are printable ASCII, spaces and tabs only between visible characters. Values "
        f'are stored encrypted and shown masked ("{MASK}") after creation; in a PATCH, '
        "headers replace the whole set ({} removes them all) and a masked value is refused: "
        "send every value again",
        examples=[{"X-Tenant": "t1", "Authorization": "Bearer 0123456789abcdef"}],
    ),
]
# What every answer after creation shows: the names, each value masked.
MaskedHeaders = Annotated[
    dict[str, str],
    Meta(
        description=f'custom header names, each value masked as "{MASK}": values are '
        "write-only (the POST /v1/endpoints answer shows them once, as given)",
        examples=[{"X-Tenant": MASK}],
    ),
]
Subscriptions = Annotated[
    list[Subscription],
    Meta(
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description="exact names or family.* patterns; absent = every type",
    ),
]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION)]
# A number that is a multiple of 1: JSON Schema's integer takes 3.0 as well as 3, msgspec's int
# only 3, and a JSON encoder may write either.
InFlight = Annotated[
    float,
    Meta(
        ge=1,
        le=MAX_IN_FLIGHT,
        multiple_of=1,
        description="attempts open at once (default 10); at most HOOKGATE_MAX_IN_FLIGHT "
        "(100 unless the gateway sets another bound)",
    ),
]
TimeSpec = Annotated[
    str,
    Meta(
        description="RFC 3339 time or a duration ago (2h)",
        extra_json_schema=_TIME_SPEC,
    ),
]
Duration = Annotated[str, Meta(pattern=DURATION_PATTERN)]
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"})]
EventId = Annotated[str, Meta(pattern=formats.IDS["evt"])]
EndpointId = Annotated[str, Meta(pattern=formats.IDS["ep"])]
DeliveryId = Annotated[str, Meta(pattern=formats.IDS["dlv"])]
ReplayId = Annotated[str, Meta(pattern=formats.IDS["rpl"])]
ApiKeyId = Annotated[str, Meta(pattern=formats.IDS["key"])]
EndpointKind = Literal["http", "listen"]
DeliveryStatus = Literal["pending", "succeeded", "failed", "cancelled", "skipped"]  # STATUSES
ReplayFilter = Literal["failed", "all"]


class RequestBody(Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: unknown fields are refused."""

    # Fields a client may try that this body refuses, and what to say instead of "is not a
    # known field".
    refused: ClassVar[dict[str, str]] = {}


class Answer(Struct, forbid_unknown_fields=True, kw_only=True):
    """An answer body: converting a view with a field not declared here fails."""


# ---- requests ----------------------------------------------------------------------------


class EventIn(RequestBody):
    """An event as the billing core posts it: at most 256 KB of JSON."""

    refused: ClassVar[dict[str, str]] = {"idempotency_key": "use the Idempotency-Key header here"}

    business_id: BusinessId
    type: OwnEventType
    data: Annotated[
        dict[str, Any],
        Meta(
            description="the event's fields, delivered as sent; objects and arrays nested at "
            f"most {MAX_DEPTH} levels deep (this object the first)",
            examples=[{"id": "pay_1"}],
        ),
    ]
    timestamp: (
        Annotated[RFC3339 | None, Meta(description="absent or null: the time of ingest")]
        | UnsetType
    ) = UNSET
    ordering_key: OrderingKey | UnsetType = UNSET


class BatchItem(EventIn):
    """An event as for POST /v1/events, within the same limits (at most 256 KB of JSON, a 413
    result otherwise), plus its own idempotency key."""

    idempotency_key: IdempotencyKey | None = None


_EVENTS = Meta(
    min_length=1,
    max_length=BATCH_MAX_EVENTS,
    description="an item that is not valid (over 256 KB, or refused as POST /v1/events would "
    "refuse it) gets its own error result, with its index; the others are stored",
)


class BatchIn(RequestBody):
    """Up to 1000 events in one request."""

    events: Annotated[list[BatchItem], _EVENTS]


class BatchEnvelope(RequestBody):
    """``BatchIn`` with its items left undecoded, so each is decoded (and refused) on its own."""

    events: Annotated[list[msgspec.Raw], _EVENTS]


_ORDERED = (
    "deliver the events that share an ordering_key one at a time, in the order they were "
    "accepted (README, Ordering); events without a key go unordered"
)


class EndpointIn(RequestBody):
    """A new endpoint."""

    business_id: BusinessId
    url: Url
    event_types: Subscriptions | None = None
    description: Description | None = None
    headers: Headers | None = None
    max_in_flight: InFlight | None = None
    ordered: Annotated[bool, Meta(description=_ORDERED)] = False
    on_exhausted: OnExhausted = "block"
    signing: Signing = "hmac"


class EndpointPatch(RequestBody):
    """The fields to change; the others stay as they are."""

    refused: ClassVar[dict[str, str]] = {
        "business_id": "cannot be changed",
        "signing": "cannot be changed; create an endpoint with the other scheme instead",
    }

    url: Url | UnsetType = UNSET
    event_types: (
        Annotated[Subscriptions | None, Meta(description="null: every type")] | UnsetType
    ) = UNSET
    description: Description | None = None
    headers: Headers | None = None
    max_in_flight: InFlight | None = None
    ordered: Annotated[bool, Meta(description=_ORDERED)] | UnsetType = UNSET
    on_exhausted: OnExhausted | UnsetType = UNSET


class EventTypeIn(RequestBody):
    """A custom event type to register."""

    name: OwnEventType
    description: Description = ""


class ReplayIn(RequestBody):
    """Which of an endpoint's deliveries to replay."""

    since: TimeSpec
    until: TimeSpec | None = None
    status: Annotated[
        ReplayFilter,
        Meta(
            description="failed: every delivery that did not reach the endpoint (failed, "
            "cancelled, skipped); all: succeeded ones too"
        ),
    ] = "failed"
    dry_run: Annotated[bool, Meta(description="only count what would be replayed")] = False


class DisableIn(RequestBody):
    """Why the endpoint is disabled (the body may be left out)."""

    reason: Annotated[str, Meta(min_length=1, max_length=MAX_REASON)] = "disabled by an operator"


class ListenSessionIn(RequestBody):
    """The listen session to open (``hookgate listen``): the business's session of the path's
    name, made when it has none."""

    business_id: BusinessId
    event_types: Subscriptions | None = None


class PortalLinkIn(RequestBody):
    """How long a portal link stays valid (the body may be left out)."""

    ttl: (
        Annotated[
            Duration,
            Meta(
                description="how long the link stays valid, 1s to 7d (default 24h); the "
                "session it opens ends then too, after at most 12h",
                examples=["24h"],
            ),
        ]
        | UnsetType
    ) = UNSET


class ApiKeyIn(RequestBody):
    """A new API key: what it may do, and for which business."""

    name: Annotated[str, Meta(pattern=formats.KEY_NAME, examples=["billing core"])]
    scopes: Annotated[
        list[Scope],
        Meta(
            min_length=1,
            max_length=len(SCOPES),
            description="admin: everything; events:write: POST /v1/events and batches; read: "
            "every GET (not the API keys); deliveries:replay: replays; endpoints:write: "
            "create, change, delete, rotate, disable, enable, test endpoints; "
            "portal-links:create: portal links",
            examples=[["events:write"]],
        ),
    ]
    business_id: (
        Annotated[
            BusinessId,
            Meta(description="bind the key to this business: it sees and changes only its data"),
        ]
        | None
    ) = None
    expires_at: (
        Annotated[
            RFC3339,
            Meta(
                description="after this time the key is refused; absent: never",
                examples=["2031-01-01T00:00:00Z"],
            ),
        ]
        | None
    ) = None


# Query strings, decoded like bodies (``openapi.py`` documents each field as a parameter).


class DeliveryQuery(RequestBody):
    """The filters of GET /v1/deliveries."""

    endpoint_id: Annotated[EndpointId, Meta(description="only this endpoint's")] | UnsetType = UNSET
    event_id: Annotated[EventId, Meta(description="only this event's")] | UnsetType = UNSET
    business_id: Annotated[BusinessId, Meta(description="only this business's")] | UnsetType = UNSET
    status: Annotated[DeliveryStatus, Meta(description="only this state")] | UnsetType = UNSET
    event_type: Annotated[EventType, Meta(description="only this type")] | UnsetType = UNSET
    since: TimeSpec | UnsetType = UNSET
    until: TimeSpec | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE, description="page size")] = DEFAULT_PAGE
    cursor: (
        Annotated[str, Meta(pattern=_CURSOR, description="next_cursor of the previous page")]
        | UnsetType
    ) = UNSET


class BlockedQuery(RequestBody):
    """The paging of GET /v1/endpoints/{id}/ordering/blocked."""

    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE, description="page size")] = DEFAULT_PAGE
    cursor: (
        Annotated[str, Meta(pattern=_CURSOR, description="next_cursor of the previous page")]
        | UnsetType
    ) = UNSET


class AuditQuery(RequestBody):
    """The filters of GET /v1/audit-log."""

    business_id: Annotated[BusinessId, Meta(description="only this business's")] | UnsetType = UNSET
    actor: (
        Annotated[
            str,
            Meta(
                pattern=ACTOR_FILTER,
                description="only this actor's: an API key id, bootstrap (the admin token), a "
                "portal session's reference (ps_…), anonymous (failed portal sign-ins) or system",
            ),
        ]
        | UnsetType
    ) = UNSET
    action: (
        Annotated[ActionFilter, Meta(description="only this action, or family (endpoint.*)")]
        | UnsetType
    ) = UNSET
    since: TimeSpec | UnsetType = UNSET
    until: TimeSpec | UnsetType = UNSET
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE, description="page size")] = DEFAULT_PAGE
    cursor: (
        Annotated[str, Meta(pattern=STREAM_ID, description="next_cursor of the previous page")]
        | UnsetType
    ) = UNSET


class EndpointQuery(Struct, kw_only=True):
    """The filter of GET /v1/endpoints (other parameters are ignored)."""

    business_id: Annotated[BusinessId, Meta(description="only this business's")] | UnsetType = UNSET


# ---- answers -----------------------------------------------------------------------------


class ErrorDetail(Answer):
    code: Annotated[str, Meta(examples=["validation_failed"])]
    message: Annotated[str, Meta(examples=["type: unknown event type 'nope.never'"])]
    details: (
        Annotated[dict[str, Any], Meta(description='e.g. {"field": "events[3].type"}')] | UnsetType
    ) = UNSET


class Error(Answer):
    """Every error answer."""

    error: ErrorDetail


class EventAccepted(Answer):
    """Stored, with one delivery per matching endpoint."""

    id: EventId
    business_id: str
    type: str
    deliveries: list[DeliveryId]
    duplicate: Annotated[bool, Meta(description="the Idempotency-Key was seen before")]


class BatchItemResult(Answer):
    """One item's outcome: the fields of EventAccepted when status is 202, else the error."""

    index: int
    status: int
    id: EventId | UnsetType = UNSET
    business_id: str | UnsetType = UNSET
    type: str | UnsetType = UNSET
    deliveries: list[DeliveryId] | UnsetType = UNSET
    duplicate: bool | UnsetType = UNSET
    error: ErrorDetail | UnsetType = UNSET


class BatchResult(Answer):
    """One result per item, in order."""

    accepted: int
    rejected: int
    results: list[BatchItemResult]


class Attempt(Answer):
    """One HTTP attempt of a delivery."""

    attempt: int
    replay: Annotated[int, Meta(description="0: first chain; n: the nth replay")]
    at: Annotated[
        Timestamp, Meta(description="when it was sent: its webhook-timestamp, to the second")
    ]
    webhook_timestamp: Annotated[
        int, Meta(description="the webhook-timestamp header sent and signed (unix seconds)")
    ]
    status_code: int | None
    latency_ms: float
    error: str | None
    response_body: Annotated[str, Meta(description="first 4 KB")]
    outcome: Outcome


class Delivery(Answer):
    """One event's delivery to one endpoint."""

    id: DeliveryId
    event_id: EventId
    endpoint_id: EndpointId
    business_id: str
    event_type: str | None
    status: DeliveryStatus
    reason: str | None
    attempt_count: int
    replays: Annotated[int, Meta(description="how many times it was replayed")]
    next_attempt_at: Annotated[
        Timestamp | None,
        Meta(description="null while pending: it waits behind its ordering key's head"),
    ]
    ordering_key: Annotated[str | None, Meta(description="on an ordered endpoint only")]
    sequence: Annotated[
        int | None,
        Meta(description="its number among its ordering key's events on this endpoint"),
    ]
    created_at: Timestamp | None
    updated_at: Timestamp | None
    attempts: (
        Annotated[list[Attempt], Meta(description="only in answers about one delivery")] | UnsetType
    ) = UNSET


class DeliveryPage(Answer):
    """A page of deliveries, newest first."""

    data: list[Delivery]
    next_cursor: Annotated[str | None, Meta(description="null on the last page")]


class EventBody(Answer):
    """The body delivered to endpoints: serialised once at ingest, signed as stored."""

    business_id: str
    type: str
    timestamp: str
    data: dict[str, Any]
    ordering_key: str | UnsetType = UNSET


class Event(Answer):
    """An event and the state of each of its deliveries."""

    id: EventId
    business_id: str
    type: str
    created_at: Timestamp | None
    payload: EventBody
    deliveries: list[Delivery]


class EventTypeInfo(Answer):
    name: str
    source: Literal["catalog", "registered"]
    description: str


class EventTypeList(Answer):
    """The catalogue's types and the registered ones."""

    data: list[EventTypeInfo]


class EventTypeRegistered(Answer):
    name: str
    description: str
    created: Annotated[bool, Meta(description="false: it was already known")]


class HourlyCount(Answer):
    hour: Timestamp
    ok: int
    failed: int


class EndpointHealth(Answer):
    last_success_at: Timestamp | None
    consecutive_failures: int
    failing_since: Timestamp | None
    attempts_24h: int
    success_rate_24h: float | None
    in_flight: int
    blocked_keys: Annotated[int, Meta(description="ordering keys blocked behind a failed head")]
    hourly: Annotated[list[HourlyCount], Meta(description="the last 24 hours, oldest first")]


class Endpoint(Answer):
    """An endpoint (never its secrets)."""

    id: EndpointId
    kind: Annotated[
        EndpointKind,
        Meta(
            description="listen: a `hookgate listen` session, whose deliveries reach a "
            "developer's machine through its WebSocket (url listen://<session>); http: every "
            "other endpoint"
        ),
    ]
    business_id: str
    url: str
    event_types: Annotated[list[str] | None, Meta(description="null: every type")]
    description: str
    headers: MaskedHeaders
    max_in_flight: int
    ordered: bool
    on_exhausted: OnExhausted
    disabled: bool
    disabled_reason: str | None
    disabled_at: Timestamp | None
    secret_count: int
    signing: Signing
    public_key: Annotated[
        PublicKey | None,
        Meta(description="ed25519: the newest public key, what receivers verify with; hmac: null"),
    ]
    public_keys: Annotated[
        list[PublicKey],
        Meta(
            description="ed25519: every public key that signs now, newest first (two during a "
            "rotation's grace period, and each delivery carries one v1a signature per key); "
            "hmac: empty"
        ),
    ]
    session: Annotated[str | None, Meta(description="a listen session's name; null: http")]
    last_connected_at: Annotated[
        Timestamp | None,
        Meta(
            description="when a client was last connected to the listen session (it is "
            "deleted HOOKGATE_LISTEN_SESSION_TTL, 24h unless set, after); null: http"
        ),
    ]
    created_at: Timestamp | None
    updated_at: Timestamp | None
    health: (
        Annotated[EndpointHealth, Meta(description="in answers about one endpoint, not in lists")]
        | UnsetType
    ) = UNSET


class EndpointWithSecret(Endpoint, kw_only=True):
    """An endpoint with its new signing secret: shown at creation and rotation only."""

    secret: Annotated[
        str | None,
        Meta(
            description="hmac: the new whsec_ secret, only in create and rotate answers; "
            "ed25519: null, the private key is never shown (verify with public_key, the new "
            "key pair's); a listen session's, on every opening"
        ),
    ]


class ListenSession(EndpointWithSecret, kw_only=True):
    """A listen session, with its current signing secret: its owner configures the receiver
    behind ``hookgate listen`` with it, so every opening shows it."""

    created: Annotated[bool, Meta(description="false: the session existed and is resumed")]


class EndpointList(Answer):
    data: list[Endpoint]


class BlockedKey(Answer):
    """An ordering key held by a head whose retries are spent."""

    key: str
    head_delivery_id: DeliveryId
    blocked_since: Timestamp | None
    waiting: Annotated[int, Meta(description="deliveries of the key waiting behind the head")]


class BlockedKeyList(Answer):
    """An ordered endpoint's blocked keys, longest blocked first."""

    data: list[BlockedKey]
    next_cursor: Annotated[str | None, Meta(description="null on the last page")]


class KeySkipped(Answer):
    """An ordering key moved past its head."""

    key: str
    skipped_delivery_id: DeliveryId
    next_delivery_id: Annotated[
        DeliveryId | None, Meta(description="the key's delivery going now; null: none waits")
    ]


class Replay(Answer):
    """A bulk replay and its progress."""

    replay_id: ReplayId
    endpoint_id: EndpointId
    since: Timestamp | None
    until: Timestamp | None
    status: ReplayFilter
    matched: int
    enqueued: int
    skipped: int
    succeeded: int
    failed: int
    cancelled: int
    pending: int
    state: Literal["enqueuing", "running", "completed"]
    created_at: Timestamp | None
    already_running: (
        Annotated[
            bool, Meta(description="set when this replay was running already: it is not repeated")
        ]
        | UnsetType
    ) = UNSET
    other_replays: (
        Annotated[
            list[ReplayId],
            Meta(
                description="replays of the same endpoint in the cells its business lived in "
                "before a move (their deliveries are there); each has its own progress"
            ),
        ]
        | UnsetType
    ) = UNSET


class ReplayPreview(Answer):
    """A dry run: how many deliveries a replay would take."""

    replay_id: None
    matched: int
    dry_run: Annotated[bool, Meta(extra_json_schema={"const": True})]


class TestSent(Answer):
    """A hookgate.test event, sent through the normal path."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name

    event_id: EventId
    delivery_id: DeliveryId


class PortalLink(Answer):
    """A single-use link: give it to the merchant."""

    url: str
    expires_at: Timestamp
    business_id: str


class ApiKey(Answer):
    """An API key: never the key itself, nor anything it could be rebuilt from."""

    id: ApiKeyId
    name: str
    scopes: list[Scope]
    business_id: Annotated[str | None, Meta(description="null: every business")]
    status: Literal["active", "expired", "revoked"]
    created_at: Timestamp | None
    expires_at: Annotated[Timestamp | None, Meta(description="null: never")]
    revoked_at: Timestamp | None
    last_used_at: Annotated[
        Timestamp | None, Meta(description="recorded at most once a second per gateway")
    ]
    last_used_from: Annotated[str | None, Meta(description="the client address of that use")]


class ApiKeyCreated(ApiKey, kw_only=True):
    """A new API key, with the key: shown only in this answer, stored nowhere."""

    key: Annotated[
        str,
        Meta(
            description="the bearer token: Authorization: Bearer hgk_<id>_<secret>",
            examples=["hgk_key_01JD0000000000000000000000_…"],
        ),
    ]


class ApiKeyList(Answer):
    """Every API key, oldest first; revoked and expired ones too."""

    data: list[ApiKey]


class AuditActor(Answer):
    kind: Annotated[
        ActorKind,
        Meta(
            description="token: the admin token; key: an API key; portal: a portal session; "
            "anonymous: a failed portal sign-in; system: hookgate itself"
        ),
    ]
    id: Annotated[
        str, Meta(description="bootstrap, the API key's id, the session's ps_… reference, …")
    ]
    name: Annotated[str, Meta(description="the API key's name; operator or merchant; hookgate")]


class AuditEntry(Answer):
    """One change, or attempted change, and who made it. Never a secret, key, token, body or
    header value."""

    id: Annotated[str, Meta(description="the entry's id, in time order; a cursor")]
    at: Timestamp
    actor: AuditActor
    action: str
    targets: Annotated[list[str], Meta(description="the ids it was about")]
    business_id: str | None
    client: Annotated[str | None, Meta(description="the address the request came from")]
    outcome: AuditOutcome
    status: Annotated[int | None, Meta(description="the HTTP status answered")]
    detail: Annotated[
        str | None, Meta(description="the error code of a failure, or why hookgate acted")
    ]


class AuditPage(Answer):
    """A page of the audit log, newest first."""

    data: list[AuditEntry]
    next_cursor: Annotated[str | None, Meta(description="null on the last page")]


class Health(Answer):
    status: Literal["ok"]
    version: str


class CellState(Answer):
    """One cell as this gateway sees it now."""

    name: str
    first: Annotated[
        bool, Meta(description="the first cell: directory, API keys, audit log, portal sessions")
    ]
    ready: Annotated[bool, Meta(description="takes writes this gateway may acknowledge")]
    reason: Annotated[str | None, Meta(description="why not, when it does not")] = None


class Ready(Answer):
    """Ready while the first cell takes writes; ``degraded`` while another cell does not (its
    businesses get 503, every other business is served)."""

    status: Literal["ready", "degraded"]
    cells: list[CellState] = []


class BusinessCell(Answer):
    """Where a business lives: its cell, and the cells it lived in before (their deliveries
    finish there; reads look there too)."""

    business_id: str
    cell: str
    previous_cells: list[str]
    pinned: Annotated[
        bool, Meta(description="placed by the directory (else by hashing its id over the cells)")
    ]
    pending_in_previous_cells: Annotated[
        dict[str, int],
        Meta(
            description="per cell it lived in before, its deliveries not yet final there (the "
            "cell's workers finish them)"
        ),
    ]


class CellMoveIn(RequestBody):
    """Move a business to another cell."""

    cell: Annotated[str, Meta(pattern=formats.CELL_NAME)]
    force: Annotated[
        bool,
        Meta(
            description="move even while the business's ordered endpoints have deliveries "
            "pending in the old cell (they may then arrive after the key's next events)"
        ),
    ] = False


class CellMove(Answer):
    """What a move did."""

    business_id: str
    cell: str
    previous_cells: list[str]
    moved: Annotated[bool, Meta(description="false when the business was already there")]
    from_cell: str
    endpoints: Annotated[int, Meta(description="endpoints copied to the new cell")]
    pending_in_previous_cell: Annotated[
        int, Meta(description="deliveries still to finish in the cell it left")
    ]


class CellList(Answer):
    data: list[CellState]
