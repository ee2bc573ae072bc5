"""Connecting to the Redis group (one Redis, or a primary found through Sentinel), and telling
a Redis that can keep what it acknowledged from one that can silently drop it."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, TypeVar

import structlog
from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.core.errors import ConfigError, StoreUnavailable
from gateway.core.logs import describe_error
from gateway.core.redisurl import RedisTarget
from gateway.store import keys

log = structlog.get_logger("hookgate.redis")

R = TypeVar("R", bound=Redis)

CONNECT_TIMEOUT = 2.0  # seconds to open a connection (to a sentinel or a data node)
# Behind Sentinel a reply slower than this means the node is gone (no command hookgate sends
# blocks): without it, a primary whose machine vanished holds a read until TCP gives up,
# minutes later. It costs each round trip a timer task (about 15 µs here), so a single Redis,
# which has no other node to move to, goes without, as it always has.
SOCKET_TIMEOUT = 10.0


def connect(target: RedisTarget, redis_class: type[R] = Redis) -> R:  # type: ignore[assignment]
    """A client of the group's primary. Behind Sentinel every new connection asks the
    sentinels where the primary is, so after a failover the pool reconnects to the new one
    (redis-py also drops a connection that answers READONLY: a demoted primary)."""
    if not target.is_sentinel:
        plain: R = redis_class.from_url(target.url, socket_connect_timeout=CONNECT_TIMEOUT)
        return plain
    timeouts: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
    }
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=dict(timeouts), **timeouts
    )
    client: R = sentinel.master_for(
        target.master,
        redis_class=redis_class,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
    )
    return client


@dataclasses.dataclass(frozen=True)
class Durability:
    """What a Redis says of how it keeps data (``INFO memory`` and ``INFO persistence``:
    managed Redis often refuses ``CONFIG GET``)."""

    maxmemory_policy: str
    aof_enabled: bool

    def refusal(self) -> str | None:
        """Why hookgate must not run on this Redis at all, or None."""
        if self.maxmemory_policy != "noeviction":
            return (
                f"Redis evicts keys when full (maxmemory-policy {self.maxmemory_policy}): "
                "acknowledged events, deliveries and idempotency keys would vanish without a "
                "word. Set maxmemory-policy noeviction (a full Redis then refuses writes, "
                "which hookgate answers with 503)"
            )
        return None

    def non_durable(self) -> str | None:
        """Why a Redis process crash would lose acknowledged events, or None."""
        if not self.aof_enabled:
            return (
                "Redis has no append-only file (appendonly no): a Redis restart loses every "
                "event acknowledged since the last snapshot. Set appendonly yes, or "
                "HOOKGATE_ALLOW_NON_DURABLE_REDIS=true for a throw-away setup"
            )
        return None


async def read_durability(redis: Redis) -> Durability:
    memory = await redis.info("memory")
    persistence = await redis.info("persistence")
    return Durability(
        maxmemory_policy=str(memory.get("maxmemory_policy", "noeviction")),
        aof_enabled=str(persistence.get("aof_enabled", "0")) == "1",
    )


async def check_at_start(redis: Redis, *, allow_non_durable: bool) -> None:
    """Refuses (``ConfigError``) a Redis that evicts keys, or one without an append-only file
    unless ``allow_non_durable`` (then it warns, loudly). A Redis that cannot be reached now
    is let through: the gateway and the worker ride out an unreachable Redis, and the
    gateway's ``RedisWatch`` checks it again once it answers."""
    try:
        durability = await read_durability(redis)
    except RedisError as exc:
        log.warning("hookgate.redis.unreachable_at_start", error=describe_error(exc))
        return
    refusal = durability.refusal()
    if refusal is not None:
        raise ConfigError(refusal)
    problem = durability.non_durable()
    if problem is not None:
        if not allow_non_durable:
            raise ConfigError(problem)
        log.warning("hookgate.redis.not_durable", reason=problem)


class RedisWatch:
    """What the gateway knows of its Redis between requests: re-reads the eviction policy
    every ``interval`` (a switch to an evicting policy at run time stops ingest and makes the
    gateway not ready) and probes writes for ``/readyz``."""

    def __init__(self, redis: Redis, *, wait_replicas: int, wait_timeout: float) -> None:
        self.redis = redis
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, int(wait_timeout * 1000))
        self.problem: str | None = None  # why writes must be refused now, if they must

    async def check(self) -> None:
        refusal = (await read_durability(self.redis)).refusal()
        if refusal != self.problem:
            if refusal is not None:
                log.error("hookgate.redis.evicting", reason=refusal)
            else:
                log.info("hookgate.redis.noeviction_again")
        self.problem = refusal

    async def watch_forever(self, interval: float) -> None:
        while True:
            try:
                await self.check()
            except RedisError as exc:  # unreachable: keep what was last known
                log.warning("hookgate.redis.check_failed", error=describe_error(exc))
            await asyncio.sleep(interval)

    def refuse_if_unsafe(self) -> None:
        """Raises ``StoreUnavailable`` while Redis could silently drop what is written."""
        if self.problem is not None:
            raise StoreUnavailable(f"the store refuses writes now: {self.problem}")

    async def not_ready_because(self) -> str | None:
        """Why the gateway cannot acknowledge writes now, or None: an evicting policy, or a
        probe write that Redis refuses (OOM, NOREPLICAS, a read-only replica, no primary) or
        that too few replicas confirm."""
        if self.problem is not None:
            return self.problem
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.incr(keys.REPLICATION_MARK)
                if self.wait_replicas > 0:
                    pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                replies = await pipe.execute()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            return f"redis is unreachable: {type(exc).__name__}"
        except RedisError as exc:
            return f"redis refuses writes: {describe_error(exc)}"
        if self.wait_replicas > 0 and int(replies[-1]) < self.wait_replicas:
            return (
                f"{int(replies[-1])} of {self.wait_replicas} replica(s) confirmed a write "
                f"within {self.wait_timeout_ms} ms"
            )
        return None
