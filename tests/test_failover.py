"""Losing the Redis primary: real ``hookgate serve`` and ``hookgate worker`` processes on a
Redis group of the test's own (a primary, two replicas with AOF, three sentinels), the primary
killed with ``kill -9`` under load. Run with ``-s`` to see what each test measured."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis_group import RedisGroup
from support import AUTH
from test_crash import Cluster, Sink, create_endpoint, hookgate_env, report, sink, wait_until

pytestmark = pytest.mark.e2e
__all__ = ["sink"]  # the fixture, shared with the crash tests

EVENTS = 600
KILL_AFTER = 150
CLIENTS = 10
# The longest the gateway may answer 503 after the primary dies: Sentinel notices after
# down-after-milliseconds (1 s), elects and promotes in about 1-2 s more; the rest is room
# for a busy 2-core machine.
UNAVAILABLE_BOUND = 15.0


@dataclasses.dataclass
class Group:
    redis: RedisGroup
    cluster: Cluster


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[Group]:
    made = RedisGroup(tmp_path / "redis")
    await asyncio.to_thread(made.start)
    cluster = Cluster(
        made.url,
        tmp_path,
        hookgate_env(made.url, HOOKGATE_REDIS_CHECK_INTERVAL="1s"),
    )
    try:
        yield Group(made, cluster)
    finally:
        cluster.stop_all()
        made.stop()


@dataclasses.dataclass
class Load:
    accepted: dict[str, dict[str, Any]]  # idempotency key → its 202 view
    refused: collections.Counter[str]
    marks: dict[str, float]

    @property
    def unavailable_s(self) -> float:
        """From the kill to the first 202 of a request sent after it."""
        return self.marks["first_202_after"] - self.marks["down"]


async def send_through(
    http: aiohttp.ClientSession,
    business: str,
    trigger: Callable[[], Awaitable[None]],
    *,
    total: int = EVENTS,
    trigger_after: int = KILL_AFTER,
) -> Load:
    """``CLIENTS`` clients send ``total`` events with Idempotency-Keys, each re-sent on a 503
    or no answer until it gets a 202; ``trigger`` runs once ``trigger_after`` 202s are in."""
    accepted: dict[str, dict[str, Any]] = {}
    refused = collections.Counter[str]()
    marks: dict[str, float] = {}
    fired = asyncio.Event()

    async def client(mine: list[int]) -> None:
        for n in mine:
            key = f"{business}-{n}"
            deadline = time.monotonic() + 60
            body = {"business_id": business, "type": "payment.succeeded", "data": {"n": n}}
            while key not in accepted:
                assert time.monotonic() < deadline, f"{key} never accepted"
                sent_at = time.monotonic()
                try:
                    async with http.post(
                        "/v1/events", json=body, headers={"Idempotency-Key": key}
                    ) as resp:
                        if resp.status == 202:
                            accepted[key] = await resp.json()
                            if sent_at > marks.get("down", math.inf):
                                marks.setdefault("first_202_after", time.monotonic())
                        else:
                            assert resp.status == 503, await resp.text()
                            assert resp.headers.get("Retry-After"), "a 503 says when to retry"
                            refused["503"] += 1
                            marks.setdefault("first_503", time.monotonic())
                            await asyncio.sleep(0.05)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    refused[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)
            if len(accepted) >= trigger_after and not fired.is_set():
                fired.set()
                await trigger()
                marks["down"] = time.monotonic()

    async with asyncio.timeout(120):
        await asyncio.gather(*(client(list(range(i, total, CLIENTS))) for i in range(CLIENTS)))
    return Load(accepted, refused, marks)


async def lost_events(http: aiohttp.ClientSession, load: Load) -> list[str]:
    """Acknowledged events the API no longer knows."""
    lost = []
    for view in load.accepted.values():
        async with http.get(f"/v1/events/{view['id']}") as resp:
            if resp.status == 404:
                lost.append(view["id"])
            else:
                assert resp.status == 200, await resp.text()
    return lost


async def keys_still_map_to_their_events(http: aiohttp.ClientSession, load: Load) -> int:
    """Re-sending every key answers with the event it was first acknowledged with. A 503 is
    retried, as a client does (the replica left after a failover resyncs with the new primary
    and confirms nothing meanwhile); returns how many there were."""
    refused = 0
    for key, view in load.accepted.items():
        n = int(key.rsplit("-", 1)[1])
        body = {"business_id": view["business_id"], "type": "payment.succeeded", "data": {"n": n}}
        deadline = time.monotonic() + 30
        while True:
            async with http.post("/v1/events", json=body, headers={"Idempotency-Key": key}) as resp:
                if resp.status == 202:
                    again = await resp.json()
                    break
                assert resp.status == 503 and time.monotonic() < deadline, await resp.text()
                refused += 1
            await asyncio.sleep(0.1)
        assert again["id"] == view["id"] and again["duplicate"], (key, again, view)
    return refused


async def test_failover_under_load_loses_no_acknowledged_event(group: Group, sink: Sink) -> None:
    redis, cluster = group.redis, group.cluster
    gateway = await cluster.serve()
    worker = cluster.worker()
    await cluster.wait_started("worker")
    old = redis.node_on(redis.primary_port())
    failover: dict[str, float] = {}
    promoted: list[asyncio.Task[tuple[Any, float]]] = []

    async def kill_primary() -> None:
        await asyncio.to_thread(redis.kill, old)
        failover["killed"] = time.monotonic()
        # from the kill to a new primary that takes writes, watched while the load goes on
        promoted.append(asyncio.create_task(asyncio.to_thread(redis.wait_new_primary, old.port)))

    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_f", sink.endpoint_url("ok"), max_in_flight=50)
        load = await send_through(http, "bus_f", kill_primary)
        new, took = await promoted[0]
        event_ids = {view["id"] for view in load.accepted.values()}

        async def all_arrived() -> bool:
            return set(sink.ids("ok")) >= event_ids

        delivered_at = await wait_until(all_arrived, 60, "every acknowledged event delivered")
        resend_refused = await keys_still_map_to_their_events(http, load)
        # The old primary, restarted on its own data, comes back as a replica of the new one.
        await asyncio.to_thread(redis.restart, old)

        async def rejoined() -> bool:
            role = await asyncio.to_thread(old.client().execute_command, "ROLE")
            return bool(role[0] == b"slave")

        await wait_until(rejoined, 40, "the old primary to rejoin as a replica", 0.2)
        lost_after_rejoin = await lost_events(http, load)
    report(
        "sentinel failover under load (WAIT 1)",
        accepted=len(load.accepted),
        refused=dict(load.refused),
        failover_s=took,
        unavailable_s=load.unavailable_s,
        delivered_after_kill_s=delivered_at - failover["killed"],
        resend_refused=resend_refused,
        new_primary=new.name,
    )
    assert len(load.accepted) == EVENTS
    assert not lost_after_rejoin
    assert load.unavailable_s <= UNAVAILABLE_BOUND
    assert gateway.poll() is None, cluster.log_tail("gateway")
    assert worker.poll() is None, cluster.log_tail("worker")


async def partition_then_kill(group: Group, old_port: int) -> None:
    """The replicas stop hearing the primary (paused, their links cut), the primary takes
    writes alone for a second, then dies; the replicas wake and one is promoted."""
    redis = group.redis
    primary = redis.node_on(old_port)
    replicas = [n for n in redis.nodes if n.port != old_port]
    for node in replicas:
        redis.pause(node)
    primary.client().execute_command("CLIENT", "KILL", "TYPE", "replica")
    await asyncio.sleep(1.0)
    redis.kill(primary)
    for node in replicas:
        redis.resume(node)


@pytest.mark.parametrize("wait_replicas", [1, 0], ids=["wait-1", "control-wait-0"])
async def test_lagging_replicas_lose_acknowledged_events_only_without_wait(
    group: Group, sink: Sink, wait_replicas: int
) -> None:
    redis, cluster = group.redis, group.cluster
    cluster.env["HOOKGATE_REDIS_WAIT_REPLICAS"] = str(wait_replicas)
    await cluster.serve()
    cluster.worker()
    await cluster.wait_started("worker")
    old_port = redis.primary_port()

    async def trigger() -> None:
        await partition_then_kill(group, old_port)

    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_l", sink.endpoint_url("ok"), max_in_flight=50)
        load = await send_through(http, "bus_l", trigger, total=300, trigger_after=100)
        await asyncio.to_thread(redis.wait_new_primary, old_port)
        lost = await lost_events(http, load)
    report(
        f"replicas cut off, then the primary killed (WAIT {wait_replicas})",
        accepted=len(load.accepted),
        refused=dict(load.refused),
        lost=len(lost),
    )
    if wait_replicas:
        assert not lost
        assert load.refused["503"] > 0  # writes nobody replicated were refused, not acknowledged
    else:
        assert lost, "the control run must lose acknowledged events, or this test proves nothing"
