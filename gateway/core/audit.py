"""The audit log's vocabulary: what an entry says (who did what to which ids, for which
business, from where, with what outcome), the actions it names, and how an entry is spelled in
the Redis stream. No I/O.

An entry never holds a secret, a key, a token, a body or a header value: its fields are ids
hookgate made or checked against their format, action names from ``ACTIONS``, a client
address, an HTTP status and a code or reason hookgate wrote itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Literal, get_args

from gateway.core.clock import iso_ms
from gateway.core.model import Actor

# Every action the log records. A family (``endpoint.*``) filters by its prefix.
Action = Literal[
    "endpoint.create",
    "endpoint.patch",
    "endpoint.delete",
    "endpoint.rotate_secret",
    "endpoint.disable",
    "endpoint.enable",
    "endpoint.test",
    "endpoint.replay",  # a bulk replay of an endpoint's deliveries
    "endpoint.ordering_skip",  # an ordering key moved past its head
    "endpoint.auto_disable",  # hookgate's own: a 410, or failing for HOOKGATE_DISABLE_AFTER
    "delivery.replay",
    "api_key.create",
    "api_key.revoke",
    "portal_link.create",
    "event_type.register",
    "listen_session.open",  # `hookgate listen` opened (found or made) a listen session
    "business.move_cell",  # a business moved to another cell (its detail: "c1->c2")
    "portal.sign_in",
    "portal.sign_out",
]
ActionFilter = Literal[
    Action,
    "endpoint.*",
    "delivery.*",
    "api_key.*",
    "portal_link.*",
    "event_type.*",
    "listen_session.*",
    "business.*",
    "portal.*",
]
ActorKind = Literal["token", "key", "portal", "system", "anonymous"]
Outcome = Literal["success", "failure"]
ACTIONS: tuple[str, ...] = get_args(Action)
ACTION_FILTERS: tuple[str, ...] = get_args(ActionFilter)

SUCCESS = "success"
FAILURE = "failure"

# hookgate itself (an auto-disable); the Lua that writes those entries spells the same.
SYSTEM = Actor(kind="system", id="system", name="hookgate", scopes=frozenset())
# Whoever tried to sign in to the portal and failed: there is no principal, only an address.
ANONYMOUS_ID = "anonymous"

# What an entry's ``actor`` filter may be: an actor id (bootstrap, system, anonymous, key_…,
# ps_…), nothing that needs escaping.
ACTOR_FILTER = r"^[A-Za-z0-9_]{1,64}$(?!\n)"
# A stream id as the log hands it out (``next_cursor``): ms-seq, each within 15 digits so it
# is always a valid Redis stream id (64-bit parts).
STREAM_ID = r"^[0-9]{1,15}-[0-9]{1,15}$(?!\n)"
_STREAM_ID_RE = re.compile(STREAM_ID)

# The stream's field names, in the order an entry is written (lib/audit.lua writes the same).
FIELDS = (
    "actor_kind",
    "actor_id",
    "actor_name",
    "business_id",
    "client",
    "action",
    "targets",
    "outcome",
    "status",
    "detail",
)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One audit entry. ``targets`` are ids (space-free, each checked against its format by
    whoever names it); ``status`` the HTTP status answered (0: none, for hookgate's own
    actions); ``detail`` an error code or a reason hookgate wrote, never client text."""

    actor: Actor
    action: str
    targets: tuple[str, ...] = ()
    business_id: str | None = None
    outcome: str = SUCCESS
    status: int = 0
    detail: str = ""

    def fields(self) -> list[str]:
        """The stream fields and values, flat, in ``FIELDS`` order."""
        values = (
            self.actor.kind,
            self.actor.id,
            self.actor.name,
            self.business_id or "",
            self.actor.client,
            self.action,
            " ".join(self.targets),
            self.outcome,
            str(self.status) if self.status else "",
            self.detail,
        )
        return [part for pair in zip(FIELDS, values, strict=True) for part in pair]

    def log_fields(self) -> dict[str, object]:
        """The entry as keyword fields of a log line (when it could not be stored: the line
        is then the record)."""
        return {
            "action": self.action,
            "actor_kind": self.actor.kind,
            "actor_id": self.actor.id,
            "business_id": self.business_id,
            "client": self.actor.client,
            "targets": list(self.targets),
            "outcome": self.outcome,
            "status": self.status,
            "detail": self.detail,
        }


def outcome_of(status: int) -> str:
    """``success`` for an answer below 400 (a portal form answers a redirect), else
    ``failure``."""
    return SUCCESS if status < 400 else FAILURE


def matches_action(action: str, wanted: str) -> bool:
    """Whether ``action`` is ``wanted``, or in it when ``wanted`` is a family (``endpoint.*``)."""
    if wanted.endswith(".*"):
        return action.startswith(wanted[:-1])
    return action == wanted


def parse_stream_id(value: str) -> tuple[int, int] | None:
    """``1700000000000-3`` → (1700000000000, 3); None when it is not a stream id of the log."""
    if not _STREAM_ID_RE.match(value):
        return None
    ms, _, seq = value.partition("-")
    return int(ms), int(seq)


def view(stream_id: str, fields: Mapping[str, str]) -> dict[str, object]:
    """An entry as the API answers it (``schemas.AuditEntry``); ``at`` is its stream id's
    millisecond, as Redis stamped it."""
    status = fields.get("status", "")
    targets: Sequence[str] = fields.get("targets", "").split()
    return {
        "id": stream_id,
        "at": iso_ms(int(stream_id.partition("-")[0])),
        "actor": {
            "kind": fields.get("actor_kind", ""),
            "id": fields.get("actor_id", ""),
            "name": fields.get("actor_name", ""),
        },
        "action": fields.get("action", ""),
        "targets": list(targets),
        "business_id": fields.get("business_id") or None,
        "client": fields.get("client") or None,
        "outcome": fields.get("outcome", ""),
        "status": int(status) if status.isdigit() else None,
        "detail": fields.get("detail") or None,
    }
