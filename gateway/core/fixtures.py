"""Example events for every catalogue type, and the flows that string them together, for
``hookgate trigger``.

The examples (``fixtures.json``) are the billing platform's payloads as a merchant's receiver
sees them, all about one customer and one subscription. Each use makes them new: every object
id (``pay_…``, ``sub_…``, ``cus_…``, …) becomes a fresh one, the same fresh one wherever it
appears in the events sent together, so two triggers never send the same objects and a flow
stays about one customer and one subscription; every time moves by how far now is from the
file's reference time, so a renewal's next billing date stays a month ahead.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

# The objects events are about: a fresh id each time. Products and entitlements (prod_, ent_)
# are the merchant's own configuration, the same in every event, and keep theirs.
FRESH_PREFIXES = frozenset(
    {"pay", "sub", "cus", "ref", "dsp", "lic", "po", "cr", "cle", "chk", "dun", "egr"}
)
STABLE_PREFIXES = frozenset({"prod", "ent"})

ID_RE = re.compile(r"([a-z]+)_[0-9A-Za-z]{8,}")  # pay_2Jx8Nf4Qw1Ls6RtA; not prod_ai_pro_monthly
_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_SUFFIX_CHARACTERS = string.ascii_letters + string.digits
_SUFFIX_LENGTH = 18  # as the examples' own: 107 random bits

Fresh = Callable[[str], str]
"""Makes a new id of a prefix (``random_id``; a test passes a counter)."""


def random_id(prefix: str) -> str:
    """``pay_2Jx8Nf4Qw1Ls6RtA``: random, as the platform's ids look (not time-ordered as
    hookgate's own, which would make a flow's ids differ only in their last characters)."""
    suffix = "".join(secrets.choice(_SUFFIX_CHARACTERS) for _ in range(_SUFFIX_LENGTH))
    return f"{prefix}_{suffix}"


@dataclass(frozen=True)
class Examples:
    reference_time: datetime
    data: Mapping[str, Mapping[str, Any]]  # event type → the event's data


@cache
def load() -> Examples:
    """The examples shipped with hookgate (``gateway/core/fixtures.json``), read once."""
    raw = json.loads(resources.files("gateway.core").joinpath("fixtures.json").read_text("utf-8"))
    reference = datetime.strptime(raw["reference_time"], _TIME_FORMAT).replace(tzinfo=UTC)
    return Examples(reference_time=reference, data=raw["events"])


@dataclass(frozen=True)
class Step:
    type: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    """Top-level data fields that differ from the type's example at this point of the flow."""


@dataclass(frozen=True)
class Flow:
    name: str
    summary: str
    steps: tuple[Step, ...]


_TEAM_CART = [{"product_id": "prod_ai_team_monthly", "quantity": 1}]

FLOWS = (
    Flow(
        "on-hold-recovery",
        "a renewal charge fails, the subscription goes on hold, a retry succeeds, it is active "
        "again",
        (
            Step("payment.failed"),
            Step("subscription.on_hold"),
            Step("payment.succeeded"),
            Step("subscription.active"),
        ),
    ),
    Flow(
        "plan-change",
        "an upgrade from Pro to Team, the difference charged at once",
        (
            Step("subscription.plan_changed"),
            Step("payment.succeeded", {"amount": 5000, "product_cart": _TEAM_CART}),
            Step("subscription.updated"),
        ),
    ),
    Flow(
        "renewal",
        "the monthly charge succeeds and the subscription renews",
        (Step("payment.succeeded"), Step("subscription.renewed")),
    ),
    Flow(
        "credit-lifecycle",
        "credits granted, mostly used, running low, then overage charged",
        (
            Step("credit.added"),
            Step("credit.deducted"),
            Step("credit.balance_low"),
            Step("credit.overage_charged"),
        ),
    ),
)
FLOWS_BY_NAME = {flow.name: flow for flow in FLOWS}


def example_types() -> frozenset[str]:
    return frozenset(load().data)


def events(
    steps: tuple[Step, ...], business_id: str, now: datetime, fresh: Fresh = random_id
) -> list[dict[str, Any]]:
    """The events of ``steps`` for ``business_id``, in order, made new (fresh ids shared by
    all of them, times moved to ``now``). Each is ``{business_id, type, data}``: the gateway
    stamps the time it takes one in. Raises ``KeyError`` for a type without an example."""
    examples = load()
    ids: dict[str, str] = {}
    shift = now.replace(microsecond=0) - examples.reference_time
    out = []
    for step in steps:
        data = {**examples.data[step.type], **step.changes}
        made = _made_new(data, ids, shift, fresh)
        out.append({"business_id": business_id, "type": step.type, "data": made})
    return out


def ordering_key(sent: list[dict[str, Any]]) -> str:
    """The one subscription id every event of a flow is about: its ordering key. Raises
    ``ValueError`` when they are not about one (a change made it differ, or not a string)."""
    keys = [event["data"].get("subscription_id") for event in sent]
    key = keys[0]
    if not isinstance(key, str) or not key or any(k != key for k in keys):
        raise ValueError("the events must share one data.subscription_id, a non-empty string")
    return key


def _made_new(value: Any, ids: dict[str, str], shift: timedelta, fresh: Fresh) -> Any:
    """A copy of ``value`` with object ids replaced (the same replacement for the same id, as
    recorded in ``ids``) and times moved by ``shift``."""
    if isinstance(value, dict):
        return {k: _made_new(v, ids, shift, fresh) for k, v in value.items()}
    if isinstance(value, list):
        return [_made_new(v, ids, shift, fresh) for v in value]
    if isinstance(value, str):
        if (match := ID_RE.fullmatch(value)) and match[1] in FRESH_PREFIXES:
            if value not in ids:
                ids[value] = fresh(match[1])
            return ids[value]
        if _TIME_RE.fullmatch(value):
            moved = datetime.strptime(value, _TIME_FORMAT).replace(tzinfo=UTC) + shift
            return moved.strftime(_TIME_FORMAT)
    return value
