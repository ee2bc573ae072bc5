"""No Redis that can silently drop data: real ``hookgate serve`` / ``worker`` processes against a
``redis-server`` of the test's own that evicts keys, keeps no AOF, or runs out of memory."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from support import AUTH, hookgate_exe, wait_healthy
from test_crash import hookgate_env

from gateway.cli.redis_server import free_port, start_redis

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, redis.Redis]]:
    """A redis-server started with the test's extra arguments (``@pytest.mark.parametrize``d
    through ``indirect``)."""
    extra: tuple[str, ...] = getattr(request, "param", ())
    port = free_port()
    process = start_redis(tmp_path / "redis", port, extra=extra)
    client = redis.Redis(port=port)
    try:
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([hookgate_exe(), command], env=env, stdout=out, stderr=out)


def run(command: str, env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hookgate_exe(), command], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "own_redis", [("--maxmemory-policy", "allkeys-lru")], indirect=True, ids=["allkeys-lru"]
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_evicting_redis_is_refused_at_start(
    own_redis: tuple[str, redis.Redis], command: str
) -> None:
    url, _ = own_redis
    done = run(command, hookgate_env(url, HOOKGATE_ALLOW_NON_DURABLE_REDIS="true"))
    assert done.returncode == 2, done.stderr
    assert "maxmemory-policy allkeys-lru" in done.stderr
    assert "noeviction" in done.stderr


@pytest.mark.parametrize("own_redis", [("--appendonly", "no")], indirect=True, ids=["no-aof"])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_redis_without_aof_is_refused_unless_allowed(
    own_redis: tuple[str, redis.Redis], command: str, tmp_path: Path
) -> None:
    url, _ = own_redis
    done = run(command, hookgate_env(url))
    assert done.returncode == 2, done.stderr
    assert "appendonly" in done.stderr and "HOOKGATE_ALLOW_NON_DURABLE_REDIS" in done.stderr

    env = hookgate_env(url, HOOKGATE_ALLOW_NON_DURABLE_REDIS="true")
    log = tmp_path / f"{command}.log"
    process = spawn(command, env, log)
    try:
        deadline = time.monotonic() + 15
        while b"hookgate.redis.not_durable" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        assert process.poll() is None, log.read_text()  # it started, warned, and runs
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_an_evicting_policy_set_at_run_time_stops_ingest_and_readiness(
    own_redis: tuple[str, redis.Redis], tmp_path: Path
) -> None:
    url, client = own_redis
    env = hookgate_env(url, HOOKGATE_REDIS_CHECK_INTERVAL="200ms")
    log = tmp_path / "gateway.log"
    process = spawn("serve", env, log)
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    event = {"business_id": "bus_e", "type": "payment.succeeded", "data": {}}
    try:
        await wait_healthy(base, process)
        async with aiohttp.ClientSession(base, headers=AUTH) as http:
            async with http.get("/readyz") as resp:
                assert resp.status == 200, await resp.text()
            async with http.post("/v1/events", json=event) as resp:
                assert resp.status == 202

            client.config_set("maxmemory-policy", "allkeys-lru")
            deadline = time.monotonic() + 10
            while True:
                async with http.get("/readyz") as resp:
                    ready = (resp.status, await resp.json())
                if ready[0] == 503:
                    break
                assert time.monotonic() < deadline, ready
                await asyncio.sleep(0.1)
            assert "allkeys-lru" in ready[1]["error"]["message"]
            async with http.post("/v1/events", json=event) as resp:
                assert resp.status == 503
                body = await resp.json()
                assert body["error"]["code"] == "store_unavailable"
                assert "allkeys-lru" in body["error"]["message"]
                assert resp.headers["Retry-After"]
            assert b"hookgate.redis.evicting" in log.read_bytes()

            client.config_set("maxmemory-policy", "noeviction")
            deadline = time.monotonic() + 10
            while True:
                async with http.post("/v1/events", json=event) as resp:
                    if resp.status == 202:
                        break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_readiness_says_why_redis_refuses_writes(
    own_redis: tuple[str, redis.Redis], tmp_path: Path
) -> None:
    url, client = own_redis
    env = hookgate_env(url)
    log = tmp_path / "gateway.log"
    process = spawn("serve", env, log)
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    try:
        await wait_healthy(base, process)
        async with aiohttp.ClientSession(base) as http:
            client.config_set("maxmemory", "1")  # noeviction: every write is refused (OOM)
            async with http.get("/readyz") as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["error"]["code"] == "not_ready"
            assert "OOM" in body["error"]["message"]
            client.config_set("maxmemory", "0")
            async with http.get("/readyz") as resp:
                assert resp.status == 200, await resp.text()
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_a_bad_redis_url_stops_start_up_naming_the_variable() -> None:
    env = hookgate_env("redis+sentinel://u:hunter2@h1:26379", HOOKGATE_PORT=str(free_port()))
    for command in ("serve", "worker"):
        done = run(command, env)
        assert done.returncode == 2
        assert "HOOKGATE_REDIS_URL" in done.stderr and "hunter2" not in done.stderr
