"""Helpers shared by the tests (imported as ``support``; pytest puts tests/ on the path)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextlib.contextmanager
def own_redis(directory: Path) -> Iterator[int]:
    """A redis-server of the tests' own on a free port (never the machine's shared one), with
    its data in ``directory``; yields the port, stops it after."""
    from gateway.cli.redis_server import free_port, start_redis

    port = free_port()
    process = start_redis(directory, port)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def hookgate_exe() -> str:
    beside = Path(sys.executable).parent / "hookgate"
    return str(beside) if beside.exists() else (shutil.which("hookgate") or "hookgate")


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hookgate_exe(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


async def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Returns once ``hookgate serve`` at ``base`` answers /healthz."""
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert process.poll() is None, "hookgate serve exited"
            try:
                async with session.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("hookgate serve did not come up")


AUDIT_KEY_PREFIX = b"hg:audit"


async def data_keys(redis: Any) -> set[bytes]:
    """Every key but the audit trail's streams: what a refused request must not have written
    (its refusal is itself an audit entry, when it was a change)."""
    return {k for k in await redis.keys("*") if not k.startswith(AUDIT_KEY_PREFIX)}


async def redis_dump(redis: Any) -> bytes:
    """Every key and every value stored in Redis, of every type: what a dump would show."""
    out = bytearray()
    for key in await redis.keys("*"):
        out += key + b"\n"
        kind = (await redis.type(key)).decode()
        if kind == "string":
            out += await redis.get(key)
        elif kind == "hash":
            for field, value in (await redis.hgetall(key)).items():
                out += field + b"=" + value + b"\n"
        elif kind == "list":
            out += b"\n".join(await redis.lrange(key, 0, -1))
        elif kind == "set":
            out += b"\n".join(await redis.smembers(key))
        elif kind == "zset":
            out += b"\n".join(await redis.zrange(key, 0, -1))
        elif kind == "stream":
            for _, fields in await redis.xrange(key):
                out += b"\n".join(k + b"=" + v for k, v in fields.items())
        else:
            raise AssertionError(f"a {kind} key this dump cannot read: {key!r}")
        out += b"\n"
    return bytes(out)


async def ingest_batch(
    http: aiohttp.ClientSession, events: list[dict[str, Any]], size: int = 250
) -> list[dict[str, Any]]:
    """Events in batches of ``size``; every one must be accepted. Returns the 202 views."""
    accepted: list[dict[str, Any]] = []
    for start in range(0, len(events), size):
        async with http.post(
            "/v1/events/batch", json={"events": events[start : start + size]}
        ) as r:
            assert r.status == 202, await r.text()
            body = await r.json()
        assert body["rejected"] == 0, body
        accepted += body["results"]
    return accepted
