"""The audit log in Redis: appending entries (the AUDIT script) and reading them back, newest
first, one page at a time.

Entries live in one stream (``keys.AUDIT``) and, when they concern a business, in that
business's stream too, under the same id (``keys.audit_business``): a business's reader reads
its own stream and never scans anyone else's entries. Filters on the actor or the action scan
the chosen stream, at most ``SCAN_LIMIT`` entries per page: a page that ran out of budget
ends with a cursor to go on from, so no request costs more than that. Hookgate's own entries
(an auto-disable) are appended by the Lua that makes the change (``lib/audit.lua``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from redis.asyncio import Redis

from gateway.core.audit import Entry, matches_action, parse_stream_id, view
from gateway.core.clock import now_ms
from gateway.store import keys
from gateway.store.scripts import Scripts
from gateway.store.store import as_str

SCAN_BATCH = 500
SCAN_LIMIT = 5000  # entries one page looks at, at most


@dataclasses.dataclass(frozen=True)
class AuditFilter:
    """What a page of the log holds: entries of one business (None: all), of one actor id, of
    one action or family (``endpoint.*``), from ``since_ms`` to ``until_ms`` inclusive."""

    business_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def accepts(self, fields: dict[str, str]) -> bool:
        if self.actor is not None and fields.get("actor_id") != self.actor:
            return False
        return self.action is None or matches_action(fields.get("action", ""), self.action)


def _decode(raw: dict[Any, Any]) -> dict[str, str]:
    return {as_str(k): as_str(v) for k, v in raw.items()}


class AuditLog:
    """The audit log over one Redis pool."""

    def __init__(self, redis: Redis, scripts: Scripts, retention: float) -> None:
        self.redis = redis
        self.scripts = scripts
        self.retention_ms = int(retention * 1000)

    async def append(self, entry: Entry) -> str:
        """Stores ``entry``; returns its id (the time Redis stamped it, and a cursor)."""
        return await self.scripts.audit(entry.business_id, entry.fields())

    async def page(
        self, flt: AuditFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries newest first, as ``core.audit.view`` shows them, and the cursor of the next
        page (None on the last). ``cursor`` must have passed ``parse_stream_id``. Entries past
        retention that trimming has not reached yet are never shown."""
        key = keys.AUDIT if flt.business_id is None else keys.audit_business(flt.business_id)
        oldest = max(flt.since_ms or 0, now_ms() - self.retention_ms)
        high = "+" if flt.until_ms is None else f"{flt.until_ms}-18446744073709551615"
        if cursor is not None:
            at = parse_stream_id(cursor)
            assert at is not None, "the caller checks the cursor"
            if at == (0, 0):
                return [], None  # nothing comes before the first possible id
            if flt.until_ms is None or at <= (flt.until_ms, 2**64 - 1):
                high = "(" + cursor
        low = f"{oldest}-0"
        found: list[dict[str, Any]] = []
        scanned = 0
        while scanned < SCAN_LIMIT:
            # one more than the page, so a full last page says there is no next one
            batch = min(SCAN_BATCH, SCAN_LIMIT - scanned)
            if flt.actor is None and flt.action is None:
                batch = min(batch, limit + 1 - len(found))
            rows = await self.redis.xrevrange(key, high, low, count=batch)
            for raw_id, raw in rows:
                scanned += 1
                stream_id = as_str(raw_id)
                fields = _decode(raw)
                if flt.accepts(fields):
                    if len(found) == limit:
                        return found, found[-1]["id"]
                    found.append(view(stream_id, fields))
                high = "(" + stream_id
            if len(rows) < batch:
                return found, None
        return found, high[1:]  # out of budget: go on from the last entry looked at
