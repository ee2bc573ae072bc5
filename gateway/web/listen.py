"""Listen sessions over the API: ``PUT /v1/listen-sessions/{name}`` opens one (found by its
name within the business, made when there is none) and ``GET /v1/endpoints/{id}/listen`` is its
WebSocket, which ``hookgate listen`` holds open to receive the session's deliveries.

While a connection is open this gateway keeps the session online (``ListenRelay.presence``,
every second), reads the attempts workers add to the session's outbox and sends each to the
client as a ``Delivery`` message, and hands the client's ``Outcome`` of each back to the
worker waiting for it. Any gateway may hold any session: the attempts and outcomes cross
Redis (``gateway/store/listen.py``). A session has one connection at a time: a newer one takes
it over, and the older one is told (``replaced``) and closed.

Nothing a client sends reaches a log line: a message that is not an outcome of an attempt sent
on its connection is dropped, and logged by its kind only.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import weakref

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from redis.exceptions import RedisError

from gateway.core import listen
from gateway.core.errors import Conflict
from gateway.core.logs import error_fields
from gateway.store.listen import PRESENCE_EVERY, Attempt, ListenRelay
from gateway.web import access, audit, schemas, validation
from gateway.web.bodies import answer
from gateway.web.context import CELLS, SETTINGS, STORE
from gateway.web.errors import UpgradeRequired
from gateway.web.requests import JSON_BODY_LIMIT, path_id, read_struct

log = structlog.get_logger("hookgate.listen")

LISTEN_SESSION = msgspec.json.Decoder(schemas.ListenSessionIn)
OUTCOME = msgspec.json.Decoder(listen.Outcome)
HEARTBEAT = 10.0  # seconds between pings: a client that stops answering is gone after ~15 s
MESSAGE_LIMIT = 64 * 1024  # an outcome is at most a few KB
READ_BLOCK = 1.0  # seconds an outbox read waits for an attempt
# What a client is given to forward an attempt in: the worker's wait, less room for the
# outcome's way back.
CLIENT_MARGIN = 1.0
OUTSTANDING_LIMIT = 1000  # attempts sent on a connection whose outcome is awaited, at most
# Close codes a client tells apart (4000-4999 are the application's).
CLOSE_REPLACED = 4001  # another connection took the session over: do not come back
CLOSE_GONE = 4004  # the session was deleted or expired: open it again
CLOSE_DISABLED = 4009  # the session was disabled: nothing comes until it is enabled


class Connections:
    """The listen WebSockets this gateway holds, closed when it shuts down (the clients then
    reconnect, to another gateway behind the load balancer)."""

    def __init__(self) -> None:
        self._open: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def add(self, ws: web.WebSocketResponse) -> None:
        self._open.add(ws)

    def discard(self, ws: web.WebSocketResponse) -> None:
        self._open.discard(ws)

    async def close_all(self) -> None:
        for ws in list(self._open):
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the gateway is stopping")


CONNECTIONS = web.AppKey("listen_connections", Connections)


def setup_listen(app: web.Application) -> None:
    """What the routes (``api.add_routes``) need: the open connections, closed at shutdown."""
    app[CONNECTIONS] = Connections()
    app.on_shutdown.append(_close_connections)


async def _close_connections(app: web.Application) -> None:
    await app[CONNECTIONS].close_all()


async def put_listen_session(request: web.Request) -> web.Response:
    """Opens the business's listen session of the path's name; the answer holds its secret."""
    store = request.app[STORE]
    name = validation.listen_session_name(request.match_info["name"])
    body = await read_struct(request, JSON_BODY_LIMIT, LISTEN_SESSION)
    access.own_business(request, body.business_id)
    types: tuple[str, ...] = ()
    if body.event_types is not None:
        types = validation.event_types(body.event_types, await store.known_types())
    session, secret, created = await store.open_listen_session(body.business_id, name, types)
    audit.note(request, session["id"], business_id=session["business_id"])
    return answer(
        {**session, "secret": secret, "created": created},
        schemas.ListenSession,
        status=201 if created else 200,
    )


async def connect(request: web.Request) -> web.StreamResponse:
    """The session's WebSocket; refused before the upgrade (a JSON error) when the endpoint is
    not a listen session or is disabled, or the request is no WebSocket upgrade."""
    endpoint_id = path_id(request, "ep")
    session = await request.app[STORE].get_endpoint(endpoint_id)
    if session["kind"] != listen.KIND:
        raise Conflict(
            f"{endpoint_id} is an http endpoint, not a listen session", code="not_a_listen_session"
        )
    if session["disabled"]:
        raise Conflict(
            f"the listen session is disabled ({session['disabled_reason']}): enable it first "
            f"(hookgate endpoints enable {endpoint_id})",
            code="endpoint_disabled",
        )
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MESSAGE_LIMIT)
    if not ws.can_prepare(request).ok:
        raise UpgradeRequired("this route is a WebSocket: hookgate listen connects to it")
    await ws.prepare(request)
    connections = request.app[CONNECTIONS]
    connections.add(ws)
    try:
        await Connection(
            ws,
            (await request.app[CELLS].of_endpoint(endpoint_id)).listen,
            endpoint_id,
            str(session["session"]),
            timeout=request.app[SETTINGS].delivery_timeout,
        ).run()
    finally:
        connections.discard(ws)
    return ws


class _Ended(Exception):
    """The connection must end: ``code`` and ``reason`` are what the client is told."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Connection:
    """One client's connection to one listen session, from its upgrade to its close."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        relay: ListenRelay,
        endpoint_id: str,
        session: str,
        *,
        timeout: float,
    ) -> None:
        self.ws = ws
        self.relay = relay
        self.endpoint_id = endpoint_id
        self.session = session
        self.timeout = timeout
        self.token = secrets.token_hex(16)
        # attempts sent on this connection whose outcome is awaited: job id → delivery id
        self.outstanding: dict[str, str] = {}

    async def run(self) -> None:
        about = {"endpoint_id": self.endpoint_id}
        log.info("hookgate.listen.connected", **about)
        try:
            try:
                await self._serve()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await self.relay.presence(self.endpoint_id, self.token, "leave")
        except _Ended as end:
            log.info("hookgate.listen.ended", **about, why=end.reason)
            if end.code == CLOSE_REPLACED:
                await self._send(listen.Replaced())
            await self.ws.close(code=end.code, message=end.reason.encode())
        except RedisError as exc:
            log.warning("hookgate.listen.store_unavailable", **about, **error_fields(exc))
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"store unavailable")
        except (ConnectionError, RuntimeError):
            pass  # the client went away while it was being sent to
        except Exception:  # a bug: the client is told, and comes back
            log.exception("hookgate.listen.internal_error", **about)
            await self.ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        log.info("hookgate.listen.disconnected", **about)

    async def _serve(self) -> None:
        """Until the client goes, the session is taken over or deleted, or Redis fails."""
        self._check(await self.relay.presence(self.endpoint_id, self.token, "connect"))
        after, waiting = await self.relay.resume(self.endpoint_id, self.timeout)
        await self._send(listen.Ready(session=self.session, endpoint_id=self.endpoint_id))
        tasks = [
            asyncio.create_task(self._pump(after, waiting)),
            asyncio.create_task(self._receive()),
            asyncio.create_task(self._stay()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # raises what ended it (_Ended, RedisError); None: the client left

    async def _stay(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_EVERY)
            self._check(await self.relay.presence(self.endpoint_id, self.token, "stay"))

    def _check(self, state: str) -> None:
        if state == "replaced":
            raise _Ended(CLOSE_REPLACED, "another connection took the listen session over")
        if state == "gone":
            raise _Ended(CLOSE_GONE, "the listen session was deleted")
        if state == "disabled":
            raise _Ended(CLOSE_DISABLED, "the listen session was disabled")

    async def _pump(self, after: str, waiting: list[Attempt]) -> None:
        for attempt in waiting:
            await self._deliver(attempt)
        while True:
            for attempt in await self.relay.read(self.endpoint_id, after, READ_BLOCK):
                after = attempt.entry_id
                await self._deliver(attempt)

    async def _deliver(self, attempt: Attempt) -> None:
        # Sent by one connection only: one that lost the session (to a newer one, while its
        # next renewal is still to come) stops here.
        if not await self.relay.holds(self.endpoint_id, self.token):
            self._check(await self.relay.presence(self.endpoint_id, self.token, "stay"))
        if len(self.outstanding) >= OUTSTANDING_LIMIT:
            del self.outstanding[next(iter(self.outstanding))]  # its worker gave up long ago
        self.outstanding[attempt.job_id] = attempt.delivery_id
        await self._send(
            listen.Delivery(
                job_id=attempt.job_id,
                delivery_id=attempt.delivery_id,
                event_id=attempt.event_id,
                event_type=attempt.event_type,
                attempt=attempt.attempt,
                headers=attempt.headers,
                body=attempt.body.decode("utf-8", "replace"),
                timeout=max(0.5, attempt.timeout - CLIENT_MARGIN),
            )
        )

    async def _receive(self) -> None:
        async for message in self.ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                outcome = OUTCOME.decode(message.data)
            except msgspec.DecodeError:  # ValidationError is one too
                log.info("hookgate.listen.bad_message", endpoint_id=self.endpoint_id)
                continue
            if self.outstanding.pop(outcome.job_id, None) is None:
                log.info("hookgate.listen.unexpected_outcome", endpoint_id=self.endpoint_id)
                continue
            await self.relay.answer(outcome)

    async def _send(self, message: listen.Ready | listen.Delivery | listen.Replaced) -> None:
        await self.ws.send_str(msgspec.json.encode(message).decode())
