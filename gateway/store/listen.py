"""The Redis side of listen sessions (``hookgate listen``): how an attempt crosses from the
worker that makes it to whichever gateway holds the session's WebSocket, and back.

The worker adds the attempt (job, delivery, headers as signed, body) to the session's outbox
stream, waits on a list of its own, ``listen_reply(job)``, for the outcome, and takes the
attempt out of the outbox again (``forward``). The gateway holding the session reads the
outbox (``resume`` then ``read``), sends each attempt to its client and pushes the client's
outcome to that list (``answer``).
No process holds anything the others need: any worker may make an attempt and any gateway may
hold the WebSocket. An attempt whose outcome does not come back in time (the client vanished,
or no gateway read it) is a failed attempt, recorded and retried on the schedule like a
timeout of an HTTP endpoint.

While no client is connected the session's online mark (``listen_online``) is absent and its
attempts wait in the claim step (``lua/lib/claim.lua``); ``presence`` keeps the mark while a
connection is open. Sessions no client has been connected to for
``HOOKGATE_LISTEN_SESSION_TTL`` (a day unless set) are deleted by the worker's sweep
(``expire_sessions``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from gateway.core.clock import now_ms
from gateway.core.errors import Conflict, NotFound
from gateway.core.listen import Outcome
from gateway.store import keys
from gateway.store.store import Store, as_str, awaited

ONLINE_TTL_MS = 5000  # the online mark outlives its connection's gateway by at most this
PRESENCE_EVERY = 1.0  # seconds between renewals of the online mark
OUTBOX_LENGTH = 1000  # attempts an outbox keeps, about (older ones were answered or timed out)
REPLY_TTL = 60  # seconds an outcome no worker took is kept
# No call blocks Redis longer: behind Sentinel a reply slower than 10 s means the node is gone
# (``connection.SOCKET_TIMEOUT``).
BLOCK_SLICE = 5.0
READ_BATCH = 16
EXPIRE_BATCH = 100

_OUTCOME = msgspec.json.Decoder(Outcome)


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One attempt of a listen session, as it crosses the outbox."""

    job_id: str
    delivery_id: str
    event_id: str
    event_type: str
    attempt: int
    headers: dict[str, str]
    body: bytes
    timeout: float  # seconds the worker waits for its outcome
    entry_id: str = ""  # its outbox entry, once read

    def fields(self) -> dict[FieldT, EncodableT]:
        return {
            "job": self.job_id,
            "delivery": self.delivery_id,
            "event": self.event_id,
            "type": self.event_type,
            "attempt": self.attempt,
            "headers": json.dumps(self.headers),
            "body": self.body,
            "timeout": repr(self.timeout),
        }

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> Attempt:
        return cls(
            job_id=as_str(fields[b"job"]),
            delivery_id=as_str(fields[b"delivery"]),
            event_id=as_str(fields[b"event"]),
            event_type=as_str(fields[b"type"]),
            attempt=int(fields[b"attempt"]),
            headers=json.loads(fields[b"headers"]),
            body=fields[b"body"],
            timeout=float(fields[b"timeout"]),
            entry_id=as_str(entry_id),
        )


class UnreadableOutcome(Exception):
    """What a worker found on an attempt's reply list is not an outcome (never written by a
    gateway of this version)."""


