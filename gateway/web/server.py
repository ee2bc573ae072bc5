"""Running the gateway's HTTP server until a signal says stop."""

from __future__ import annotations

import asyncio
import signal

import msgspec
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import Response, StreamResponse
from aiohttp.web_server import Server
from redis.asyncio import Redis

from gateway.core.errors import ConfigError
from gateway.core.settings import Settings
from gateway.store.connection import check_at_start, connect
from gateway.web.app import create_app
from gateway.web.errors import error_body

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


class _Handler(RequestHandler):
    """aiohttp's connection handler, answering a request its parser refused (oversized or
    malformed headers, a bad request line) in hookgate's JSON error shape. aiohttp's own answer
    is text that quotes the offending bytes back, which could be the start of a credential."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        if status == 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.info("hookgate.serve.bad_http", status=status, error=type(exc).__name__)
        reason = "the HTTP request is malformed or its headers are too large"
        body = error_body("bad_http_request", reason)
        response = Response(
            body=msgspec.json.encode(body), status=status, content_type="application/json"
        )
        response.force_close()
        return response


class _Server(Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making hookgate's connection handlers
        return server


async def start_site(
    app: web.Application, host: str, port: int, *, request_timeout: float = 30.0
) -> web.AppRunner:
    """Serves ``app``. A connection that has not sent a whole request's headers within
    ``request_timeout`` (slow headers, or idle between keep-alive requests) is closed; bodies
    are bounded by the same time where they are read (``requests.read_body``), after which the
    rest of a refused body is drained for at most 5 s more (so the client can read the answer)
    before the connection is closed."""
    runner = _Runner(
        app,
        access_log=None,
        shutdown_timeout=10,
        keepalive_timeout=request_timeout,
        lingering_time=min(request_timeout, 5.0),
    )
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    return runner


async def serve_forever(settings: Settings) -> None:
    """Serves until SIGINT/SIGTERM. Refuses (``ConfigError``) a Redis that could silently
    drop data, in any cell (naming it)."""
    pools: dict[str, Redis] = {}
    try:
        for spec in settings.cell_specs:
            pools[spec.name] = connect(spec.target)
            try:
                await check_at_start(
                    pools[spec.name], allow_non_durable=settings.allow_non_durable_redis
                )
            except ConfigError as exc:
                if len(settings.cell_specs) == 1:
                    raise
                raise ConfigError(f"cell {spec.name!r}: {exc}") from None
    except BaseException:
        for pool in pools.values():
            await pool.aclose()
        raise
    runner = await start_site(
        create_app(settings, pools),
        settings.host,
        settings.port,
        request_timeout=settings.request_timeout,
    )
    log.info("hookgate.serve.started", url=f"http://{settings.host}:{settings.port}")
    try:
        await wait_for_stop()
    finally:
        await runner.cleanup()  # answers requests in flight before closing
        for pool in pools.values():
            await pool.aclose()
        log.info("hookgate.serve.stopped")
