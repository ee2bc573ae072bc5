"""Replay protection with the in-memory LRU and with a real redis-server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from hookgate_verifier import (
    InvalidSignature,
    MemorySeenStore,
    ReplayCheckUnavailable,
    Replayed,
    TimestampOutOfTolerance,
    Verifier,
)
from hookgate_verifier.redis_store import DEFAULT_PREFIX, AsyncRedisSeenStore, RedisSeenStore

from .conftest import BODY, EVENT, NOW, FakeClock

MakeHeaders = Callable[..., dict[str, str]]


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- MemorySeenStore ------------------------------------------------------------------


def test_second_delivery_of_an_id_is_replayed(clock: FakeClock, headers: dict[str, str]) -> None:
    verifier = Verifier(
        "whsec_c2VjcmV0LWZvci1ob29rZ2F0ZS12ZXJpZmllci10ZXN0cw==",
        clock=clock,
        seen=MemorySeenStore(),
    )
    assert verifier.verify(BODY, headers) == EVENT
    with pytest.raises(Replayed):
        verifier.verify(BODY, headers)


def test_retry_with_new_timestamp_but_same_id_is_replayed(
    clock: FakeClock, make_headers: MakeHeaders
) -> None:
    from .conftest import SECRET

    verifier = Verifier(SECRET, clock=clock, seen=MemorySeenStore())
    verifier.verify(BODY, make_headers(msg_id="msg_1", timestamp=NOW))
    clock.now = NOW + 60
    with pytest.raises(Replayed):
        verifier.verify(BODY, make_headers(msg_id="msg_1", timestamp=NOW + 60))
    assert verifier.verify(BODY, make_headers(msg_id="msg_2", timestamp=NOW + 60)) == EVENT


def test_forged_or_stale_requests_do_not_burn_the_id(
    clock: FakeClock, headers: dict[str, str]
) -> None:
    from .conftest import SECRET

    store = MemorySeenStore()
    verifier = Verifier(SECRET, clock=clock, seen=store)
    forged = dict(headers, **{"webhook-signature": "v1,Zm9v"})
    with pytest.raises(InvalidSignature):
        verifier.verify(BODY, forged)
    clock.now = NOW + 3600
    with pytest.raises(TimestampOutOfTolerance):
        verifier.verify(BODY, headers)
    assert len(store) == 0
    clock.now = NOW
    assert verifier.verify(BODY, headers) == EVENT


def test_ttl_covers_the_whole_validity_of_the_signature(
    clock: FakeClock, headers: dict[str, str]
) -> None:
    from .conftest import SECRET

    ttls: list[float] = []

    class Recording:
        def add(self, webhook_id: str, ttl: float) -> bool:
            ttls.append(ttl)
            return True

        def discard(self, webhook_id: str) -> None:
            pass

    verifier = Verifier(SECRET, clock=clock, seen=Recording())
    clock.now = NOW - 300  # the message is 5 minutes in our future: valid until NOW + 300
    verifier.verify(BODY, headers)
    clock.now = NOW + 300  # the message is 5 minutes old: still valid for one tolerance
    verifier.verify(BODY, headers)
    assert ttls == [600.0, 300.0]


def test_memory_store_forgets_after_ttl() -> None:
    mono = Monotonic()
    store = MemorySeenStore(clock=mono)
    assert store.add("a", 10) is True
    assert store.add("a", 10) is False
    mono.now += 10.5
    assert store.add("a", 10) is True


def test_memory_store_is_bounded_lru() -> None:
    store = MemorySeenStore(max_entries=2, clock=Monotonic())
    assert store.add("a", 100)
    assert store.add("b", 100)
    assert store.add("c", 100)
    assert len(store) == 2
    assert store.add("a", 100) is True  # evicted, so new again
    assert store.add("c", 100) is False


def test_memory_store_drops_expired_entries() -> None:
    mono = Monotonic()
    store = MemorySeenStore(clock=mono)
    for name in ("a", "b", "c"):
        store.add(name, 1)
    mono.now += 2
    store.add("d", 1)
    assert len(store) == 1


def test_memory_store_discard() -> None:
    store = MemorySeenStore()
    store.add("a", 100)
    store.discard("a")
    store.discard("never-added")
    assert store.add("a", 100) is True


def test_memory_store_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemorySeenStore(max_entries=0)


def test_forget_lets_a_retry_through(clock: FakeClock, headers: dict[str, str]) -> None:
    from .conftest import SECRET

    verifier = Verifier(SECRET, clock=clock, seen=MemorySeenStore())
    verifier.verify(BODY, headers)
    verifier.forget("msg_1")
    assert verifier.verify(BODY, headers) == EVENT


def test_forget_without_store_is_a_no_op(verifier: Verifier, headers: dict[str, str]) -> None:
    verifier.forget("msg_1")
    assert verifier.verify(BODY, headers) == EVENT


def test_failing_store_is_replay_check_unavailable(
    clock: FakeClock, headers: dict[str, str]
) -> None:
    from .conftest import SECRET

    class Broken:
        def add(self, webhook_id: str, ttl: float) -> bool:
            raise OSError("store down")

        def discard(self, webhook_id: str) -> None:
            pass

    verifier = Verifier(SECRET, clock=clock, seen=Broken())
    with pytest.raises(ReplayCheckUnavailable) as caught:
        verifier.verify(BODY, headers)
    assert caught.value.status == 503


# --- Redis ------------------------------------------------------------------------------


def test_redis_store_rejects_replay(
    clock: FakeClock, headers: dict[str, str], redis_client: redis.Redis
) -> None:
    from .conftest import SECRET

    verifier = Verifier(SECRET, clock=clock, seen=RedisSeenStore(redis_client))
    assert verifier.verify(BODY, headers) == EVENT
    with pytest.raises(Replayed):
        verifier.verify(BODY, headers)
    ttl_ms = int(redis_client.pttl(DEFAULT_PREFIX + "msg_1"))  # type: ignore[arg-type,unused-ignore]
    assert 299_000 < ttl_ms <= 300_001
    verifier.forget("msg_1")
    assert redis_client.exists(DEFAULT_PREFIX + "msg_1") == 0
    assert verifier.verify(BODY, headers) == EVENT


def test_redis_store_is_shared_between_verifiers(
    clock: FakeClock, headers: dict[str, str], redis_client: redis.Redis, redis_port: int
) -> None:
    from .conftest import SECRET

    first = Verifier(SECRET, clock=clock, seen=RedisSeenStore(redis_client, prefix="t:"))
    with redis.Redis(port=redis_port) as other_client:
        second = Verifier(SECRET, clock=clock, seen=RedisSeenStore(other_client, prefix="t:"))
        first.verify(BODY, headers)
        with pytest.raises(Replayed):
            second.verify(BODY, headers)
    assert redis_client.exists("t:msg_1") == 1


def test_redis_key_expires(redis_client: redis.Redis) -> None:
    import time

    store = RedisSeenStore(redis_client)
    assert store.add("short", 0.05) is True
    assert store.add("short", 0.05) is False
    time.sleep(0.2)
    assert store.add("short", 0.05) is True


def test_redis_down_is_replay_check_unavailable(clock: FakeClock, headers: dict[str, str]) -> None:
    from .conftest import SECRET, _free_port

    client = redis.Redis(port=_free_port(), retry=Retry(NoBackoff(), 0))
    verifier = Verifier(SECRET, clock=clock, seen=RedisSeenStore(client))
    with pytest.raises(ReplayCheckUnavailable) as caught:
        verifier.verify(BODY, headers)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    client.close()


async def test_async_redis_store(
    clock: FakeClock, headers: dict[str, str], redis_port: int, redis_client: redis.Redis
) -> None:
    from .conftest import SECRET

    client = redis.asyncio.Redis(port=redis_port)
    try:
        verifier = Verifier(SECRET, clock=clock, seen=AsyncRedisSeenStore(client))
        assert await verifier.verify_async(BODY, headers) == EVENT
        with pytest.raises(Replayed):
            await verifier.verify_async(BODY, headers)
        with pytest.raises(TypeError, match="verify_async"):
            verifier.verify(BODY, headers)
        with pytest.raises(TypeError, match="forget_async"):
            verifier.forget("msg_1")
        await verifier.forget_async("msg_1")
        assert await verifier.verify_async(BODY, headers) == EVENT
    finally:
        await client.aclose()


async def test_async_redis_down_is_replay_check_unavailable(
    clock: FakeClock, headers: dict[str, str]
) -> None:
    from .conftest import SECRET, _free_port

    client = redis.asyncio.Redis(port=_free_port(), retry=AsyncRetry(NoBackoff(), 0))
    try:
        verifier = Verifier(SECRET, clock=clock, seen=AsyncRedisSeenStore(client))
        with pytest.raises(ReplayCheckUnavailable):
            await verifier.verify_async(BODY, headers)
    finally:
        await client.aclose()


async def test_verify_async_with_sync_store(clock: FakeClock, headers: dict[str, str]) -> None:
    from .conftest import SECRET

    verifier = Verifier(SECRET, clock=clock, seen=MemorySeenStore())
    assert await verifier.verify_async(BODY, headers) == EVENT
    with pytest.raises(Replayed):
        await verifier.verify_async(BODY, headers)
    await verifier.forget_async("msg_1")
    assert await verifier.verify_async(BODY, headers) == EVENT