class ListenRelay:
    """Listen sessions' attempts and outcomes over one Redis pool (injected)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis: Redis = store.redis

    # ---- the worker's side ---------------------------------------------------------------

    async def forward(self, endpoint_id: str, attempt: Attempt) -> Outcome | None:
        """Hands ``attempt`` to the gateway holding the session and waits ``attempt.timeout``
        seconds for its outcome; None when none came. Raises ``UnreadableOutcome``."""
        reply = keys.listen_reply(attempt.job_id)
        outbox = keys.listen_outbox(endpoint_id)
        entry_id = await self.redis.xadd(
            outbox, attempt.fields(), maxlen=OUTBOX_LENGTH, approximate=True
        )
        try:
            deadline = time.monotonic() + attempt.timeout
            while (left := deadline - time.monotonic()) > 0:
                wait = min(max(left, 0.01), BLOCK_SLICE)  # never 0: BLPOP would wait for ever
                # Redis >= 6 takes fractions of a second (redis-py types whole ones only)
                got = await awaited(
                    self.redis.blpop([reply], timeout=wait)  # type: ignore[arg-type]
                )
                if got:
                    try:
                        return _OUTCOME.decode(got[1])
                    except msgspec.DecodeError as exc:  # ValidationError is one too
                        raise UnreadableOutcome(str(exc)) from None
            return None
        finally:
            # The outbox holds only attempts a worker still waits for: what a connection that
            # comes now sends first (``resume``).
            with contextlib.suppress(RedisError):
                await self.redis.xdel(outbox, entry_id)

    # ---- the gateway's side --------------------------------------------------------------

    async def presence(self, endpoint_id: str, token: str, what: str) -> str:
        """A connection with ``token`` comes (``connect``), stays (``stay``, every
        ``PRESENCE_EVERY`` seconds) or goes (``leave``): ``ok``, ``replaced``, ``gone`` or
        ``disabled``."""
        return await self.store.scripts.listen_presence(endpoint_id, token, what, ONLINE_TTL_MS)

    async def holds(self, endpoint_id: str, token: str) -> bool:
        """Whether the connection with ``token`` still holds the session."""
        held = await awaited(self.redis.get(keys.listen_online(endpoint_id)))
        return as_str(held) == token

    async def resume(self, endpoint_id: str, within_s: float) -> tuple[str, list[Attempt]]:
        """Where a new connection starts reading the outbox, and the attempts a worker still
        waits for (each worker takes its attempt out of the outbox when it stops waiting; those
        added more than ``within_s`` seconds ago are a crashed worker's) whose outcome no one
        has given yet: a connection that replaced another, or that came while an attempt was on
        its way to the session, sends them first."""
        outbox = keys.listen_outbox(endpoint_id)
        seconds, micros = await self.redis.time()
        since = int(seconds) * 1000 + int(micros) // 1000 - int(within_s * 1000)
        last = await self.redis.xrevrange(outbox, count=1)
        if not last:
            return "0-0", []
        after = as_str(last[0][0])
        recent = [
            Attempt.from_entry(entry_id, fields)
            for entry_id, fields in await self.redis.xrange(outbox, min=str(since), max=after)
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for attempt in recent:
                pipe.exists(keys.listen_reply(attempt.job_id))
            answered = await pipe.execute() if recent else []
        return after, [a for a, done in zip(recent, answered, strict=True) if not done]

    async def read(self, endpoint_id: str, after: str, block_s: float) -> list[Attempt]:
        """The attempts added to the outbox after entry ``after``, waiting up to ``block_s``
        seconds for one."""
        outbox = keys.listen_outbox(endpoint_id)
        found = await self.redis.xread(
            {outbox: after}, count=READ_BATCH, block=int(min(block_s, BLOCK_SLICE) * 1000)
        )
        if not found:
            return []
        [(_stream, entries)] = found
        return [Attempt.from_entry(entry_id, fields) for entry_id, fields in entries]

    async def answer(self, outcome: Outcome) -> None:
        """Gives the worker waiting for ``outcome.job_id`` its outcome."""
        reply = keys.listen_reply(outcome.job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(reply, msgspec.json.encode(outcome))
            pipe.expire(reply, REPLY_TTL)
            await pipe.execute()

    # ---- expiry --------------------------------------------------------------------------

    async def expire_sessions(self, ttl_s: float) -> list[str]:
        """Deletes the sessions no client has been connected to for ``ttl_s`` seconds, as an
        endpoint is deleted (their pending deliveries are cancelled: ``session_expired``);
        returns their ids."""
        cutoff = now_ms() - int(ttl_s * 1000)
        due = await self.redis.zrangebyscore(
            keys.LISTEN_SESSIONS, "-inf", cutoff, start=0, num=EXPIRE_BATCH
        )
        expired = []
        for raw_id in due:
            endpoint_id = as_str(raw_id)
            if await self.redis.exists(keys.listen_online(endpoint_id)):
                continue  # connected right now: its presence moves it on
            try:
                await self.store.delete_endpoint(endpoint_id, "session_expired")
            except NotFound:
                pass  # deleted meanwhile
            except Conflict:
                continue  # being changed right now: the next sweep deletes it
            await self.redis.zrem(keys.LISTEN_SESSIONS, endpoint_id)
            expired.append(endpoint_id)
        return expired
