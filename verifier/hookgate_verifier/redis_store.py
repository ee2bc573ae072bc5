"""Replay stores backed by Redis, for receivers running several processes or hosts.

Install with `pip install 'hookgate-verifier[redis]'`. The client is passed in, never
created here, so connection settings stay with the application. One `SET key 1 NX PX ttl`
per accepted webhook: atomic, and Redis expires the key on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis
    import redis.asyncio

__all__ = ["DEFAULT_PREFIX", "AsyncRedisSeenStore", "RedisSeenStore"]

DEFAULT_PREFIX = "hookgate-verifier:seen:"


def _ttl_ms(ttl: float) -> int:
    # PX must be a positive integer; round up so an id is never forgotten early.
    return max(1, int(ttl * 1000) + 1)


class RedisSeenStore:
    """A SeenStore on a synchronous `redis.Redis` client."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    def add(self, webhook_id: str, ttl: float) -> bool:
        return bool(self._client.set(self._prefix + webhook_id, b"1", nx=True, px=_ttl_ms(ttl)))

    def discard(self, webhook_id: str) -> None:
        self._client.delete(self._prefix + webhook_id)


class AsyncRedisSeenStore:
    """An AsyncSeenStore on a `redis.asyncio.Redis` client; use with `Verifier.verify_async`."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._prefix = prefix

    async def add(self, webhook_id: str, ttl: float) -> bool:
        result = await self._client.set(self._prefix + webhook_id, b"1", nx=True, px=_ttl_ms(ttl))
        return bool(result)

    async def discard(self, webhook_id: str) -> None:
        await self._client.delete(self._prefix + webhook_id)
