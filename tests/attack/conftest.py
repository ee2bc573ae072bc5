"""The attack suite: each class of defect an outside attack found, replayed against a real
``hookgate serve`` process (and, where delivery matters, a real worker) on loopback, with more
spellings than the examples it was reported with. Bounded in count and time."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from support import AUTH, TOKEN, hookgate_exe

from gateway.cli.redis_server import free_port

SECRET_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@dataclass
class Served:
    """One running ``hookgate serve``."""

    base: str  # http://127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_peak_kb(self) -> int:
        """The process's peak resident set so far (VmHWM), in KB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")


def _wait_healthy(served: Served, timeout: float = 15) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        assert served.process.poll() is None, served.log_text()
        try:
            with urllib.request.urlopen(served.base + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "hookgate serve did not come up"
        time.sleep(0.05)


@pytest.fixture
def serve(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: ``serve(HOOKGATE_X="…", …)`` starts ``hookgate serve`` (or another command with
    ``command=``) with these settings over the test Redis and waits for it; every process is
    killed at teardown, after checking it did not die during the test."""
    stack = ExitStack()
    started: list[Served] = []

    def start(command: str = "serve", **extra: str) -> Served:
        port = free_port()
        env = {
            **os.environ,
            "HOOKGATE_REDIS_URL": redis_url,
            "HOOKGATE_ADMIN_TOKEN": TOKEN,
            "HOOKGATE_SECRET_KEY": SECRET_KEY,
            "HOOKGATE_PORT": str(port),
            "HOOKGATE_LOG_FORMAT": "json",
            **extra,
        }
        log = tmp_path / f"{command}-{len(started)}.log"
        handle = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            [hookgate_exe(), command], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        served = Served(f"http://127.0.0.1:{port}", process, log, env)
        started.append(served)
        if command == "serve":
            _wait_healthy(served)
        return served

    try:
        yield start
        for served in started:
            assert served.process.poll() is None, f"{served.log} died: " + served.log_text()
    finally:
        for served in started:
            if served.process.poll() is None:
                served.process.kill()
            served.process.wait(timeout=10)
        stack.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session that sends the admin token."""
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session
