"""What ``hookgate listen`` does once its session is open: holds the session's WebSocket,
POSTs each delivery to the local receiver with exactly the headers and body the gateway
signed, prints a line per delivery and answers the gateway with the receiver's status, latency
and the start of its answer (or why there was none). A lost connection is made again, with
backoff, for as long as the command runs. (Its own module: aiohttp is loaded only by
``listen``, so the other commands start fast.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import time
import urllib.parse
from typing import Any

import aiohttp
import click
import msgspec

from gateway.cli.client import ApiClient, ApiFailure
from gateway.core import listen

HEARTBEAT = 10.0  # seconds between pings to the gateway: a dead connection is noticed in ~15 s
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between reconnections, then the last for ever
# WebSocket close codes the gateway uses (gateway/web/listen.py)
CLOSE_REPLACED = 4001
CLOSE_GONE = 4004
CLOSE_DISABLED = 4009

_MESSAGE = msgspec.json.Decoder(listen.ToClient)


class Stop(Exception):
    """The command ends: ``message`` on stderr, exit ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def session_path(name: str) -> str:
    return f"/v1/listen-sessions/{urllib.parse.quote(name, safe='')}"


def _now() -> str:
    return time.strftime("%H:%M:%S")


@dataclasses.dataclass
class Listener:
    """Holds the session's WebSocket, forwarding its deliveries, until stopped."""

    api: ApiClient
    name: str
    business_id: str
    types: tuple[str, ...]
    forward_to: str
    session: dict[str, Any]
    connected_once: bool = False
    ready: bool = False  # the current connection's gateway said ready
    forwards: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
        try:
            return await self._run()
        except asyncio.CancelledError:
            return 0

    async def _run(self) -> int:
        gateway = aiohttp.ClientSession(trust_env=True)
        # the receiver is on this machine: no proxy, nothing decompressed, no cookies kept
        local = aiohttp.ClientSession(
            trust_env=False, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        failures = 0  # connections in a row that ended before the gateway said ready
        try:
            while True:
                self.ready = False
                why = await self._connection(gateway, local)
                if self.ready:
                    failures = 0
                if why is None:  # the gateway stopped: another one takes the connection
                    await asyncio.sleep(0.2)
                    continue
                delay = BACKOFF[min(failures, len(BACKOFF) - 1)]
                failures += 1
                click.echo(f"{_now()}  connection lost ({why}); reconnecting in {delay:g} s")
                await asyncio.sleep(delay)
        finally:
            for task in self.forwards:
                task.cancel()
            await gateway.close()
            await local.close()

    async def _connection(
        self, gateway: aiohttp.ClientSession, local: aiohttp.ClientSession
    ) -> str | None:
        """One connection, until it ends: why (None when the gateway went away cleanly)."""
        url = f"{self.api.base}/v1/endpoints/{self.session['id']}/listen"
        headers = {"Authorization": f"Bearer {self.api.token}"}
        try:
            async with gateway.ws_connect(url, headers=headers, heartbeat=HEARTBEAT) as ws:
                async for message in ws:
                    if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        self._handle(ws, local, message.data)
                code = ws.close_code
        except aiohttp.WSServerHandshakeError as exc:
            return await self._refused(exc.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return _describe(exc)
        if code == CLOSE_REPLACED:
            raise Stop(
                f"another hookgate listen took listen session {self.name} over; this one stops",
                1,
            )
        if code == CLOSE_DISABLED:
            raise self._disabled("was disabled")
        if code == CLOSE_GONE:
            await self._reopen()
            return "the session was deleted"
        if code == aiohttp.WSCloseCode.GOING_AWAY:
            return None
        if code == aiohttp.WSCloseCode.INTERNAL_ERROR:
            return "the gateway cannot reach its store"
        if code in (None, aiohttp.WSCloseCode.ABNORMAL_CLOSURE):
            return "the connection broke"
        return f"closed by the gateway, code {code}"

    async def _refused(self, status: int) -> str:
        """The gateway refused the WebSocket: stops on a refusal that stays (401, 403, 409),
        opens the session again when it is gone (404), retries the rest."""
        if status == 401:
            raise Stop(
                f"{self.api.base} answered 401: the token from --token, HOOKGATE_API_KEY or "
                "HOOKGATE_ADMIN_TOKEN is not accepted there",
                2,
            )
        if status == 403:
            raise Stop("the token may not use listen sessions (it needs endpoints:write)", 2)
        if status == 409:
            raise self._disabled("is disabled")
        if status == 404:
            await self._reopen()
            return "the session had expired"
        return f"the gateway answered {status}"

    def _disabled(self, state: str) -> Stop:
        ep = self.session["id"]
        return Stop(
            f"listen session {self.name} ({ep}) {state} (a 410 from the receiver, or an "
            f"operator): enable it with hookgate endpoints enable {ep}",
            1,
        )

    async def _reopen(self) -> None:
        """Opens the session again (the same one if it still exists, else a new one: its
        secret is then new, and printed)."""
        try:
            opened = await asyncio.to_thread(
                self.api.request,
                "PUT",
                session_path(self.name),
                {"business_id": self.business_id, **self._types_field()},
            )
        except ApiFailure as exc:
            if 400 <= exc.status < 500:  # a refusal that stays: a revoked key, the limit
                raise Stop(str(exc), 2) from None
            return  # unreachable or failing: the next connection tries again
        if opened["id"] != self.session["id"]:
            click.echo(
                f"{_now()}  listen session {self.name} had expired: a new one was opened "
                f"({opened['id']}); its secret is {opened['secret']}   (configure your receiver "
                "with it)"
            )
        self.session = opened

    def _types_field(self) -> dict[str, Any]:
        return {"event_types": list(self.types)} if self.types else {}

    def _handle(
        self, ws: aiohttp.ClientWebSocketResponse, local: aiohttp.ClientSession, data: Any
    ) -> None:
        try:
            message = _MESSAGE.decode(data)
        except msgspec.DecodeError:
            click.echo(f"{_now()}  ignored a message this version does not know", err=True)
            return
        if isinstance(message, listen.Ready):
            self.ready = True
            again = "Reconnected" if self.connected_once else "Ready"
            self.connected_once = True
            click.echo(f"{again}: forwarding to {self.forward_to}  (Ctrl-C to stop)")
        elif isinstance(message, listen.Delivery):
            task = asyncio.create_task(self._forward(ws, local, message))
            self.forwards.add(task)
            task.add_done_callback(self.forwards.discard)

    async def _forward(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        local: aiohttp.ClientSession,
        delivery: listen.Delivery,
    ) -> None:
        """POSTs the delivery to the receiver, prints a line and answers the gateway."""
        outcome = await post(local, self.forward_to, delivery)
        again = f"  (attempt {delivery.attempt})" if delivery.attempt > 1 else ""
        if outcome.status is not None:
            result = f"→ {outcome.status}  {outcome.latency_ms:.0f} ms"
        else:
            result = f"→ error: {outcome.error}"
        click.echo(
            f"{_now()}  {delivery.event_type}  {delivery.event_id}  {result}{again}".rstrip()
        )
        with contextlib.suppress(ConnectionError, RuntimeError):
            # gone: the gateway's worker counts it a timeout and tries again
            await ws.send_str(msgspec.json.encode(outcome).decode())


async def post(
    session: aiohttp.ClientSession, url: str, delivery: listen.Delivery
) -> listen.Outcome:
    """The receiver's answer to ``delivery``, or why there was none."""
    started = time.monotonic()

    def failed(error: str) -> listen.Outcome:
        return listen.Outcome(
            job_id=delivery.job_id,
            status=None,
            latency_ms=_ms(started),
            error=error[: listen.ERROR_LIMIT],
        )

    target = _where(url)
    try:
        async with asyncio.timeout(delivery.timeout):
            async with session.post(
                url,
                data=delivery.body.encode(),
                headers=delivery.headers,
                allow_redirects=False,
            ) as response:
                raw = await _read_capped(response)
                return listen.Outcome(
                    job_id=delivery.job_id,
                    status=response.status,
                    latency_ms=_ms(started),
                    body=raw.decode("utf-8", "replace")[: listen.RESPONSE_LIMIT],
                )
    except TimeoutError:
        return failed(f"timeout after {delivery.timeout:g}s at {target}")
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror or str(exc)
        if isinstance(exc.os_error, ConnectionRefusedError):
            return failed(f"connection refused at {target}")
        if isinstance(exc, aiohttp.ClientSSLError):
            return failed(f"TLS failed at {target}: {why}")
        return failed(f"cannot connect to {target}: {why}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return failed(f"{type(exc).__name__} at {target}: {exc}")
    except Exception as exc:  # a bug costs the attempt (retried), never the outcome
        return failed(f"{type(exc).__name__} at {target}")


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    buf = bytearray()
    while len(buf) < listen.RESPONSE_LIMIT:
        chunk = await response.content.read(listen.RESPONSE_LIMIT - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot reach the gateway: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, TimeoutError):
        return "the gateway did not answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
