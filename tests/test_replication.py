"""A 202 means replicated: with HOOKGATE_REDIS_WAIT_REPLICAS=1 every acknowledged write waits
until a replica holds it (Redis WAIT), and is refused with 503 when none confirms in time.
A real primary and replica of the test's own; the replica is paused with SIGSTOP."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from support import AUTH

from gateway.cli.redis_server import free_port, start_redis
from gateway.core.settings import Settings
from gateway.store import keys
from gateway.web.app import create_app


@dataclasses.dataclass
class Pair:
    primary: redis.Redis
    replica: redis.Redis
    replica_process: subprocess.Popen[bytes]
    url: str

    def pause_replica(self) -> None:
        os.kill(self.replica_process.pid, signal.SIGSTOP)

    def resume_replica(self) -> None:
        os.kill(self.replica_process.pid, signal.SIGCONT)

    def calls(self, command: str) -> int:
        stats = self.primary.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    primary_port, replica_port = free_port(), free_port()
    primary = start_redis(tmp_path / "primary", primary_port)
    replica = start_redis(
        tmp_path / "replica", replica_port, extra=("--replicaof", "127.0.0.1", str(primary_port))
    )
    made = Pair(
        redis.Redis(port=primary_port),
        redis.Redis(port=replica_port),
        replica,
        f"redis://127.0.0.1:{primary_port}/0",
    )
    deadline = time.monotonic() + 20
    while made.replica.info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    try:
        yield made
    finally:
        for process in (replica, primary):
            process.kill()  # a paused replica, or a primary waiting for it, would not stop
            process.wait(timeout=10)
        made.primary.close()
        made.replica.close()


@pytest.fixture
async def api(pair: Pair, settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    waiting = dataclasses.replace(
        settings, redis_url=pair.url, redis_wait_replicas=1, redis_wait_timeout=0.2
    )
    client_redis = Redis.from_url(pair.url)
    client = TestClient(TestServer(create_app(waiting, client_redis)))
    await client.start_server()
    yield client
    await client.close()
    await client_redis.aclose()


EVENT = {"business_id": "bus_r", "type": "payment.succeeded", "data": {"amount": 1}}


async def test_an_acknowledged_event_is_on_the_replica_when_the_202_leaves(
    api: TestClient[Any, Any], pair: Pair
) -> None:
    resp = await api.post("/v1/events", json=EVENT, headers=AUTH)
    assert resp.status == 202
    event_id = (await resp.json())["id"]
    assert pair.replica.exists(keys.event_body(event_id))


async def test_a_write_no_replica_confirms_is_refused_with_503_not_acknowledged(
    api: TestClient[Any, Any], pair: Pair
) -> None:
    keyed = {**AUTH, "Idempotency-Key": "k-1"}
    first = await api.post("/v1/events", json=EVENT, headers=keyed)
    assert first.status == 202
    event_id = (await first.json())["id"]

    pair.pause_replica()
    refused = await api.post("/v1/events", json=EVENT, headers=AUTH)
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "1"
    body = await refused.json()
    assert body["error"]["code"] == "store_unavailable"
    assert "replica" in body["error"]["message"]
    # An idempotent repeat waits for a replica too: its original may never have reached one.
    repeat = await api.post("/v1/events", json=EVENT, headers=keyed)
    assert repeat.status == 503
    created = await api.post(
        "/v1/endpoints",
        json={"business_id": "bus_r", "url": "http://127.0.0.1:9/hook"},
        headers=AUTH,
    )
    assert created.status == 503
    assert (await created.json())["error"]["code"] == "store_unavailable"
    link = await api.post("/v1/businesses/bus_r/portal-links", headers=AUTH)
    assert link.status == 503
    registered = await api.post("/v1/event-types", json={"name": "invoice.sent"}, headers=AUTH)
    assert registered.status == 503
    ready = await api.get("/readyz")
    assert ready.status == 503
    assert "replica" in (await ready.json())["error"]["message"]

    pair.resume_replica()
    again = await api.post("/v1/events", json=EVENT, headers=keyed)
    assert again.status == 202
    answer = await again.json()
    assert answer["id"] == event_id and answer["duplicate"]
    assert (await api.get("/readyz")).status == 200


async def test_one_wait_per_group_not_per_event(api: TestClient[Any, Any], pair: Pair) -> None:
    warm = await api.post("/v1/events", json=EVENT, headers=AUTH)  # loads the script
    assert warm.status == 202
    waits_before, scripts_before = pair.calls("wait"), pair.calls("evalsha")
    batch = {"events": [{**EVENT, "data": {"n": n}} for n in range(150)]}
    resp = await api.post("/v1/events/batch", json=batch, headers=AUTH)
    assert resp.status == 202 and (await resp.json())["accepted"] == 150
    assert pair.calls("wait") - waits_before == 1
    assert pair.calls("evalsha") - scripts_before == 1

    waits_before, scripts_before = pair.calls("wait"), pair.calls("evalsha")
    answers = await asyncio.gather(
        *(api.post("/v1/events", json=EVENT, headers=AUTH) for _ in range(40))
    )
    assert all(a.status == 202 for a in answers)
    waits = pair.calls("wait") - waits_before
    # one WAIT per group commit: each ends the round trip that carried its group's scripts
    assert waits == pair.calls("evalsha") - scripts_before
    assert 1 <= waits <= 40
