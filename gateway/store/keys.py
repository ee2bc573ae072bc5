"""Every Redis key of hookgate's own, in one place; the Lua scripts build theirs with the same
functions (``scripts.py`` generates their Lua twins). arq's keys, which hookgate also writes,
are arq's: ``queue.py`` takes them from arq."""

from __future__ import annotations

PREFIX = "hg:"

# Written right before a WAIT: a connection's WAIT covers only its own writes, and every write
# before this one (from any connection) is in the replication stream ahead of it.
REPLICATION_MARK = PREFIX + "replication-mark"
DUE = PREFIX + "due"  # zset: pending delivery id → when its current job is due (ms)
# zset: pending delivery id with no job, waiting behind its ordering key's head → since when (ms)
WAITING = PREFIX + "waiting"
METRICS = PREFIX + "metrics"  # hash of counters shared by every process
ENDPOINTS = PREFIX + "endpoints"  # set of every endpoint id
EVENT_TYPES = PREFIX + "event_types"  # hash: registered event type → description
BUSINESSES = PREFIX + "businesses"  # set of every business that has had an endpoint
API_KEYS = PREFIX + "api-keys"  # set of every API key id, revoked and expired ones too
# Stream of every audit entry (lib/audit.lua), trimmed to HOOKGATE_AUDIT_RETENTION.
AUDIT = PREFIX + "audit"
# Zset of every listen session's endpoint id → when a client last opened it or was connected
# to it (ms): what the worker's sweep reads to delete the sessions no one has used for a day.
LISTEN_SESSIONS = PREFIX + "listen:sessions"
# Delivery indices: zsets of "{created_ms:013d}:{delivery_id}" at score 0, so a lexical range
# is a time range and a member is a stable cursor.
INDEX_ALL = PREFIX + "idx:all"
# Cells (``store/cells.py``), in the first cell only: hash of every business pinned so far →
# its cell, then the cells it lived in before, each with until when it is read
# ("c2 c1@1767225600000").
CELL_DIRECTORY = PREFIX + "cells:directory"


def index_business(business_id: str) -> str:
    return f"{PREFIX}idx:bus:{business_id}"


def index_endpoint(endpoint_id: str) -> str:
    return f"{PREFIX}idx:ep:{endpoint_id}"


def endpoint_stats(endpoint_id: str) -> str:
    """Hash of hourly outcomes, kept 48 h: of attempts, ``{hour}:ok`` / ``{hour}:fail``; of
    the deliveries an attempt ended, ``{hour}:dok`` (succeeded) / ``{hour}:dfail`` (failed for
    good, its retries spent)."""
    return f"{PREFIX}ep:{endpoint_id}:stats"


def replay(replay_id: str) -> str:
    return f"{PREFIX}replay:{replay_id}"


def replay_todo(replay_id: str) -> str:
    return f"{PREFIX}replay:{replay_id}:todo"


def replay_lock(endpoint_id: str, scope: str) -> str:
    """Held while a bulk replay of this endpoint enqueues: another one asked for meanwhile
    answers with the running replay instead of enqueuing twice."""
    return f"{PREFIX}replaylock:{endpoint_id}:{scope}"


def event_body(event_id: str) -> str:
    """The envelope bytes, serialised once at ingest (a string: cheaper than a hash field)."""
    return f"{PREFIX}evt:{event_id}:body"


def idempotency(business_id: str, key: str) -> str:
    """What an Idempotency-Key holds, ``{fingerprint}|{event_id}``, per business: a key is the
    sender's, so the same key from two businesses names two events (a business id holds no
    ``|``, so the pair cannot be spelled another way)."""
    return f"{PREFIX}bidem:{business_id}|{key}"


def idempotency_unscoped(key: str) -> str:
    """Where keys were kept before they were scoped by business; read only, and only while
    such keys can still be alive (``HOOKGATE_IDEMPOTENCY_TTL`` after an upgrade), so a retry
    that spans the upgrade is still recognised."""
    return f"{PREFIX}idem:{key}"


def endpoint(endpoint_id: str) -> str:
    return f"{PREFIX}ep:{endpoint_id}"


def endpoint_pending(endpoint_id: str) -> str:
    """Set of the endpoint's pending delivery ids: what a 410 or a delete cancels."""
    return f"{PREFIX}ep:{endpoint_id}:pending"


