"""The ``hookgate`` command: ``serve``, ``worker`` and ``dev``; the operator commands, ``trigger``
and ``listen`` are registered from their modules."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

import click

from gateway import __version__
from gateway.cli import listen, trigger
from gateway.cli.commands import register
from gateway.core.cells import DEFAULT_CELL, CellSpec
from gateway.core.errors import ConfigError, HookgateError
from gateway.core.settings import Settings

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


def env_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        fail(str(exc))


CHECK_HELP = "Check a running one (a container health check): exit 0 if healthy, else 1."


@main.command()
@click.option("--check", is_flag=True, help=CHECK_HELP)
def serve(check: bool) -> None:
    """Run the HTTP API (needs HOOKGATE_ADMIN_TOKEN, HOOKGATE_SECRET_KEY, HOOKGATE_REDIS_URL)."""
    if check:
        check_serve(env_settings())
    from gateway.core.logs import configure
    from gateway.web.server import serve_forever

    settings = load_settings(require_token=True)
    configure(settings.log_format)
    try:
        run(serve_forever(settings))
    except ConfigError as exc:  # a Redis that could drop data
        fail(str(exc))
    except OSError as exc:
        from gateway.cli.dev import cannot_listen

        fail(cannot_listen(settings.host, settings.port, exc))


def check_serve(settings: Settings) -> NoReturn:
    """Exits 0 when the gateway on this machine answers ``/readyz`` (Redis reachable)."""
    import urllib.error
    import urllib.request

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{settings.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        click.echo(f"hookgate: unhealthy: {url}: {exc}", err=True)
        sys.exit(1)
    if status != 200:
        click.echo(f"hookgate: unhealthy: {url} answered {status}", err=True)
        sys.exit(1)
    sys.exit(0)


@main.command()
@click.option("--check", is_flag=True, help=CHECK_HELP)
@click.option(
    "--cell",
    default=None,
    metavar="NAME",
    help="The cell of HOOKGATE_CELLS to deliver (default: the only one).",
)
def worker(check: bool, cell: str | None) -> None:
    """Run a delivery worker (needs HOOKGATE_SECRET_KEY and HOOKGATE_REDIS_URL, or
    HOOKGATE_CELLS and --cell)."""
    if check:
        from worker.heartbeat import check_heartbeat

        settings = env_settings()
        problem = check_heartbeat(
            worker_settings(settings, pick_cell(settings, cell)).worker_heartbeat
        )
        if problem:
            click.echo(f"hookgate: unhealthy: {problem}", err=True)
            sys.exit(1)
        sys.exit(0)
    from gateway.core.logs import configure
    from worker.main import run_worker

    settings = load_settings(require_token=False)
    spec = pick_cell(settings, cell)
    configure(settings.log_format)
    try:
        run(run_worker(worker_settings(settings, spec), spec.name))
    except ConfigError as exc:  # a Redis that could drop data, an arq it was not built for
        fail(str(exc))


def worker_settings(settings: Settings, spec: CellSpec) -> Settings:
    """A worker's settings: its cell's Redis group, and a heartbeat file of its cell's (two
    cells' workers on one host would otherwise vouch for each other) unless
    HOOKGATE_WORKER_HEARTBEAT names one."""
    own = settings.for_cell(spec)
    if spec.name != DEFAULT_CELL and not os.environ.get("HOOKGATE_WORKER_HEARTBEAT"):
        base, ext = os.path.splitext(own.worker_heartbeat)
        own = dataclasses.replace(own, worker_heartbeat=f"{base}-{spec.name}{ext}")
    return own


def pick_cell(settings: Settings, name: str | None) -> CellSpec:
    """The cell a worker serves: ``--cell``, or the only one configured."""
    specs = settings.cell_specs
    names = ", ".join(spec.name for spec in specs)
    if name is None:
        if len(specs) > 1:
            fail(f"HOOKGATE_CELLS lists {len(specs)} cells ({names}): name one with --cell")
        return specs[0]
    for spec in specs:
        if spec.name == name:
            return spec
    shown = name if len(name) <= 40 and name.isprintable() else name[:40] + "…"
    fail(f"--cell {shown!r} is not a configured cell; the cells are {names}")


@main.command()
@click.option("--data-dir", default=".hookgate", show_default=True, help="Embedded Redis data.")
def dev(data_dir: str) -> None:
    """Gateway, worker, an embedded Redis and a verifying sample receiver, in one terminal."""
    from gateway.cli.dev import run_dev

    try:
        run(run_dev(data_dir))
    except (HookgateError, OSError) as exc:
        fail(str(exc))


register(main)
trigger.register(main)
listen.register(main)
