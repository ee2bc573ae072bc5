"""Finding deliveries and recovering the ones that failed: listing, replays, disable/enable,
test events. Built on the store's keys and scripts; every state change is one Lua step."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import re
from typing import Any

from gateway.core import formats
from gateway.core.clock import iso_ms, now_ms, now_timestamp
from gateway.core.errors import Conflict, NotFound, ValidationFailed
from gateway.core.ids import new_id
from gateway.core.model import EventIn, Ingested, PreparedEvent
from gateway.store import keys
from gateway.store.store import (
    Store,
    as_str,
    awaited,
    decode_hash,
    delivery_view,
    event_of,
)

STATUSES = ("pending", "succeeded", "failed", "cancelled", "skipped")
# What "failed" means to a replay: every delivery that ended without reaching the endpoint.
UNDELIVERED = frozenset({"failed", "cancelled", "skipped"})
SCAN_BATCH = 500
SCAN_LIMIT = 5000  # index entries one list request looks at, at most
REPLAY_BATCH = 200  # deliveries one replay job re-enqueues
REPLAY_LOCK_TTL_MS = 3_600_000  # a bulk replay's enqueuing lock outlives a crashed process by this
MEMBER_RE = re.compile(r"^\d{13}:" + formats.IDS["dlv"][1:])


def _entry(ms: int) -> str:
    return f"{ms:013d}"


def encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        member = ""
    if not MEMBER_RE.match(member):
        raise ValidationFailed("cursor", "is not a cursor this API returned")
    return member


def _offset_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _offset_of(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "o" or not number.isdigit() or len(number) > 9:
        raise ValidationFailed("cursor", "is not a cursor this API returned")
    return int(number)


def _in_key_order(matched: list[tuple[str, str, int]]) -> list[str]:
    """Delivery ids in the order given, except that each ordering key's deliveries are put in
    sequence order within the places they hold."""
    places: dict[str, list[int]] = {}
    for i, (_, okey, seq) in enumerate(matched):
        if okey and seq:
            places.setdefault(okey, []).append(i)
    ordered = [delivery_id for delivery_id, _, _ in matched]
    for spots in places.values():
        by_sequence = sorted(spots, key=lambda i: matched[i][2])
        for spot, source in zip(spots, by_sequence, strict=True):
            ordered[spot] = matched[source][0]
    return ordered


@dataclasses.dataclass(frozen=True)
class DeliveryFilter:
    endpoint_id: str | None = None
    business_id: str | None = None
    event_id: str | None = None
    status: str | None = None
    event_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def accepts(self, view: dict[str, Any]) -> bool:
        return (
            (self.endpoint_id is None or view["endpoint_id"] == self.endpoint_id)
            and (self.business_id is None or view["business_id"] == self.business_id)
            and (self.event_id is None or view["event_id"] == self.event_id)
            and (self.status is None or view["status"] == self.status)
            and (self.event_type is None or view["event_type"] == self.event_type)
        )


@dataclasses.dataclass(frozen=True)
class EventFilter:
    business_id: str | None = None
    event_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None


class Recovery:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis

    # ---- listing ---------------------------------------------------------------------------

    async def list_deliveries(
        self, flt: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first. The cursor is the last index entry looked at, so pages stay stable
        while new deliveries arrive (they sort before every cursor)."""
        if flt.event_id is not None:
            return await self._deliveries_of_event(flt), None
        found, last = await self.page_deliveries(
            flt, limit=limit, after=None if cursor is None else decode_cursor(cursor)
        )
        return [view for _, view in found], None if last is None else encode_cursor(last)

    async def page_deliveries(
        self, flt: DeliveryFilter, *, limit: int, after: str | None
    ) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """Up to ``limit`` deliveries below index entry ``after`` (None: from the newest), each
        with its index entry, and the last entry looked at (None when the index is done): what
        a page across cells merges (``store/routed.py``)."""
        if flt.endpoint_id is not None:
            index = keys.index_endpoint(flt.endpoint_id)
        elif flt.business_id is not None:
            index = keys.index_business(flt.business_id)
        else:
            index = keys.INDEX_ALL
        high = "+"
        if flt.until_ms is not None:
            high = "(" + _entry(flt.until_ms + 1)
        if after is not None and (high == "+" or after < high[1:]):
            high = "(" + after
        low = "-" if flt.since_ms is None else "[" + _entry(flt.since_ms)
        found: list[tuple[str, dict[str, Any]]] = []
        scanned = 0
        last = None
        while scanned < SCAN_LIMIT:
            members = [
                as_str(m)
                for m in await self.redis.zrevrangebylex(index, high, low, start=0, num=SCAN_BATCH)
            ]
            if not members:
                return found, None
            views = await self._views([m.split(":", 1)[1] for m in members])
            for member, view in zip(members, views, strict=True):
                scanned += 1
                last = member
                if view is not None and flt.accepts(view):
                    found.append((member, view))
                    if len(found) == limit:
                        return found, member
            if len(members) < SCAN_BATCH:
                return found, None
            high = "(" + members[-1]
        return found, last

    async def list_events(
        self, flt: EventFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Recent events, newest first (``page_events``); the cursor works as in
        ``list_deliveries``."""
        found, last = await self.page_events(
            flt, limit=limit, after=None if cursor is None else decode_cursor(cursor)
        )
        return [event for _, event in found], None if last is None else encode_cursor(last)

    async def page_events(
        self, flt: EventFilter, *, limit: int, after: str | None
    ) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
        """Recent events, newest first, each with its type, business, time and how many of its
        deliveries are in each status; the cursor works as in ``list_deliveries``.

        Events are indexed only through their deliveries: an event's entries in a delivery
        index sit next to each other (one entry time, one ``dlv_{event stem}`` prefix), so
        each run of entries is one event, and a page ends only after an event's last entry.
        An event that matched no endpoint has no delivery and is not listed.
        """
        index = keys.index_business(flt.business_id) if flt.business_id else keys.INDEX_ALL
        high = "+" if flt.until_ms is None else "(" + _entry(flt.until_ms + 1)
        if after is not None and (high == "+" or after < high[1:]):
            high = "(" + after
        low = "-" if flt.since_ms is None else "[" + _entry(flt.since_ms)
        found: list[tuple[str, dict[str, Any]]] = []
        current: dict[str, Any] | None = None
        top = ""  # the current event's first index entry: where it sorts among other cells''
        scanned = 0
        last = ""

        def close(event: dict[str, Any] | None) -> None:
            if event is not None and event["deliveries"] and self._event_accepts(flt, event):
                found.append((top, event))

        while True:
            members = [
                as_str(m)
                for m in await self.redis.zrevrangebylex(index, high, low, start=0, num=SCAN_BATCH)
            ]
            ids = [m.split(":", 1)[1] for m in members]
            async with self.redis.pipeline(transaction=False) as pipe:
                for delivery_id in ids:
                    pipe.hmget(keys.delivery(delivery_id), ["status", "event_type", "business_id"])
                fields = await pipe.execute()
            for member, delivery_id, (status, event_type, business) in zip(
                members, ids, fields, strict=True
            ):
                event_id = event_of(delivery_id)
                if current is None or current["id"] != event_id:
                    close(current)  # its entries are all read: a new event begins here
                    if len(found) == limit or scanned >= SCAN_LIMIT:
                        return found, last
                    top = member
                    current = {
                        "id": event_id,
                        "type": None,
                        "business_id": None,
                        "created_at": iso_ms(int(member.split(":", 1)[0])),
                        "deliveries": 0,
                        "statuses": {},
                    }
                scanned += 1
                last = member
                if status is None:  # expired; its index entry is trimmed later
                    continue
                current["type"] = as_str(event_type)
                current["business_id"] = as_str(business)
                current["deliveries"] += 1
                state = as_str(status)
                current["statuses"][state] = current["statuses"].get(state, 0) + 1
            if len(members) < SCAN_BATCH:
                close(current)
                return found, None
            high = "(" + members[-1]

    @staticmethod
    def _event_accepts(flt: EventFilter, event: dict[str, Any]) -> bool:
        return (flt.event_type is None or event["type"] == flt.event_type) and (
            flt.business_id is None or event["business_id"] == flt.business_id
        )

    async def _views(self, delivery_ids: list[str]) -> list[dict[str, Any] | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hgetall(keys.delivery(delivery_id))
            raws = await pipe.execute()
        return [
            delivery_view(decode_hash(r), d) if r else None
            for d, r in zip(delivery_ids, raws, strict=True)
        ]

    async def _deliveries_of_event(self, flt: DeliveryFilter) -> list[dict[str, Any]]:
        assert flt.event_id is not None
        views = await self._views(list(await self.store.event_delivery_ids(flt.event_id)))
        return [v for v in views if v is not None and flt.accepts(v)]

    # ---- replays ---------------------------------------------------------------------------

    async def replay_delivery(self, delivery_id: str) -> dict[str, Any]:
        """A new attempt chain for one delivery: same webhook-id, same body."""
        result = await self.store.scripts.replay(delivery_id)
        if result == "gone":
            raise NotFound(f"no delivery {delivery_id!r}")
        if result != "ok":
            messages = {
                "pending": "the delivery is still in progress; it can be replayed once it ends",
                "endpoint_deleted": "the delivery's endpoint was deleted",
                "endpoint_disabled": "the delivery's endpoint is disabled: enable it first",
            }
            raise Conflict(messages[result], code=result)
        return await self.store.get_delivery(delivery_id)

    async def start_replay(
        self,
        endpoint_id: str,
        *,
        since_ms: int,
        until_ms: int,
        include_succeeded: bool,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Replays, in background batches, every matching delivery of an endpoint once.

        Asked for again while the first is still enqueuing, it returns that replay instead of
        starting a second one.
        """
        endpoint = await self.store.get_endpoint(endpoint_id)
        if endpoint["disabled"] and not dry_run:
            raise Conflict("the endpoint is disabled: enable it first", code="endpoint_disabled")
        wanted = {"succeeded", *UNDELIVERED} if include_succeeded else UNDELIVERED
        if dry_run:
            matched = await self._match(endpoint_id, since_ms, until_ms, wanted)
            return {"replay_id": None, "matched": len(matched), "dry_run": True}
        # One bulk replay of an endpoint enqueues at a time (a window given as "1h" differs by
        # milliseconds between two requests, so the window cannot be the key): a second request
        # meanwhile gets the running replay back. The replay is prepared in full under its own
        # id first and only then made the running one, atomically, so the running replay a
        # concurrent request reads is never half-written.
        lock = keys.replay_lock(endpoint_id, "all" if include_succeeded else "failed")
        running = await self.redis.get(lock)
        if running is not None:
            with contextlib.suppress(NotFound):
                return {**await self.get_replay(as_str(running)), "already_running": True}
        replay_id = new_id("rpl", suffix=self.store.id_suffix)
        now = now_ms()
        matched = await self._match(endpoint_id, since_ms, until_ms, wanted)
        key, todo = keys.replay(replay_id), keys.replay_todo(replay_id)
        retention_ms = int(self.store.settings.retention * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "id": replay_id,
                    "endpoint_id": endpoint_id,
                    "business_id": endpoint["business_id"],
                    "since": since_ms,
                    "until": until_ms,
                    "filter": "all" if include_succeeded else "failed",
                    "matched": len(matched),
                    "enqueued": 0,
                    "skipped": 0,
                    "state": "enqueuing",
                    "lock": lock,
                    "created_at": now,
                },
            )
            pipe.pexpire(key, retention_ms)
            for start in range(0, len(matched), 1000):
                pipe.rpush(todo, *matched[start : start + 1000])
            pipe.pexpire(todo, retention_ms)
            await pipe.execute()
        started, current = await self.store.scripts.replay_start(
            replay_id, lock=lock, lock_ttl_ms=REPLAY_LOCK_TTL_MS, now=now
        )
        if not started:
            await self.redis.delete(key, todo)
            return {**await self.get_replay(current), "already_running": True}
        return await self.get_replay(replay_id)

    async def _match(
        self, endpoint_id: str, since_ms: int, until_ms: int, wanted: frozenset[str] | set[str]
    ) -> list[str]:
        """The endpoint's deliveries of the window in a state ``wanted``, oldest first, except
        that the deliveries of one ordering key come in sequence order (a key's events made
        in one millisecond, or by gateways whose clocks differ, may sort otherwise by time):
        the replay then re-sends each key's events in their original order."""
        index = keys.index_endpoint(endpoint_id)
        low, high = "[" + _entry(since_ms), "(" + _entry(until_ms + 1)
        matched: list[tuple[str, str, int]] = []
        while True:
            members = [
                as_str(m) for m in await self.redis.zrangebylex(index, low, high, start=0, num=1000)
            ]
            if not members:
                return _in_key_order(matched)
            ids = [m.split(":", 1)[1] for m in members]
            async with self.redis.pipeline(transaction=False) as pipe:
                for delivery_id in ids:
                    pipe.hmget(keys.delivery(delivery_id), ["status", "okey", "seq"])
                found = await pipe.execute()
            matched += [
                (d, as_str(okey), int(seq or 0))
                for d, (status, okey, seq) in zip(ids, found, strict=True)
                if status and as_str(status) in wanted
            ]
            low = "(" + members[-1]

    async def run_replay_batch(self, replay_id: str, batch: int) -> str:
        """One background step of a bulk replay (the ``replay_batch`` arq job)."""
        return await self.store.scripts.replay_batch(
            replay_id, lock=await self._lock_of(replay_id), batch=batch, size=REPLAY_BATCH
        )

    async def _lock_of(self, replay_id: str) -> str:
        lock = as_str(await awaited(self.redis.hget(keys.replay(replay_id), "lock")))
        return lock or keys.replay_lock("none", replay_id)

    async def get_replay(self, replay_id: str) -> dict[str, Any]:
        raw = decode_hash(await awaited(self.redis.hgetall(keys.replay(replay_id))))
        if not raw:
            raise NotFound(f"no replay {replay_id!r}")
        counts = {k: int(raw.get(k) or 0) for k in ("matched", "enqueued", "skipped")}
        ended = {k: int(raw.get(k) or 0) for k in ("succeeded", "failed", "cancelled")}
        if raw.get("state") == "enqueuing":
            state = "enqueuing"
        elif sum(ended.values()) >= counts["enqueued"]:
            state = "completed"
        else:
            state = "running"
        return {
            "replay_id": replay_id,
            "endpoint_id": raw["endpoint_id"],
            "since": iso_ms(raw["since"]),
            "until": iso_ms(raw["until"]),
            "status": raw["filter"],
            **counts,
            **ended,
            "pending": counts["enqueued"] - sum(ended.values()),
            "state": state,
            "created_at": iso_ms(raw["created_at"]),
        }

    # ---- ordering keys ---------------------------------------------------------------------

    async def blocked_keys(
        self, endpoint_id: str, *, limit: int, cursor: str | None = None
    ) -> dict[str, Any]:
        """The endpoint's blocked ordering keys, longest blocked first: each with its head
        delivery, since when, and how many deliveries wait behind it. ``cursor`` is the
        ``next_cursor`` of the page before (keys unblocked meanwhile shift the pages; none
        is shown twice on one page)."""
        await self.store.get_endpoint(endpoint_id)  # NotFound for an unknown endpoint
        start = 0
        if cursor is not None:
            start = _offset_of(cursor)
        blocked = keys.ordering_blocked(endpoint_id)
        found = await self.redis.zrange(blocked, start, start + limit, withscores=True)
        page = [(as_str(member), int(score)) for member, score in found[:limit]]
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, _since in page:
                pipe.hmget(keys.ordering_state(endpoint_id, key), ["head", "blocked"])
                pipe.zcard(keys.ordering_queue(endpoint_id, key))
            replies = await pipe.execute()
        rows = []
        for (key, since), state, waiting in zip(page, replies[0::2], replies[1::2], strict=True):
            head, blocked_at = as_str(state[0]), as_str(state[1])
            if not head or not blocked_at:
                continue  # resumed since the index was read
            rows.append(
                {
                    "key": key,
                    "head_delivery_id": head,
                    "blocked_since": iso_ms(blocked_at or since),
                    "waiting": int(waiting),
                }
            )
        more = len(found) > limit
        return {"data": rows, "next_cursor": _offset_cursor(start + limit) if more else None}

    async def skip_key(self, endpoint_id: str, ordering_key: str) -> dict[str, Any]:
        """Moves an ordering key past its head: a blocked head stays failed (replayable), one
        still being retried ends failed (``skipped``); the key's next delivery goes. Refused
        while an attempt of the head is open (``Conflict``), so nothing overtakes it."""
        await self.store.get_endpoint(endpoint_id)
        state, head, going = await self.store.scripts.ordering_skip(endpoint_id, ordering_key)
        if state == "none":
            raise NotFound(f"no delivery holds ordering key {ordering_key!r} on this endpoint")
        if state == "in_flight":
            raise Conflict(
                f"an attempt of the key's head {head} is open right now; try again in a few "
                "seconds",
                code="attempt_in_flight",
                details={"head_delivery_id": head},
            )
        return {"key": ordering_key, "skipped_delivery_id": head, "next_delivery_id": going or None}

    # ---- endpoint state --------------------------------------------------------------------

    async def disable(self, endpoint_id: str, reason: str) -> dict[str, Any]:
        """Disables an endpoint: its pending deliveries are cancelled, new ones are skipped."""
        result = await self.store.scripts.disable(endpoint_id, reason)
        if result == "gone":
            raise NotFound(f"no endpoint {endpoint_id!r}")
        return await self.store.get_endpoint(endpoint_id)

    async def enable(self, endpoint_id: str) -> dict[str, Any]:
        await self.store.write_if_exists(
            keys.endpoint(endpoint_id),
            endpoint_id,
            lambda _raw: {
                "disabled": "0",
                "disabled_reason": "",
                "disabled_at": "",
                "failing_since": "",
                "consecutive_failures": 0,
                "updated_at": now_ms(),
            },
        )
        return await self.store.get_endpoint(endpoint_id)

    async def send_test(self, endpoint_id: str) -> Ingested:
        """A signed ``hookgate.test`` event through the normal path, to this endpoint only."""
        endpoint = await self.store.get_endpoint(endpoint_id)
        if endpoint["disabled"]:
            raise Conflict("the endpoint is disabled: enable it first", code="endpoint_disabled")
        event = EventIn(
            business_id=endpoint["business_id"],
            type="hookgate.test",
            timestamp=now_timestamp(),
            data={"endpoint_id": endpoint_id, "message": "a test event sent by hookgate"},
        )
        [result] = await self.store.ingest(
            [PreparedEvent(event, None, new_id("tst"), only_endpoint=endpoint_id)]
        )
        assert isinstance(result, Ingested)
        return result
