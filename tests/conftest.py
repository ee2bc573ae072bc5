"""Real parts only: a redis-server per session on a free port, real aiohttp servers on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from support import TOKEN, hookgate_exe, own_redis

from gateway.cli.redis_server import free_port
from gateway.core.logs import configure
from gateway.core.secretbox import SecretBox
from gateway.core.settings import Settings
from gateway.web.app import create_app
from worker.main import build_worker, stop_worker

SECRET_KEY = SecretBox.generate_key()


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> None:
    configure("console", logging.WARNING)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of the tests' own (never the machine's shared one)."""
    with own_redis(tmp_path_factory.mktemp("redis")) as port:
        yield port


@pytest.fixture
def redis_url(redis_server: int) -> str:
    return f"redis://127.0.0.1:{redis_server}/0"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    client = ArqRedis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        admin_token=TOKEN,
        allow_private_targets=True,
        https_only=False,
        secret_key=SECRET_KEY,
        retry_schedule=(0.2, 0.2),
        retry_jitter=0.0,
        delivery_timeout=2.0,
        worker_poll_delay=0.01,
        sweep_interval=0.2,
    )


@pytest.fixture
async def api(settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient[Any, Any]]:
    client = TestClient(TestServer(create_app(settings, redis)))
    await client.start_server()
    yield client
    await client.close()


@dataclasses.dataclass
class Worker:
    settings: Settings


@pytest.fixture
async def start_worker(
    redis: ArqRedis,
) -> AsyncIterator[Callable[[Settings], Awaitable[None]]]:
    """Starts in-process arq workers over the test Redis, each with its own connection pool
    (arq closes its pool when it stops); stops them at teardown."""
    running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(settings: Settings) -> None:
        worker = build_worker(settings, ArqRedis.from_url(settings.redis_url))
        running.append((worker, asyncio.create_task(worker.async_run())))

    yield start
    for worker, task in running:
        worker.handle_sig(signal.SIGTERM)
        await stop_worker(worker, task)


@dataclasses.dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class Receiver:
    url: str
    requests: list[Received]
    arrived: asyncio.Event

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()


Behaviour = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


async def _ok(request: web.Request, n: int) -> web.StreamResponse:
    return web.json_response({"ok": True})


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Factory of merchant endpoints on loopback; ``behaviour(request, n)`` answers the nth."""
    runners: list[web.AppRunner] = []

    async def make(behaviour: Behaviour = _ok) -> Receiver:
        got = Receiver(url="", requests=[], arrived=asyncio.Event())

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            got.requests.append(Received(dict(request.headers), body))
            got.arrived.set()
            return await behaviour(request, len(got.requests))

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        got.url = f"http://127.0.0.1:{port}/hook"
        return got

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """The environment of real hookgate processes over the test Redis."""
    return {
        **os.environ,
        "HOOKGATE_REDIS_URL": redis_url,
        "HOOKGATE_ADMIN_TOKEN": TOKEN,
        "HOOKGATE_PORT": str(free_port()),
        "HOOKGATE_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_HTTPS_ONLY": "false",
        "HOOKGATE_SECRET_KEY": SECRET_KEY,
        "HOOKGATE_RETRY_SCHEDULE": "300ms,300ms,300ms",
        "HOOKGATE_DELIVERY_TIMEOUT": "3s",
        "HOOKGATE_WORKER_POLL_DELAY": "20ms",
        "HOOKGATE_LOG_FORMAT": "json",
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts hookgate processes, ``spawn(command, env, *args)`` (e.g. ``spawn("worker", env,
    "--cell", "c2")``), each's output to ``{tmp_path}/{command}-{n}.log`` (n counts the
    processes started, from 0), so a full pipe never blocks them; any still running at
    teardown is killed."""
    started: list[tuple[subprocess.Popen[bytes], Any]] = []

    def start(command: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{command}-{len(started)}.log").open("wb")
        process = subprocess.Popen(
            [hookgate_exe(), command, *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        started.append((process, log))
        return process

    yield start
    for process, log in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()
