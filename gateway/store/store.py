"""hookgate's Redis store: every read and write of events, endpoints and deliveries.

The gateway and the worker both go through this module; key names come from ``keys.py`` and
each multi-key state change is one Lua script, called through ``scripts.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import WatchError

from gateway.core import codec, listen
from gateway.core.catalog import OPERATIONAL_TYPES
from gateway.core.cells import DEFAULT_CELL, id_suffix
from gateway.core.clock import iso_ms, now_ms
from gateway.core.errors import (
    BusinessMoved,
    ConfigError,
    Conflict,
    DomainError,
    NotFound,
    ValidationFailed,
)
from gateway.core.headers import masked
from gateway.core.ids import id_time_ms, new_id, new_secret
from gateway.core.model import Claim, EndpointFields, EventIn, Finished, Ingested, PreparedEvent
from gateway.core.secretbox import SecretBox, SecretBoxError
from gateway.core.settings import Settings
from gateway.core.signing_keys import ED25519, HMAC, SCHEMES, new_private_key, public_key_of
from gateway.store import keys, queue, sealed_headers
from gateway.store.scripts import ClaimReply, NewEvent, Scripts

T = TypeVar("T")

OPENED_CACHE_SIZE = 10_000  # endpoints whose opened secrets a process keeps
DEFAULT_MAX_IN_FLIGHT = 10  # attempts open at once per endpoint, unless the endpoint says
# Bodies sent to Redis in one round trip of ``ingest``: a 16 MB batch sent at once is a
# 16 MB write the event loop makes in one go (copied, and through loopback TCP on its own
# time), holding every other request for tens of ms; in 2 MB groups each write is short and
# Redis runs one group while the loop serves others.
INGEST_ROUND_TRIP_BYTES = 2 * 1024 * 1024
TYPES_FRESH_FOR = 5.0  # seconds another cell trusts its copy of the registered event types


def encode_envelope(event: EventIn) -> bytes:
    """The delivered body, serialised once at ingest: what is signed is what is sent."""
    envelope: dict[str, Any] = {
        "business_id": event.business_id,
        "type": event.type,
        "timestamp": event.timestamp,
        "data": event.data,
    }
    if event.ordering_key is not None:
        envelope["ordering_key"] = event.ordering_key
    return codec.dumps(envelope)


def encoded(item: PreparedEvent) -> PreparedEvent:
    """``item`` with its body encoded now and its parsed data dropped: what a batch keeps of
    each event while it checks the next (the data of a thousand events is several times the
    bytes of their bodies)."""
    event = dataclasses.replace(item.event, data={})
    return dataclasses.replace(item, event=event, body=encode_envelope(item.event))


def fingerprint(raw: Any) -> str:
    """What an Idempotency-Key is bound to: the request as the client sent it."""
    return hashlib.sha256(codec.dumps(raw, sort_keys=True)).hexdigest()


async def awaited(result: Awaitable[T] | T) -> T:
    """redis-py types every command as ``Awaitable[T] | T``; on the asyncio client it awaits."""
    return await cast(Awaitable[T], result)


def as_str(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def decode_hash(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}


class Store:
    """The store over one Redis connection pool (injected; never global)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        catalog: frozenset[str],
        cell: str = DEFAULT_CELL,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.catalog = catalog
        self.cell = cell  # the cell this store is (``core/cells.py``); its ids carry it
        self.id_suffix = id_suffix(cell)
        # Where registered event types are read from when this is not the first cell (they
        # live in the first cell only): set by ``store/cells.py``.
        self.types_from: Store | None = None
        self._types_cache: tuple[float, frozenset[str]] = (-1e9, frozenset())
        try:
            # Signing secrets are sealed with the endpoint id as context: a Redis dump yields
            # nothing usable, and a sealed secret copied to another endpoint does not open.
            self.box = SecretBox.from_text(settings.secret_key)
        except ValueError as exc:
            raise ConfigError(f"HOOKGATE_SECRET_KEY: {exc}") from None
        self.scripts = Scripts(redis, settings, cell)
        self._opened_cache: dict[tuple[str, str | bytes], tuple[tuple[str, int | None], ...]] = {}
        self._opened_headers: dict[tuple[str, str | bytes], tuple[tuple[str, str], ...]] = {}

    # ---- ingest ---------------------------------------------------------------------------

    async def ingest(self, items: Sequence[PreparedEvent]) -> list[Ingested | DomainError]:
        """Store events and their deliveries and enqueue first attempts, one atomic step each.

        The items go to Redis in one round trip per ``INGEST_ROUND_TRIP_BYTES`` of bodies (one
        for all but the largest batches). When this returns, each ``Ingested`` is written
        (durable as far as the Redis AOF setting makes it); when it raises, the round trips
        before may have stored their items.
        """
        now = now_ms()
        ttl_ms = int(self.settings.idempotency_ttl * 1000)
        registered = await self._registered_elsewhere(items)
        ids: list[str] = []
        replies: list[tuple[str, str]] = []
        group: list[NewEvent] = []
        filled = 0
        for n, item in enumerate(items, 1):
            ev = item.event
            ids.append(new_id("evt", now, self.id_suffix))
            group.append(
                NewEvent(
                    event_id=ids[-1],
                    type=ev.type,
                    business_id=ev.business_id,
                    body=item.body or encode_envelope(ev),
                    check_type=ev.type not in self.catalog
                    and ev.type not in OPERATIONAL_TYPES
                    and ev.type not in registered,
                    fingerprint=item.fingerprint,
                    only_endpoint=item.only_endpoint,
                    idempotency_key=item.idempotency_key,
                    ordering_key=ev.ordering_key,
                )
            )
            filled += len(group[-1].body)
            if filled >= INGEST_ROUND_TRIP_BYTES or n == len(items):
                replies += await self.scripts.ingest_many(group, now=now, idempotency_ttl_ms=ttl_ms)
                group, filled = [], 0
        results: list[Ingested | DomainError] = []
        for item, event_id, (kind, payload) in zip(items, ids, replies, strict=True):
            results.append(await self._ingest_result(item, event_id, kind, payload))
        return results

    async def _registered_elsewhere(self, items: Sequence[PreparedEvent]) -> frozenset[str]:
        """The custom types of ``items`` registered in the first cell, when this store is
        another cell (whose own registry is empty: the ingest script would refuse them)."""
        if self.types_from is None:
            return frozenset()
        custom = {
            item.event.type
            for item in items
            if item.event.type not in self.catalog and item.event.type not in OPERATIONAL_TYPES
        }
        if not custom:
            return frozenset()
        known = await self.types_from.registered_types(custom)
        return frozenset(custom & known)

    async def registered_types(self, wanted: set[str] | None = None) -> frozenset[str]:
        """The registered custom types, read at most every ``TYPES_FRESH_FOR`` seconds, or at
        once (still at most ten times a second) when one of ``wanted`` is not among them."""
        at, known = self._types_cache
        age = time.monotonic() - at
        missing = wanted is not None and not wanted <= known
        if age > TYPES_FRESH_FOR or (missing and age > 0.1):
            known = frozenset(as_str(k) for k in await awaited(self.redis.hkeys(keys.EVENT_TYPES)))
            self._types_cache = (time.monotonic(), known)
        return known

    async def answer_duplicate(self, item: PreparedEvent, held: str) -> Ingested | DomainError:
        """The answer to ``item`` whose Idempotency-Key holds ``held`` here."""
        return await self._ingest_result(item, "", "duplicate", held)

    async def _ingest_result(
        self, item: PreparedEvent, event_id: str, kind: str, payload: str
    ) -> Ingested | DomainError:
        if kind == "created":
            return Ingested(event_id, tuple(payload.split(",")) if payload else (), duplicate=False)
        if kind == "moved":
            return BusinessMoved(item.event.business_id, payload)
        if kind == "unknown_type":
            return ValidationFailed(
                "type", f"unknown event type {item.event.type!r}", code="unknown_event_type"
            )
        prior_fp, _, prior_id = payload.partition("|")
        if prior_fp != item.fingerprint:
            return Conflict(
                "Idempotency-Key was already used with a different request body",
                code="idempotency_conflict",
                details={"event_id": prior_id},
            )
        return Ingested(prior_id, await self.event_delivery_ids(prior_id), duplicate=True)

    async def event_delivery_ids(self, event_id: str) -> tuple[str, ...]:
        """An event's deliveries: ``dlv_{event id stem}{n:x}`` for n = 1, 2, … while they exist
        (they are made together and expire together)."""
        stem, suffix = "dlv_" + event_id[4:30], event_id[30:]
        found: list[str] = []
        while True:
            batch = [f"{stem}{n:x}{suffix}" for n in range(len(found) + 1, len(found) + 17)]
            async with self.redis.pipeline(transaction=False) as pipe:
                for delivery_id in batch:
                    pipe.exists(keys.delivery(delivery_id))
                present = await pipe.execute()
            for delivery_id, exists in zip(batch, present, strict=True):
                if not exists:
                    return tuple(found)
                found.append(delivery_id)

    # ---- event types -----------------------------------------------------------------------

    async def known_types(self) -> frozenset[str]:
        custom = await awaited(self.redis.hkeys(keys.EVENT_TYPES))
        return self.catalog | OPERATIONAL_TYPES | {as_str(k) for k in custom}

    async def register_type(self, name: str, description: str) -> bool:
        """Registers a custom event type; False when it already existed."""
        if name in self.catalog or name in OPERATIONAL_TYPES:
            return False
        created = bool(await awaited(self.redis.hsetnx(keys.EVENT_TYPES, name, description)))
        self._types_cache = (-1e9, frozenset())  # other cells read it again, at once
        await self.scripts.wait_for_replicas()
        return created

    async def list_types(self) -> list[dict[str, Any]]:
        custom = decode_hash(await awaited(self.redis.hgetall(keys.EVENT_TYPES)))
        out = [{"name": t, "source": "catalog", "description": ""} for t in sorted(self.catalog)]
        out += [
            {"name": t, "source": "registered", "description": d} for t, d in sorted(custom.items())
        ]
        return out

    # ---- endpoints -------------------------------------------------------------------------

    async def create_endpoint(self, fields: EndpointFields) -> tuple[dict[str, Any], str | None]:
        """Stores a new endpoint and returns it with its signing secret (None for an ed25519
        endpoint: its private key is never shown, the view holds its public key).

        Refused with ``Conflict`` (``endpoint_limit``) when its business already has
        ``max_endpoints_per_business`` endpoints (counted and written in one atomic step), and
        with ``ValidationFailed`` when ``max_in_flight`` is above the configured bound.
        """
        assert fields.business_id is not None and fields.url is not None
        self._check_in_flight(fields)
        signing = fields.signing or HMAC
        if signing not in SCHEMES:
            raise ValidationFailed("signing", "must be one of " + ", ".join(SCHEMES))
        endpoint_id = new_id("ep", suffix=self.id_suffix)
        entry, secret = self._new_signing_key(signing, endpoint_id)
        mapping = self._new_endpoint(endpoint_id, entry, signing, fields)
        limit = self.settings.max_endpoints_per_business
        stored, count = await self.scripts.create_endpoint(
            endpoint_id, fields.business_id, mapping, limit=limit
        )
        if not stored:
            raise _endpoint_limit(limit, count)
        view = await self.get_endpoint(endpoint_id)
        view["headers"] = dict(fields.headers or {})  # in clear this once, like the secret
        return view, secret

    def _new_endpoint(
        self, endpoint_id: str, entry: dict[str, Any], signing: str, fields: EndpointFields
    ) -> dict[str, Any]:
        """The hash of a new endpoint: its first signing key ``entry`` (sealed) and its custom
        headers sealed."""
        assert fields.business_id is not None and fields.url is not None
        now = now_ms()
        return {
            "id": endpoint_id,
            "business_id": fields.business_id,
            "url": fields.url,
            "types": " ".join(fields.event_types or ()),
            "description": fields.description or "",
            "headers": sealed_headers.seal(self.box, endpoint_id, fields.headers or {}),
            "max_in_flight": fields.max_in_flight
            or min(DEFAULT_MAX_IN_FLIGHT, self.settings.max_in_flight),
            "signing": signing,
            "secrets": json.dumps([entry]),
            "disabled": "0",
            "ordered": "1" if fields.ordered else "0",
            "on_exhausted": fields.on_exhausted or "block",
            "created_at": now,
            "updated_at": now,
        }

    async def open_listen_session(
        self, business_id: str, name: str, event_types: tuple[str, ...]
    ) -> tuple[dict[str, Any], str, bool]:
        """The business's listen session ``name``, stored now if it has none: (the endpoint,
        its current signing secret, whether it was created).

        A session is an endpoint of kind ``listen`` (``gateway/core/listen.py``) delivering one
        at a time, in ingest order (a delivery whose retries are spent is passed over, not
        waited for). Found again, it takes ``event_types`` as its subscription (empty: every
        type). Refused like ``create_endpoint`` at the business's endpoint limit.
        """
        fields = EndpointFields(
            business_id=business_id,
            url=listen.session_url(name),
            event_types=event_types,
            description=f"hookgate listen session {name}",
            max_in_flight=1,
            ordered=True,
            on_exhausted="skip",
        )
        endpoint_id = new_id("ep", suffix=self.id_suffix)
        entry, _ = self._new_signing_key(HMAC, endpoint_id)
        mapping = self._new_endpoint(endpoint_id, entry, HMAC, fields)
        mapping.update(kind=listen.KIND, session=name, last_connected_at=mapping["created_at"])
        limit = self.settings.max_endpoints_per_business
        kind, value = await self.scripts.listen_session(
            endpoint_id, business_id, name, mapping, limit=limit
        )
        if kind == "limit":
            raise _endpoint_limit(limit, int(value))
        endpoint_id = value
        key = keys.endpoint(endpoint_id)
        types = " ".join(event_types)
        if kind == "found" and (await self._endpoint_raw(endpoint_id)).get("types", "") != types:
            await self.write_if_exists(
                key, endpoint_id, lambda _raw: {"types": types, "updated_at": now_ms()}
            )
        raw = await self._endpoint_raw(endpoint_id)
        newest = self._opened(raw["secrets"], endpoint_id)[0][0]
        return await self.get_endpoint(endpoint_id), newest, kind == "created"

    def _check_in_flight(self, fields: EndpointFields) -> None:
        bound = self.settings.max_in_flight
        if fields.max_in_flight is not None and fields.max_in_flight > bound:
            raise ValidationFailed(
                "max_in_flight", f"must be at most {bound} (HOOKGATE_MAX_IN_FLIGHT)"
            )

    def _seal(self, secret: str, endpoint_id: str) -> str:
        return self.box.seal(secret, context=endpoint_id.encode())

    def _new_signing_key(self, signing: str, endpoint_id: str) -> tuple[dict[str, Any], str | None]:
        """A new entry of the endpoint's ``secrets`` list, and what an answer may show of it.

        An HMAC secret is sealed and shown once. An ed25519 ``whsk_`` key is sealed the same
        way (so rotation, grace periods and the opened-key cache treat both alike) and never
        shown; its ``whpk_`` public key, which is no secret, is kept beside it in clear for
        every read.
        """
        if signing == ED25519:
            private_key = new_private_key()
            sealed = self._seal(private_key, endpoint_id)
            return {
                "secret": sealed,
                "expires_at": None,
                "public_key": public_key_of(private_key),
            }, None
        secret = new_secret()
        return {"secret": self._seal(secret, endpoint_id), "expires_at": None}, secret

    def _open_secrets(self, raw: str | bytes, endpoint_id: str, now_s: float) -> tuple[str, ...]:
        """The endpoint's secrets that still sign, in clear, newest first."""
        return tuple(
            secret
            for secret, expires_at in self._opened(raw, endpoint_id)
            if expires_at is None or expires_at / 1000 > now_s
        )

    def _opened(self, raw: str | bytes, endpoint_id: str) -> tuple[tuple[str, int | None], ...]:
        """The sealed secrets ``raw`` opened, kept for the next attempt to the endpoint (a
        rotation changes ``raw``, so a stale entry is never used; bounded)."""
        cache_key = (endpoint_id, raw)
        opened = self._opened_cache.get(cache_key)
        if opened is None:
            opened = tuple(
                (self.box.open(s["secret"], context=endpoint_id.encode()), s["expires_at"])
                for s in json.loads(raw)
            )
            if len(self._opened_cache) >= OPENED_CACHE_SIZE:
                self._opened_cache.clear()
            self._opened_cache[cache_key] = opened
        return opened

    def _open_headers(self, raw: str | bytes, endpoint_id: str) -> dict[str, str]:
        """The endpoint's custom headers in clear (either layout, ``sealed_headers``), kept
        like its opened secrets; raises ``SecretBoxError`` when a value does not open."""
        cache_key = (endpoint_id, raw)
        opened = self._opened_headers.get(cache_key)
        if opened is None:
            opened = tuple(sealed_headers.open_values(self.box, endpoint_id, raw).items())
            if len(self._opened_headers) >= OPENED_CACHE_SIZE:
                self._opened_headers.clear()
            self._opened_headers[cache_key] = opened
        return dict(opened)

    async def _endpoint_raw(self, endpoint_id: str) -> dict[str, str]:
        raw = decode_hash(await awaited(self.redis.hgetall(keys.endpoint(endpoint_id))))
        if not raw:
            raise NotFound(f"no endpoint {endpoint_id!r}")
        return raw

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        """The endpoint with its health: last success, failing streak, 24 h success rate."""
        raw = await self._endpoint_raw(endpoint_id)
        hour = now_ms() // 3_600_000
        fields = [f"{h}:{kind}" for h in range(hour - 23, hour + 1) for kind in ("ok", "fail")]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.endpoint_stats(endpoint_id), fields)
            pipe.zcount(keys.endpoint_inflight(endpoint_id), now_ms(), "+inf")
            pipe.zcard(keys.ordering_blocked(endpoint_id))
            counts, in_flight, blocked = await pipe.execute()
        hourly = [int(c or 0) for c in counts]
        ok, failed = sum(hourly[0::2]), sum(hourly[1::2])
        view = endpoint_view(raw)
        view["health"] = {
            "last_success_at": iso_ms(raw.get("last_success_at")),
            "consecutive_failures": int(raw.get("consecutive_failures") or 0),
            "failing_since": iso_ms(raw.get("failing_since")),
            "attempts_24h": ok + failed,
            "success_rate_24h": round(ok / (ok + failed), 4) if ok + failed else None,
            "in_flight": int(in_flight),
            "blocked_keys": int(blocked),
            "hourly": [
                {
                    "hour": iso_ms((hour - 23 + i) * 3_600_000),
                    "ok": hourly[2 * i],
                    "failed": hourly[2 * i + 1],
                }
                for i in range(24)
            ],
        }
        return view

    async def delivery_outcomes(self, endpoint_ids: Sequence[str]) -> list[dict[str, int]]:
        """Per endpoint (in order), the deliveries its attempts ended in the last 24 h, by the
        hour they ended: ``succeeded``, and ``failed`` for good (retries spent). A delivery
        that succeeded after retries counts once, as succeeded; replays count again; cancelled
        and skipped deliveries do not count."""
        hour = now_ms() // 3_600_000
        fields = [f"{h}:{kind}" for h in range(hour - 23, hour + 1) for kind in ("dok", "dfail")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for endpoint_id in endpoint_ids:
                pipe.hmget(keys.endpoint_stats(endpoint_id), fields)
            replies = await pipe.execute()
        return [
            {
                "succeeded": sum(int(c or 0) for c in counts[0::2]),
                "failed": sum(int(c or 0) for c in counts[1::2]),
            }
            for counts in replies
        ]

    async def list_endpoints(self, business_id: str | None) -> list[dict[str, Any]]:
        """A business's endpoints, or every endpoint of this cell but the copies its moved
        businesses left behind (their own cell lists them)."""
        key = keys.business_endpoints(business_id) if business_id else keys.ENDPOINTS
        ids = sorted(as_str(i) for i in await awaited(self.redis.smembers(key)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for endpoint_id in ids:
                pipe.hgetall(keys.endpoint(endpoint_id))
            raws = [decode_hash(r) for r in await pipe.execute()]
        return [
            endpoint_view(r)
            for r in raws
            if r and (business_id is not None or not r.get("moved_to"))
        ]

    async def update_endpoint(self, endpoint_id: str, fields: EndpointFields) -> dict[str, Any]:
        self._check_in_flight(fields)
        if (await self._endpoint_raw(endpoint_id)).get("kind") == listen.KIND:
            _check_listen_change(fields)
        mapping: dict[str, Any] = {"updated_at": now_ms()}
        if fields.url is not None:
            mapping["url"] = fields.url
        if fields.event_types is not None:
            mapping["types"] = " ".join(fields.event_types)
        if fields.description is not None:
            mapping["description"] = fields.description
        if fields.headers is not None:
            # A PATCH's headers replace the whole set (validation refuses a masked value).
            mapping["headers"] = sealed_headers.seal(self.box, endpoint_id, fields.headers)
        if fields.max_in_flight is not None:
            mapping["max_in_flight"] = fields.max_in_flight
        if fields.ordered is not None:
            mapping["ordered"] = "1" if fields.ordered else "0"
        if fields.on_exhausted is not None:
            mapping["on_exhausted"] = fields.on_exhausted
        key = keys.endpoint(endpoint_id)
        await self.write_if_exists(key, endpoint_id, lambda _raw: mapping)
        if fields.ordered is False:
            # Deliveries waiting behind an ordering key go now (a no-op if none wait).
            await self.scripts.ordering_release(endpoint_id)
        return await self.get_endpoint(endpoint_id)

    async def write_if_exists(self, key: str, endpoint_id: str, make: Any) -> None:
        """HSET what ``make(current)`` returns, only if the endpoint still exists (optimistic)."""
        for _ in range(20):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = decode_hash(await awaited(pipe.hgetall(key)))
                    if not raw:
                        raise NotFound(f"no endpoint {endpoint_id!r}")
                    mapping = make(raw)
                    if "headers" not in mapping:
                        # Headers in clear (stored before values were sealed) or under an
                        # older key: any write seals them under the newest key.
                        sealed = sealed_headers.resealed(self.box, endpoint_id, raw.get("headers"))
                        if sealed is not None:
                            mapping["headers"] = sealed
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping=mapping)
                    await pipe.execute()
                    await self.scripts.wait_for_replicas()
                    return
                except WatchError:
                    continue
        raise Conflict("the endpoint is being changed concurrently; try again")

    async def rotate_secret(self, endpoint_id: str) -> tuple[dict[str, Any], str | None]:
        """A new secret (an ed25519 endpoint: key pair) signs from now on; the old ones keep
        signing for the grace period. Returns the endpoint and the new secret, None for an
        ed25519 endpoint (its new public key heads the view's ``public_keys``)."""
        key = keys.endpoint(endpoint_id)
        shown: list[str | None] = [None]

        def make(raw: dict[str, str]) -> dict[str, Any]:
            now = now_ms()
            until = now + int(self.settings.rotation_grace * 1000)
            entry, shown[0] = self._new_signing_key(raw.get("signing") or HMAC, endpoint_id)
            kept: list[dict[str, Any]] = [entry]
            for old in json.loads(raw["secrets"]):
                expires = old["expires_at"]
                expires = until if expires is None else min(expires, until)
                if expires > now:
                    kept.append({**old, "expires_at": expires})  # an ed25519 key's public_key too
            return {"secrets": json.dumps(kept), "updated_at": now}

        await self.write_if_exists(key, endpoint_id, make)
        return await self.get_endpoint(endpoint_id), shown[0]

    async def verification_keys_for_url(self, url: str) -> list[str]:
        """What verifies the deliveries to ``url`` now: each HMAC endpoint's ``whsec_`` secrets
        and each ed25519 endpoint's ``whpk_`` public keys. For ``hookgate dev``'s sample
        receiver only, which stands in for the merchants' side."""
        ids = await awaited(self.redis.smembers(keys.ENDPOINTS))
        found: list[str] = []
        for endpoint_id in ids:
            raw_url, raw_secrets, signing = await awaited(
                self.redis.hmget(keys.endpoint(as_str(endpoint_id)), ["url", "secrets", "signing"])
            )
            if as_str(raw_url) != url or not raw_secrets:
                continue
            if as_str(signing) == ED25519:
                found += signing_public_keys(json.loads(raw_secrets), now_ms())
            else:
                found += self._open_secrets(raw_secrets, as_str(endpoint_id), time.time())
        return found

    async def delete_endpoint(self, endpoint_id: str, reason: str = "endpoint_deleted") -> None:
        """Deletes the endpoint and cancels its pending deliveries (with ``reason``); a listen
        session's name, online mark and outbox go with it."""
        raw = await self._endpoint_raw(endpoint_id)
        # A listen session's name is freed only while it still names this endpoint: a session
        # of the same name opened meanwhile keeps it.
        names = keys.business_listen_sessions(raw["business_id"])
        listening = raw.get("kind") == listen.KIND
        for _ in range(20):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    named = False
                    if listening:
                        await pipe.watch(names)
                        held = await awaited(pipe.hget(names, raw.get("session", "")))
                        named = as_str(held) == endpoint_id
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.srem(keys.business_endpoints(raw["business_id"]), endpoint_id)
                    pipe.srem(keys.ENDPOINTS, endpoint_id)
                    pipe.delete(keys.endpoint(endpoint_id), keys.ordering_blocked(endpoint_id))
                    # its deliveries stay listable until they expire, and so does their index
                    pipe.pexpire(
                        keys.index_endpoint(endpoint_id), int(self.settings.retention * 1000)
                    )
                    if listening:
                        pipe.delete(
                            keys.listen_online(endpoint_id), keys.listen_outbox(endpoint_id)
                        )
                        pipe.zrem(keys.LISTEN_SESSIONS, endpoint_id)
                        if named:
                            pipe.hdel(names, raw.get("session", ""))
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        else:
            raise Conflict("the endpoint is being changed concurrently; try again")
        # Pending deliveries left behind are cancelled here, and by the worker's claim otherwise.
        await self.scripts.cancel_endpoint(endpoint_id, reason)

    # ---- reads -----------------------------------------------------------------------------

    async def business_of(self, kind: str, object_id: str) -> str | None:
        """The business an event (``evt``), endpoint (``ep``), delivery (``dlv``) or replay
        (``rpl``) belongs to; None when there is no such thing."""
        if kind == "evt":
            body = await awaited(self.redis.get(keys.event_body(object_id)))
            return None if body is None else str(json.loads(body)["business_id"])
        if kind in ("ep", "dlv"):
            key = keys.endpoint(object_id) if kind == "ep" else keys.delivery(object_id)
            return as_str(await awaited(self.redis.hget(key, "business_id"))) or None
        if kind == "rpl":
            business, endpoint_id = await awaited(
                self.redis.hmget(keys.replay(object_id), ["business_id", "endpoint_id"])
            )
            if business is None and endpoint_id is not None:  # recorded before replays kept it
                return await self.business_of("ep", as_str(endpoint_id))
            return as_str(business) or None
        raise ValueError(f"no business of a {kind!r}")

    async def get_event(self, event_id: str) -> dict[str, Any]:
        body = await awaited(self.redis.get(keys.event_body(event_id)))
        if body is None:
            raise NotFound(f"no event {event_id!r}")
        payload = json.loads(body)
        ids = await self.event_delivery_ids(event_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hgetall(keys.delivery(delivery_id))
            deliveries = await pipe.execute()
        return {
            "id": event_id,
            "business_id": payload["business_id"],
            "type": payload["type"],
            "created_at": iso_ms(id_time_ms(event_id)),
            "payload": payload,
            "deliveries": [
                delivery_view(decode_hash(d), i) for i, d in zip(ids, deliveries, strict=True) if d
            ],
        }

    async def get_delivery(self, delivery_id: str) -> dict[str, Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.delivery(delivery_id))
            pipe.lrange(keys.delivery_attempts(delivery_id), 0, -1)
            raw, attempts = await pipe.execute()
        if not raw:
            raise NotFound(f"no delivery {delivery_id!r}")
        view = delivery_view(decode_hash(raw), delivery_id)
        view["attempts"] = [attempt_view(json.loads(a)) for a in attempts]
        return view

    async def metrics(self) -> tuple[dict[str, str], int, int, int]:
        """The counters, the jobs on arq's queue, the pending deliveries with a job due, and
        those waiting with none behind their ordering key's head."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.METRICS)
            pipe.zcard(queue.QUEUE)
            pipe.zcard(keys.DUE)
            pipe.zcard(keys.WAITING)
            counters, queued, due, waiting = await pipe.execute()
        return decode_hash(counters), int(queued), int(due), int(waiting)

    # ---- worker side -----------------------------------------------------------------------

    def _lease_ms(self) -> int:
        """How long an attempt holds its endpoint slot unless it finishes first."""
        return int((self.settings.delivery_timeout + 10) * 1000)

    async def take_and_claim(
        self,
        job_ids: Sequence[bytes],
        *,
        wanted: int,
        in_progress_ms: int,
        busy_defer_ms: int,
        offline_defer_ms: int = listen.OFFLINE_DEFER_MS,
    ) -> list[tuple[str, int | Claim]]:
        """Takes up to ``wanted`` of the due jobs ``job_ids`` (from arq's poll) in one atomic
        step, claiming the attempt of each attempt job (``lua/take_and_claim.lua``). An attempt
        whose endpoint is at its cap waits ``busy_defer_ms`` (1-3 times), one of a listen
        session no client is connected to ``offline_defer_ms``.

        Returns (job id, claim) for attempts to make now and (job id, queue score) for other
        jobs, which arq runs itself.
        """
        taken = await self.scripts.take_and_claim(
            job_ids,
            wanted=wanted,
            in_progress_ms=in_progress_ms,
            lease_ms=self._lease_ms(),
            busy_defer_ms=busy_defer_ms,
            default_cap=DEFAULT_MAX_IN_FLIGHT,
            max_cap=self.settings.max_in_flight,
            offline_defer_ms=offline_defer_ms,
        )
        return [
            (job_id, what if isinstance(what, int) else self._claim_of(what))
            for job_id, what in taken
        ]

    def _claim_of(self, reply: ClaimReply) -> Claim:
        endpoint_id = as_str(reply.endpoint_id)
        try:
            opened = self._open_secrets(reply.secrets, endpoint_id, time.time())
            secret_error = None
        except SecretBoxError:
            opened, secret_error = (), "secret_unavailable: HOOKGATE_SECRET_KEY cannot open it"
        try:
            headers = self._open_headers(reply.headers, endpoint_id)
        except (SecretBoxError, ValueError):  # never sent without them: they may be the
            headers = {}  # receiver's credentials; the attempt fails and is retried
            secret_error = secret_error or (
                "headers_unavailable: HOOKGATE_SECRET_KEY cannot open the custom headers"
            )
        ordering_key = as_str(reply.ordering_key)
        sequence = int(reply.sequence or 0)
        if ordering_key == listen.ORDERING_KEY:
            # A listen session's own key orders its deliveries; it is not the event's, so no
            # webhook-ordering-key or webhook-sequence header names it.
            ordering_key, sequence = "", 0
        return Claim(
            body=reply.body,
            url=as_str(reply.url),
            secrets=opened,
            secret_error=secret_error,
            headers=headers,
            attempt=int(reply.attempt),
            event_id=as_str(reply.event_id),
            endpoint_id=endpoint_id,
            chain=int(reply.chain),
            event_type=as_str(reply.event_type),
            ordering_key=ordering_key,
            sequence=sequence,
        )

    async def finish_many(self, many: Sequence[Finished]) -> list[str]:
        """Records attempts and moves each delivery on (done, next attempt, failed, gone):
        one script call, each attempt its own atomic step."""
        return await self.scripts.finish_many(many)

    async def trim_indices(self) -> int:
        """Drops delivery index entries older than the retention (their deliveries expired)."""
        oldest = now_ms() - int(self.settings.retention * 1000)
        cutoff = f"({oldest:013d}"
        businesses = await awaited(self.redis.smembers(keys.BUSINESSES))
        endpoints = await awaited(self.redis.smembers(keys.ENDPOINTS))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebylex(keys.INDEX_ALL, "-", cutoff)
            # a waiting delivery's hash expires with the retention; its entry here then goes too
            pipe.zremrangebyscore(keys.WAITING, "-inf", f"({oldest}")
            for business in businesses:
                pipe.zremrangebylex(keys.index_business(as_str(business)), "-", cutoff)
            for endpoint_id in endpoints:
                pipe.zremrangebylex(keys.index_endpoint(as_str(endpoint_id)), "-", cutoff)
            removed = await pipe.execute()
        return sum(int(n) for n in removed)

    async def rescue_due(self, older_than_ms: int, limit: int = 500) -> int:
        """Gives a new job to pending deliveries whose job vanished; returns how many."""
        due = await self.redis.zrangebyscore(keys.DUE, "-inf", older_than_ms, start=0, num=limit)
        rescued = 0
        for raw_id in due:
            delivery_id = as_str(raw_id)
            rescued += await self.scripts.rescue(delivery_id) == "rescued"
        return rescued


def _endpoint_limit(limit: int, count: int) -> Conflict:
    return Conflict(
        f"a business may have at most {limit} endpoints "
        f"(HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS) and this one has {count}; "
        "delete one first",
        code="endpoint_limit",
        details={"limit": limit},
    )


# What a listen session keeps as it is: it is reached through its WebSocket, one delivery at
# a time, in order.
_LISTEN_FIXED = ("url", "headers", "max_in_flight", "ordered", "on_exhausted")


def _check_listen_change(fields: EndpointFields) -> None:
    for name in _LISTEN_FIXED:
        if getattr(fields, name) is not None:
            raise ValidationFailed(
                name,
                "cannot be changed on a listen session (its event_types and description can)",
                code="listen_session",
            )


def event_of(delivery_id: str) -> str:
    """A delivery's event id: ``dlv_{26-character event stem}{n}[.{cell}]`` →
    ``evt_{stem}[.{cell}]``."""
    _, dot, cell = delivery_id.rpartition(".")
    return "evt_" + delivery_id[4:30] + (dot + cell if dot else "")


def signing_public_keys(entries: list[dict[str, Any]], now: int) -> list[str]:
    """The ``whpk_`` public keys of an ed25519 endpoint's ``secrets`` entries that still sign
    at ``now`` (ms), newest first, as the worker picks the keys it signs with."""
    return [
        entry["public_key"]
        for entry in entries
        if entry.get("public_key") and (entry["expires_at"] is None or entry["expires_at"] > now)
    ]


def endpoint_view(raw: dict[str, str]) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secrets, nor its custom header values; an
    ed25519 endpoint's public keys, which are no secret."""
    types = raw.get("types", "")
    entries = json.loads(raw.get("secrets") or "[]")
    signing = raw.get("signing") or HMAC
    public_keys = signing_public_keys(entries, now_ms()) if signing == ED25519 else []
    listening = raw.get("kind") == listen.KIND
    return {
        "id": raw["id"],
        "kind": listen.KIND if listening else listen.HTTP_KIND,
        "business_id": raw["business_id"],
        "url": raw["url"],
        "event_types": types.split() if types else None,
        "description": raw.get("description", ""),
        "headers": masked(sealed_headers.names(raw.get("headers"))),
        "max_in_flight": int(raw.get("max_in_flight") or DEFAULT_MAX_IN_FLIGHT),
        "ordered": raw.get("ordered") == "1",
        "on_exhausted": raw.get("on_exhausted") or "block",
        "disabled": raw.get("disabled") == "1",
        "disabled_reason": raw.get("disabled_reason") or None,
        "disabled_at": iso_ms(raw.get("disabled_at")),
        "secret_count": len(entries),
        "signing": signing,
        "public_key": public_keys[0] if public_keys else None,
        "public_keys": public_keys,
        "session": raw.get("session") if listening else None,
        "last_connected_at": iso_ms(raw.get("last_connected_at")) if listening else None,
        "created_at": iso_ms(raw.get("created_at")),
        "updated_at": iso_ms(raw.get("updated_at")),
    }


def attempt_view(record: dict[str, Any]) -> dict[str, Any]:
    """An attempt as the API shows it. The stored record's ``at`` is the ``webhook-timestamp``
    the attempt sent (unix seconds, as the worker writes it): answered as ``webhook_timestamp``,
    and as an RFC 3339 ``at`` like every other time."""
    sent = int(record["at"])
    return {**record, "at": iso_ms(sent * 1000), "webhook_timestamp": sent}


def delivery_view(raw: dict[str, str], delivery_id: str) -> dict[str, Any]:
    status = raw.get("status", "pending")
    return {
        "id": delivery_id,
        "event_id": event_of(delivery_id),
        "endpoint_id": raw["endpoint_id"],
        "business_id": raw["business_id"],
        "event_type": raw.get("event_type"),
        "status": status,
        "reason": raw.get("reason") or None,
        "attempt_count": int(raw.get("attempts") or 0),
        "replays": int(raw.get("chain") or 0),
        "next_attempt_at": iso_ms(raw.get("next_attempt_at")) if status == "pending" else None,
        "ordering_key": raw.get("okey") or None,
        "sequence": int(raw["seq"]) if raw.get("seq") else None,
        "created_at": iso_ms(raw.get("created_at")),
        "updated_at": iso_ms(raw.get("updated_at")),
    }