def endpoint_inflight(endpoint_id: str) -> str:
    """Zset of delivery ids holding one of the endpoint's in-flight slots → lease expiry (ms)."""
    return f"{PREFIX}ep:{endpoint_id}:inflight"


def ordering_state(endpoint_id: str, ordering_key: str) -> str:
    """Hash of one ordering key on an ordered endpoint: ``seq``, the last sequence number given
    at ingest; ``head``, the delivery that goes (or went, when blocked) before the key's others;
    ``blocked``, since when (ms) a head whose retries are spent holds the key. Expires
    ``HOOKGATE_RETENTION`` after the key's last event."""
    return f"{PREFIX}ep:{endpoint_id}:ord:{ordering_key}"


def ordering_queue(endpoint_id: str, ordering_key: str) -> str:
    """Zset of the key's deliveries waiting behind its head: delivery id → sequence number."""
    return f"{PREFIX}ep:{endpoint_id}:ordq:{ordering_key}"


def ordering_blocked(endpoint_id: str) -> str:
    """Zset of the endpoint's blocked ordering keys → since when (ms): what operators list."""
    return f"{PREFIX}ep:{endpoint_id}:blocked"


def business_moved(business_id: str) -> str:
    """String held in a cell a business moved away from: the cell it moved to. Ingest in this
    cell refuses the business's events while it is set (``lua/ingest_many.lua``), so no event
    lands in the old cell once the move is made, whatever a gateway's cached placement says."""
    return f"{PREFIX}bus:{business_id}:moved"


def business_moving(business_id: str) -> str:
    """String held, in the first cell, while a business is being moved (``Cells.move``): one
    move of a business at a time."""
    return f"{PREFIX}bus:{business_id}:moving"


def business_endpoints(business_id: str) -> str:
    return f"{PREFIX}bus:{business_id}:eps"


def business_listen_sessions(business_id: str) -> str:
    """Hash of one business's listen sessions: session name → endpoint id (a name is one
    business's: two businesses may each have a session of the same name)."""
    return f"{PREFIX}bus:{business_id}:listen"


def listen_online(endpoint_id: str) -> str:
    """String held while a client is connected to the listen session: the connection's token,
    refreshed every second with a short expiry. An attempt of the session made while it is
    absent waits (it is re-deferred without being made or recorded)."""
    return f"{PREFIX}listen:{endpoint_id}:online"


def listen_outbox(endpoint_id: str) -> str:
    """Stream of the listen session's attempts for the gateway holding its WebSocket to send
    (job, delivery, signed headers, body), trimmed to about a thousand entries."""
    return f"{PREFIX}listen:{endpoint_id}:out"


def listen_reply(job_id: str) -> str:
    """List the outcome of one listen attempt is pushed to (the worker BLPOPs it)."""
    return f"{PREFIX}listen:reply:{job_id}"


def delivery(delivery_id: str) -> str:
    return f"{PREFIX}dlv:{delivery_id}"


def delivery_attempts(delivery_id: str) -> str:
    return f"{PREFIX}dlv:{delivery_id}:attempts"


def portal_session(digest: str) -> str:
    """Hash of one delivery-portal session (scope, CSRF token), keyed by the SHA-256 of the
    cookie's session id so a Redis dump holds no usable session; expires with the session."""
    return f"{PREFIX}portal:session:{digest}"


def portal_link(digest: str) -> str:
    """Hash of one unused portal link (business, expiry), keyed by the SHA-256 of its token;
    deleted when used, expires when it does."""
    return f"{PREFIX}portal:link:{digest}"


def login_failures(client: str) -> str:
    """Counter of failed portal sign-ins from one client address in the current window."""
    return f"{PREFIX}portal:login-failures:{client}"


def api_key(key_id: str) -> str:
    """Hash of one API key: name, scopes, business, times, last use, and the SHA-256 of the
    whole key (never the key itself), so a Redis dump yields no usable key."""
    return f"{PREFIX}api-key:{key_id}"


def audit_business(business_id: str) -> str:
    """Stream of one business's audit entries, under the same ids as in ``AUDIT``: a reader
    of one business reads only its entries. Expires when its newest entry is past retention."""
    return f"{PREFIX}audit:bus:{business_id}"
