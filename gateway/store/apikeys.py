"""API keys: bearer credentials with scopes, and optionally bound to one business.

A key is ``hgk_<key id>_<secret>`` (``hgk_key_01JD…_`` and 43 base64url characters, 256 random
bits). Redis holds only the SHA-256 of the whole key, in the key's hash (``keys.api_key``):
a dump of Redis yields no usable key. A key is checked by looking its record up by id and
comparing digests in constant time.

Every gateway process keeps the records it checked for at most ``CACHE_TTL`` seconds, so the
ingest path does not pay a Redis round trip per request, and a revocation (or any change)
reaches every process within that bound. A record in use is read again in the background
once it is ``REFRESH_AFTER`` old, and one read serves every request waiting for the same key,
so under load requests do not wait for Redis at all. Expiry is read from the record at every
request.
When a key was last used, and from where, is kept in memory and written at most once per key
per ``USES_INTERVAL`` by a background flush (``flush_uses_forever``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core.clock import iso_ms, now_ms
from gateway.core.errors import NotFound
from gateway.core.ids import new_id
from gateway.core.logs import error_fields
from gateway.store import keys
from gateway.store.scripts import Scripts
from gateway.store.store import as_str, awaited, decode_hash

log = structlog.get_logger("hookgate.api_keys")

TOKEN_PREFIX = "hgk_"
TOKEN_RE = re.compile(r"hgk_(key_[0-9A-Z]{26})_[A-Za-z0-9_-]{43}")
SECRET_BYTES = 32
# How long a process trusts a record it read (from when the read began): a revocation takes
# effect everywhere within it. A record is read again once it is REFRESH_AFTER old.
CACHE_TTL = 0.5
REFRESH_AFTER = 0.25
CACHE_SIZE = 10_000  # records a process keeps at most (cleared when full)
USES_INTERVAL = 1.0  # seconds between writes of "last used" (per process, for every key)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ms(value: str) -> int | None:
    return int(value) if value else None


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """An API key's record (never the key)."""

    id: str
    name: str
    scopes: frozenset[str]
    business_id: str | None
    created_at_ms: int
    expires_at_ms: int | None
    revoked_at_ms: int | None
    digest: str = dataclasses.field(repr=False)
    last_used_at_ms: int | None = None
    last_used_from: str = ""

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> ApiKey | None:
        if not raw.get("digest") or not raw.get("id"):
            return None  # not a whole record (only a late "last used" write)
        return cls(
            id=raw["id"],
            name=raw.get("name", ""),
            scopes=frozenset(raw.get("scopes", "").split()),
            business_id=raw.get("business_id") or None,
            created_at_ms=int(raw.get("created_at") or 0),
            expires_at_ms=_ms(raw.get("expires_at", "")),
            revoked_at_ms=_ms(raw.get("revoked_at", "")),
            digest=raw["digest"],
            last_used_at_ms=_ms(raw.get("last_used_at", "")),
            last_used_from=raw.get("last_used_from", ""),
        )

    def status(self, now: int) -> str:
        if self.revoked_at_ms is not None:
            return "revoked"
        if self.expires_at_ms is not None and self.expires_at_ms <= now:
            return "expired"
        return "active"

    def view(self, now: int) -> dict[str, Any]:
        """The key as the API lists it: everything but its digest."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": sorted(self.scopes),
            "business_id": self.business_id,
            "status": self.status(now),
            "created_at": iso_ms(self.created_at_ms),
            "expires_at": iso_ms(self.expires_at_ms),
            "revoked_at": iso_ms(self.revoked_at_ms),
            "last_used_at": iso_ms(self.last_used_at_ms),
            "last_used_from": self.last_used_from or None,
        }


def _observed(task: asyncio.Task[Any]) -> None:
    """Marks a read's failure as seen: a background refresh may have no one waiting for it
    (the next request for the key reads again, and answers 503 if Redis is still gone)."""
    if not task.cancelled():
        task.exception()


class ApiKeys:
    """API keys over one Redis pool, with this process's short cache of checked records."""

    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self.redis = redis
        self.scripts = scripts
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._reading: dict[str, asyncio.Task[ApiKey | None]] = {}
        self._uses: dict[str, tuple[int, str]] = {}

    async def create(
        self,
        *,
        name: str,
        scopes: frozenset[str],
        business_id: str | None,
        expires_at_ms: int | None,
    ) -> tuple[ApiKey, str]:
        """A new key; returns its record and the key itself (which is stored nowhere)."""
        key_id = new_id("key")
        token = f"{TOKEN_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
        record = ApiKey(
            id=key_id,
            name=name,
            scopes=scopes,
            business_id=business_id,
            created_at_ms=now_ms(),
            expires_at_ms=expires_at_ms,
            revoked_at_ms=None,
            digest=digest(token),
        )
        mapping = {
            "id": key_id,
            "name": name,
            "scopes": " ".join(sorted(scopes)),
            "business_id": business_id or "",
            "created_at": record.created_at_ms,
            "expires_at": "" if expires_at_ms is None else expires_at_ms,
            "digest": record.digest,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.api_key(key_id), mapping=mapping)
            pipe.sadd(keys.API_KEYS, key_id)
            await pipe.execute()
        await self.scripts.wait_for_replicas()
        return record, token

    async def list(self) -> list[ApiKey]:
        """Every key, oldest first (ids sort by creation time)."""
        ids = sorted(as_str(i) for i in await awaited(self.redis.smembers(keys.API_KEYS)))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(keys.api_key(key_id))
            raws = await pipe.execute()
        found = (ApiKey.from_hash(decode_hash(raw)) for raw in raws)
        return [record for record in found if record is not None]

    async def load(self, key_id: str) -> ApiKey | None:
        raw = await awaited(self.redis.hgetall(keys.api_key(key_id)))
        return ApiKey.from_hash(decode_hash(raw))

    async def revoke(self, key_id: str) -> None:
        """Revokes a key for good (again: no change); ``NotFound`` for an unknown id."""
        key = keys.api_key(key_id)
        if not await awaited(self.redis.hexists(key, "digest")):
            raise NotFound(f"no API key {key_id!r}")
        await awaited(self.redis.hsetnx(key, "revoked_at", str(now_ms())))
        await self.scripts.wait_for_replicas()
        # This process refuses it at once (a read already under way cannot bring it back); the
        # others within CACHE_TTL.
        self._cache[key_id] = (time.monotonic(), None)

    # ---- checking a key --------------------------------------------------------------------

    async def verify(self, token: str) -> ApiKey | None:
        """The record of ``token`` when it is a key that exists, matches, is not revoked and
        has not expired; ``None`` otherwise, whichever the reason."""
        # The id is where every key has it; its form is checked before Redis is asked (a key
        # of another form matches no digest anyway).
        key_id = token[4:34]
        cached = self._cache.get(key_id)
        if cached is not None and (age := time.monotonic() - cached[0]) < CACHE_TTL:
            # the hot path: no Redis, no await
            if age >= REFRESH_AFTER and key_id not in self._reading:
                self._read(key_id)  # in the background: this request goes on
            record = cached[1]
        elif TOKEN_RE.fullmatch(token) is None:
            return None
        else:
            reading = self._reading.get(key_id) or self._read(key_id)
            record = await asyncio.shield(reading)  # a caller that goes away leaves it running
        if record is None or not hmac.compare_digest(record.digest, digest(token)):
            return None
        if record.revoked_at_ms is not None:
            return None
        if record.expires_at_ms is not None and record.expires_at_ms <= now_ms():
            return None
        return record

    def _read(self, key_id: str) -> asyncio.Task[ApiKey | None]:
        """Reads the record into the cache; concurrent requests for it share this one read."""
        task = asyncio.create_task(self._read_into_cache(key_id))
        self._reading[key_id] = task
        task.add_done_callback(_observed)
        return task

    async def _read_into_cache(self, key_id: str) -> ApiKey | None:
        started = time.monotonic()  # what Redis answers is at least this fresh
        try:
            record = await self.load(key_id)
        finally:
            del self._reading[key_id]
        current = self._cache.get(key_id)
        if current is None or current[0] <= started:  # never over something newer
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key_id] = (started, record)
        return record

    # ---- last use --------------------------------------------------------------------------

    def note_use(self, key_id: str, client: str) -> None:
        """Remembers that the key was used now, from ``client``; written by the next flush."""
        self._uses[key_id] = (now_ms(), client)

    async def flush_uses(self) -> None:
        """Writes the last use of every key used since the previous flush, in one round trip."""
        uses, self._uses = self._uses, {}
        if not uses:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key_id, (at, client) in uses.items():
                pipe.hset(
                    keys.api_key(key_id), mapping={"last_used_at": at, "last_used_from": client}
                )
            await pipe.execute()

    async def flush_uses_forever(self, interval: float = USES_INTERVAL) -> None:
        """Flushes every ``interval`` until cancelled, and once more then. A failed write loses
        only those "last used" times (they are a hint, not a record)."""
        try:
            while True:
                await asyncio.sleep(interval)
                await self._flush_quietly()
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_quietly()

    async def _flush_quietly(self) -> None:
        try:
            await self.flush_uses()
        except (RedisError, OSError) as exc:
            log.warning("hookgate.api_keys.uses_not_written", **error_fields(exc))
