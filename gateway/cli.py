"""The ``hookgate`` command: ``serve``, ``worker`` and ``dev``."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

from . import __version__
from .commands import register
from .errors import ConfigError, HookgateError
from .settings import Settings

# serve, worker and dev import the server side (aiohttp, redis, arq) when they run, so the
# operator commands start fast.


def fail(message: str) -> NoReturn:
    click.echo(f"hookgate: {message}", err=True)
    sys.exit(2)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs the process's main coroutine on uvloop: a faster event loop for the socket-bound
    gateway and worker (the profile showed the loop as a third of their CPU)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def load_settings(*, require_token: bool) -> Settings:
    try:
        return Settings.from_env(os.environ, require_token=require_token, require_key=True)
    except ConfigError as exc:
        fail(str(exc))


@click.group()
@click.version_option(__version__, prog_name="hookgate")
def main() -> None:
    """hookgate: durable webhook ingest and signed, retried delivery."""


@main.command()
def serve() -> None:
    """Run the HTTP API (needs HOOKGATE_ADMIN_TOKEN, HOOKGATE_SECRET_KEY, HOOKGATE_REDIS_URL)."""
    from .logs import configure
    from .server import serve_forever

    settings = load_settings(require_token=True)
    configure(settings.log_format)
    try:
        run(serve_forever(settings))
    except OSError as exc:
        fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}")


@main.command()
def worker() -> None:
    """Run a delivery worker (needs HOOKGATE_SECRET_KEY and HOOKGATE_REDIS_URL)."""
    from worker.main import run_worker

    from .logs import configure

    settings = load_settings(require_token=False)
    configure(settings.log_format)
    run(run_worker(settings))


@main.command()
@click.option("--data-dir", default=".hookgate", show_default=True, help="Embedded Redis data.")
def dev(data_dir: str) -> None:
    """Gateway, worker, an embedded Redis and a verifying sample receiver, in one terminal."""
    from .dev import run_dev

    try:
        run(run_dev(data_dir))
    except (HookgateError, OSError) as exc:
        fail(str(exc))


register(main)
