"""``hookgate dev``: the whole path — ingest, signed delivery, verification — in one terminal."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import click
import structlog
from aiohttp import web
from arq.connections import ArqRedis
from cryptography.exceptions import InvalidSignature

from gateway.cli.redis_server import free_port, start_redis
from gateway.core.errors import ConfigError, HookgateError, NotFound
from gateway.core.logs import configure
from gateway.core.model import EndpointFields
from gateway.core.secretbox import SecretBox
from gateway.core.settings import Settings
from gateway.core.signing_keys import PUBLIC_KEY_PREFIX, load_public_key
from gateway.store.connection import check_at_start, connect
from gateway.store.store import Store
from gateway.web.server import start_site, wait_for_stop

log = structlog.get_logger("hookgate.dev")

DEMO_BUSINESS = "bus_demo"
TOLERANCE_S = 300  # how far webhook-timestamp may be from now, as the reference library allows


# The keys that verify deliveries to the receiver: whsec_ secrets and whpk_ public keys.
KeySource = Callable[[], Awaitable[list[str]]]


def receiver_app(keys: KeySource) -> web.Application:
    """A merchant endpoint that verifies every delivery and logs what it got.

    It accepts the signature of any endpoint registered with its URL, HMAC or ed25519, so an
    endpoint a newcomer creates pointing here is verified too.
    """

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = _verify(await keys(), body, request.headers)
        except Exception as exc:  # whatever the verifier raises is a rejection here
            log.warning("hookgate.dev.receiver.rejected", reason=str(exc) or type(exc).__name__)
            return web.json_response({"error": "invalid signature"}, status=401)
        log.info(
            "hookgate.dev.receiver.verified",
            webhook_id=request.headers.get("webhook-id"),
            type=event.get("type"),
            signature="valid",
        )
        return web.json_response({"received": True})

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    return app


def _verify(keys: list[str], body: bytes, headers: Mapping[str, str]) -> Any:
    """hookgate-verifier when installed, else the Standard Webhooks reference library for
    ``whsec_`` secrets and ``cryptography`` for ``whpk_`` public keys."""
    if not keys:
        raise ValueError("no endpoint is registered with this receiver's URL")
    try:
        from hookgate_verifier import Verifier  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from standardwebhooks import Webhook

        lowered = {k.lower(): v for k, v in headers.items()}
        public_keys = [k for k in keys if k.startswith(PUBLIC_KEY_PREFIX)]
        secrets = [k for k in keys if not k.startswith(PUBLIC_KEY_PREFIX)]
        # The last check to fail gives the reason: the ed25519 one, or the last secret's.
        for secret in secrets[:-1] if not public_keys else secrets:
            with contextlib.suppress(Exception):
                return Webhook(secret).verify(body, lowered)
        if not public_keys:
            return Webhook(secrets[-1]).verify(body, lowered)
        return _verify_ed25519(public_keys, body, lowered)
    return Verifier(keys).verify(body, headers)


def _verify_ed25519(public_keys: list[str], body: bytes, headers: Mapping[str, str]) -> Any:
    """Standard Webhooks' ``v1a`` check, which the Python reference library does not make:
    an ed25519 signature by one of ``public_keys`` over ``{id}.{timestamp}.{body}``, with a
    timestamp within ``TOLERANCE_S`` of now. ``headers`` are lower-cased."""
    msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id:
        raise ValueError("webhook-id is missing")
    # Twelve digits reach the year 33658; int() of a huge digit string is slow.
    whole = stamp.isascii() and stamp.isdigit() and len(stamp) <= 12
    if not whole or abs(time.time() - int(stamp)) > TOLERANCE_S:
        raise ValueError("webhook-timestamp is missing, not whole seconds or too far from now")
    signed = f"{msg_id}.{stamp}.".encode() + body
    for entry in headers.get("webhook-signature", "").split():
        version, _, value = entry.partition(",")
        if version != "v1a":
            continue
        for public_key in public_keys:
            with contextlib.suppress(ValueError, InvalidSignature):  # binascii.Error: ValueError
                load_public_key(public_key).verify(base64.b64decode(value, validate=True), signed)
                return json.loads(body)
    raise ValueError("no v1a signature matches a public key of this receiver's endpoints")


@dataclasses.dataclass
class DevState:
    admin_token: str
    secret_key: str = dataclasses.field(default_factory=SecretBox.generate_key)
    endpoint_id: str = ""


def cannot_listen(host: str, port: int, exc: OSError) -> str:
    """One line for a gateway that cannot bind: a port in use names the port and the way out."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use: stop what holds it, or set HOOKGATE_PORT"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {reason} (set HOOKGATE_HOST/HOOKGATE_PORT)"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _prepare_dir(data_dir: str) -> Path:
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _save_state(path: Path, state: DevState) -> None:
    path.write_text(json.dumps(dataclasses.asdict(state)))
    path.chmod(0o600)  # it holds the admin token and the demo endpoint's secret


