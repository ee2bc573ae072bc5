"""Running the gateway's HTTP server until a signal says stop."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web
from redis.asyncio import Redis

from .api import create_app
from .settings import Settings

log = structlog.get_logger("hookgate.serve")


async def wait_for_stop() -> None:
    """Returns on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner


async def serve_forever(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url)
    runner = await start_site(create_app(settings, redis), settings.host, settings.port)
    log.info("hookgate.serve.started", url=f"http://{settings.host}:{settings.port}")
    try:
        await wait_for_stop()
    finally:
        await runner.cleanup()  # answers requests in flight before closing
        await redis.aclose()
        log.info("hookgate.serve.stopped")
