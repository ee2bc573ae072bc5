"""The worker's heartbeat file, which a container health check reads
(``hookgate worker --check``). Kept free of heavy imports so the check starts fast."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

HEARTBEAT_INTERVAL = 5.0  # seconds between touches of the heartbeat file
HEARTBEAT_STALE = 30.0  # `hookgate worker --check` fails once the file is older than this


async def heartbeat_forever(redis: Redis, path: str) -> None:
    """Touches ``path`` every few seconds while this worker's event loop runs and Redis
    answers it, so a container health check can tell a working worker from a stuck one."""
    while True:
        try:
            await redis.ping()
        except Exception:  # Redis down or unreachable: no heartbeat
            pass
        else:
            touch(path)
        await asyncio.sleep(HEARTBEAT_INTERVAL)


def touch(path: str) -> None:
    """Creates ``path`` or sets its time to now (a local file: microseconds, never blocks
    the loop for long)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        os.utime(path)


def check_heartbeat(path: str) -> str | None:
    """None when the worker writing ``path`` is healthy, else what is wrong."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return f"no worker heartbeat at {path}"
    if age > HEARTBEAT_STALE:
        return f"the worker's last heartbeat was {age:.0f} s ago (limit {HEARTBEAT_STALE:.0f} s)"
    return None