def _load_state(path: Path) -> DevState:
    if path.exists():
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return DevState(**json.loads(path.read_text()))
    return DevState(admin_token="hgdev_" + secrets.token_urlsafe(24))


async def _ensure_endpoint(store: Store, state: DevState, url: str) -> None:
    if state.endpoint_id:
        try:
            current = await store.get_endpoint(state.endpoint_id)
            if current["url"] != url:
                await store.update_endpoint(state.endpoint_id, EndpointFields(url=url))
            return
        except NotFound:
            pass
    endpoint, _secret = await store.create_endpoint(
        EndpointFields(business_id=DEMO_BUSINESS, url=url, description="hookgate dev receiver")
    )
    state.endpoint_id = endpoint["id"]


async def run_dev(data_dir: str) -> None:
    directory = _prepare_dir(data_dir)
    state_path = directory / "dev.json"
    state = _load_state(state_path)
    env = dict(os.environ)
    env.setdefault("HOOKGATE_ADMIN_TOKEN", state.admin_token)
    env.setdefault("HOOKGATE_SECRET_KEY", state.secret_key)
    env.setdefault("HOOKGATE_ALLOW_PRIVATE_TARGETS", "true")
    env.setdefault("HOOKGATE_HTTPS_ONLY", "false")
    env.setdefault("HOOKGATE_LOG_FORMAT", "console")
    redis_process: subprocess.Popen[bytes] | None = None
    if not env.get("HOOKGATE_REDIS_URL"):
        port = free_port()
        redis_process = start_redis(directory / "redis", port)
        env["HOOKGATE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    try:
        settings = Settings.from_env(env, require_token=True, require_key=True)
    except ConfigError:
        if redis_process:
            redis_process.terminate()
        raise
    configure(settings.log_format)
    try:
        embedded = f"embedded, AOF in {directory / 'redis'}" if redis_process else None
        await _run(settings, state, state_path, embedded=embedded)
    finally:
        if redis_process is not None:
            redis_process.send_signal(signal.SIGTERM)  # Redis flushes its AOF on SIGTERM
            redis_process.wait(timeout=10)


async def _run(
    settings: Settings, state: DevState, state_path: Path, *, embedded: str | None
) -> None:
    from gateway.web.app import create_app
    from worker.main import build_worker, stop_worker

    redis = connect(settings.redis, ArqRedis)
    where = settings.redis.describe()
    try:
        await redis.ping()
    except Exception as exc:
        raise HookgateError(f"cannot reach Redis at {where}: {type(exc).__name__}") from exc
    await check_at_start(redis, allow_non_durable=settings.allow_non_durable_redis)
    store = Store(redis, settings, frozenset())
    receiver_port = settings.port + 1 if _port_free(settings.port + 1) else free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}/webhooks"
    await _ensure_endpoint(store, state, receiver_url)
    _save_state(state_path, state)
    receiver = await start_site(
        receiver_app(lambda: store.verification_keys_for_url(receiver_url)),
        "127.0.0.1",
        receiver_port,
    )

    try:
        gateway = await start_site(
            create_app(settings, redis),
            settings.host,
            settings.port,
            request_timeout=settings.request_timeout,
        )
    except OSError as exc:
        await receiver.cleanup()
        raise HookgateError(cannot_listen(settings.host, settings.port, exc)) from None
    worker = build_worker(settings, redis)
    worker_task = asyncio.create_task(worker.async_run())
    base = f"http://{settings.host}:{settings.port}"
    click.echo(_banner(base, settings, state, receiver_url, embedded))
    try:
        await wait_for_stop()
    finally:
        click.echo("\nstopping: finishing deliveries in flight…")
        await gateway.cleanup()
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
        await stop_worker(worker, worker_task)
        await receiver.cleanup()


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (``.venv/bin``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _banner(
    base: str, settings: Settings, state: DevState, receiver: str, embedded: str | None
) -> str:
    token = settings.admin_token
    bindir = _shown(Path(sys.executable).parent)
    redis_line = embedded or settings.redis.describe()
    return f"""
hookgate dev is running
  API            {base}   (OpenAPI: {base}/openapi.json)
  portal         {base}/portal/   (sign in with the admin token)
  admin token    {token}
  redis          {redis_line}
  demo endpoint  {state.endpoint_id} → {receiver}
                 (business {DEMO_BUSINESS}; the receiver verifies every signature)

Send an event:
  curl -sS -X POST {base}/v1/events \\
    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\
    -d '{{"business_id": "{DEMO_BUSINESS}", "type": "payment.succeeded",
         "data": {{"payment_id": "pay_1", "amount": 4200}}}}'

Then look at its deliveries:
  curl -sS {base}/v1/events/<id> -H 'Authorization: Bearer {token}'

Or use the CLI (it is in the venv: `source {bindir}/activate` puts it on the PATH):
  export HOOKGATE_URL={base} HOOKGATE_ADMIN_TOKEN={token}
  {bindir}/hookgate deliveries ls

Ctrl-C stops everything (deliveries in flight finish first).
"""
