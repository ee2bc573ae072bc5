"""The Lua scripts that make each state change of hookgate one atomic Redis step, and the only
code that knows their KEYS and ARGV.

Each script (``lua/<name>.lua``) is the whole of one transition (ingest, claim, finish,
replay, rescue, disable), so a crash of any process between two Redis calls cannot leave a
half-written event, a delivery with no job, or an operational event that was decided but
never stored. Shared helpers live in ``lua/lib/`` and are pulled in by ``--@include`` lines.
Every script starts with a prelude generated here from ``keys.py`` and ``queue.py``: its key
names and arq's are those modules' own, never a second spelling. Scripts build key names, as
arq does: hookgate, like arq, runs on one Redis primary (or one per shard), never on Redis
Cluster.
"""

from __future__ import annotations

import functools
import importlib.resources
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from gateway.core import codec, listen
from gateway.core.cells import DEFAULT_CELL, id_suffix
from gateway.core.clock import iso_ms, now_ms
from gateway.core.durations import format_duration
from gateway.core.errors import HookgateError, StoreUnavailable
from gateway.core.ids import new_id
from gateway.core.logs import name_script
from gateway.core.model import Finished
from gateway.core.settings import Settings
from gateway.store import keys, queue

SCRIPTS = (
    "ingest_many",
    "take_and_claim",
    "finish_many",
    "rescue",
    "replay",
    "disable",
    "cancel_endpoint",
    "replay_batch",
    "replay_start",
    "audit",
    "create_endpoint",
    "ordering_skip",
    "ordering_release",
    "listen_session",
    "listen_presence",
)
# Events per ingest script call: bounds how long one call holds Redis (~1 ms per 100 events).
INGEST_GROUP = 200

# ARGV[1..5] of every script, in this order (``Scripts._common``); a script's own start at 6.
# (name, is a number)
_COMMON_ARGV = (
    ("NOW", True),  # ms
    ("RETENTION", True),  # ms a delivery, its attempts and its event are kept
    ("NOW_ISO", False),
    ("DISABLE_AFTER", True),  # ms of failing before an endpoint is disabled; 0: never
    ("DISABLE_AFTER_TEXT", False),  # the same, as the operator wrote it (for the reason)
)
_QUEUE_CONSTANTS: dict[str, str | int] = {
    "ARQ_QUEUE": queue.QUEUE,
    "ARQ_JOB_KEY": queue.JOB_KEY_PREFIX,
    "ARQ_IN_PROGRESS_KEY": queue.IN_PROGRESS_KEY_PREFIX,
    "ARQ_RETRY_KEY": queue.RETRY_KEY_PREFIX,
    "JOB_EXPIRY": queue.JOB_EXPIRY_MS,
    "ATTEMPT_JOB_PREFIX": queue.ATTEMPT_JOB_PREFIX,
    "ATTEMPT_FUNCTION": queue.ATTEMPT_FUNCTION,
    "REPLAY_BATCH_FUNCTION": queue.REPLAY_BATCH_FUNCTION,
}
# What the scripts must know of listen sessions (``gateway/core/listen.py``).
_LISTEN_CONSTANTS = {
    "LISTEN_KIND": listen.KIND,
    "LISTEN_ORDERING_KEY": listen.ORDERING_KEY,
}
_INCLUDE = re.compile(r"^--@include\b(.*)$", re.MULTILINE)
_LIB_NAME = re.compile(r"lib/[a-z_]+\.lua")
_PLACEHOLDER = re.compile("\0([0-9]+)\0")


class ScriptSourceError(HookgateError):
    """A Lua script or an include of it is missing or malformed: a broken install."""


# ---- loading -------------------------------------------------------------------------------


def _lua_string(value: str) -> str:
    if not value.isascii() or not value.isprintable():
        raise ScriptSourceError(f"{value!r} cannot be a Lua constant")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def key_constants() -> dict[str, str]:
    """``keys.py``'s fixed key names, by their Lua name (``KEY_DUE`` for ``keys.DUE``)."""
    return {
        f"KEY_{name}": value
        for name, value in vars(keys).items()
        if name.isupper() and name != "PREFIX" and isinstance(value, str)
    }


def key_functions() -> dict[str, Callable[..., str]]:
    """``keys.py``'s key builders, by their Lua name (``key_delivery`` for ``keys.delivery``)."""
    return {
        f"key_{name}": value
        for name, value in vars(keys).items()
        if inspect.isfunction(value) and value.__module__ == keys.__name__
    }


def _lua_key_function(lua_name: str, build: Callable[..., str]) -> str:
    # The Python function builds the key around placeholders; the Lua one joins the same
    # pieces around its arguments.
    count = len(inspect.signature(build).parameters)
    shape = build(*(f"\0{i}\0" for i in range(count)))
    if _PLACEHOLDER.findall(shape) != [str(i) for i in range(count)]:
        raise ScriptSourceError(f"keys.{build.__name__} is not a template of its arguments")
    parts = []
    for n, piece in enumerate(_PLACEHOLDER.split(shape)):
        if n % 2:
            parts.append(f"a{piece}")
        elif piece:
            parts.append(_lua_string(piece))
    params = ", ".join(f"a{i}" for i in range(count))
    return f"local function {lua_name}({params}) return {' .. '.join(parts)} end"


@functools.cache
def prelude() -> str:
    """What every script starts with: key names (``keys.py``), arq's layout and job names
    (``queue.py``), the listen sessions' kind and ordering key (``core/listen.py``), and the
    common arguments (ARGV[1..5])."""
    lines = ["-- generated by gateway/store/scripts.py from keys.py and queue.py"]
    lines += [f"local {n} = {_lua_string(v)}" for n, v in key_constants().items()]
    lines += [_lua_key_function(n, f) for n, f in key_functions().items()]
    for name, value in _QUEUE_CONSTANTS.items():
        lua = str(value) if isinstance(value, int) else _lua_string(value)
        lines.append(f"local {name} = {lua}")
    lines += [f"local {n} = {_lua_string(v)}" for n, v in _LISTEN_CONSTANTS.items()]
    for i, (name, number) in enumerate(_COMMON_ARGV, start=1):
        lines.append(
            f"local {name} = tonumber(ARGV[{i}])" if number else f"local {name} = ARGV[{i}]"
        )
    return "\n".join(lines) + "\n"


def _read(path: str) -> str:
    try:
        return (importlib.resources.files("gateway.store") / "lua" / path).read_text("utf-8")
    except FileNotFoundError:
        raise ScriptSourceError(f"no Lua file gateway/store/lua/{path}") from None


def _expand(source: str, origin: str, done: list[str], stack: tuple[str, ...]) -> str:
    """``source`` with each ``--@include`` line replaced by that file, expanded the same way
    (each file once, its own includes first)."""

    def include(match: re.Match[str]) -> str:
        path = match[1].strip()
        if not _LIB_NAME.fullmatch(path):
            raise ScriptSourceError(f"{origin}: malformed include line {match[0]!r}")
        if path in stack:
            raise ScriptSourceError(f"{origin}: include cycle {' -> '.join((*stack, path))}")
        if path in done:
            return f"-- ({path}: included above)"
        text = _expand(_read(path), path, done, (*stack, path))
        done.append(path)
        return f"-- {path}\n{text}"

    return _INCLUDE.sub(include, source)


def compose(source: str, origin: str = "<script>") -> str:
    """A runnable script: the prelude, then ``source`` with its includes expanded."""
    done: list[str] = []
    body = _expand(source, origin, done, ())
    if "lib/counts.lua" in done and "with_counts(" not in source:
        # a counter added up but never written would be lost without a trace
        raise ScriptSourceError(f"{origin} counts but never ends with `return with_counts(...)`")
    return prelude() + body


@functools.cache
def script_source(name: str) -> str:
    """The composed text of ``lua/<name>.lua``."""
    return compose(_read(f"{name}.lua"), f"{name}.lua")


# ---- calling -------------------------------------------------------------------------------


class NewEvent(NamedTuple):
    """One event for INGEST_MANY; no field but ``body`` can hold a space (validated at the
    edge)."""

    event_id: str
    type: str
    business_id: str
    body: bytes
    check_type: bool  # a custom type: must be registered
    fingerprint: str
    only_endpoint: str
    idempotency_key: str | None
    ordering_key: str | None = None  # crosses as hex: it may hold spaces


class ClaimReply(NamedTuple):
    """An attempt TAKE_AND_CLAIM started, as the script answers it (bytes from Redis)."""

    body: bytes
    url: bytes
    secrets: bytes
    headers: bytes
    attempt: bytes
    event_id: bytes
    endpoint_id: bytes
    chain: bytes
    event_type: bytes
    ordering_key: bytes  # empty for an unordered delivery
    sequence: bytes  # likewise


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Scripts:
    """Every script over one Redis pool, one typed method each."""

    def __init__(self, redis: Redis, settings: Settings, cell: str = DEFAULT_CELL) -> None:
        self.redis = redis
        self.cell = cell
        self.id_suffix = id_suffix(cell)  # of the ids made here (operational events)
        self._retention_ms = int(settings.retention * 1000)
        self._audit_retention_ms = int(settings.audit_retention * 1000)
        self._disable_after_ms = int(settings.disable_after * 1000)
        self._disable_after_text = format_duration(settings.disable_after)
        self._wait_replicas = settings.wait_replicas
        self._wait_timeout_ms = max(1, int(settings.redis_wait_timeout * 1000))
        loaded = {name: redis.register_script(script_source(name)) for name in SCRIPTS}
        for name, script in loaded.items():
            name_script(script.sha, name.upper())
        self._ingest_many = loaded["ingest_many"]
        self._take_and_claim = loaded["take_and_claim"]
        self._finish_many = loaded["finish_many"]
        self._rescue = loaded["rescue"]
        self._replay = loaded["replay"]
        self._disable = loaded["disable"]
        self._cancel_endpoint = loaded["cancel_endpoint"]
        self._replay_batch = loaded["replay_batch"]
        self._replay_start = loaded["replay_start"]
        self._audit = loaded["audit"]
        self._create_endpoint = loaded["create_endpoint"]
        self._ordering_skip = loaded["ordering_skip"]
        self._ordering_release = loaded["ordering_release"]
        self._listen_session = loaded["listen_session"]
        self._listen_presence = loaded["listen_presence"]

    def _common(self, now: int) -> list[Any]:
        return [
            now,
            self._retention_ms,
            iso_ms(now),
            self._disable_after_ms,
            self._disable_after_text,
        ]

    async def _pipelined(
        self,
        script: AsyncScript,
        calls: Sequence[tuple[Sequence[Any], Sequence[Any]]],
        *,
        replicated: bool = False,
    ) -> list[Any]:
        """Runs ``script`` once per call in one round trip.

        EVALSHA straight away: redis-py's own pipelined scripts cost a SCRIPT EXISTS round
        trip each time. After a Redis restart or a failover the script cache is empty, every
        call of the pipeline fails with NOSCRIPT (none ran), and the script is loaded and all
        sent again. With ``replicated`` the same round trip ends with a WAIT (Redis refuses
        it inside Lua): a caller that acknowledges the result to a client does so only once
        enough replicas hold it (``StoreUnavailable`` otherwise).
        """
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for call_keys, call_args in calls:
                        pipe.evalsha(script.sha, len(call_keys), *call_keys, *call_args)
                    waits = replicated and self._queue_wait(pipe)
                    replies = list(await pipe.execute())
                if waits:
                    self._check_wait(replies.pop())
                    replies.pop()  # the mark
                return replies
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.redis.script_load(script.script)
        raise AssertionError("unreachable")

    def _queue_wait(self, pipe: Pipeline) -> bool:
        """Queues a write and a WAIT for it on ``pipe``; False when no replica is waited for.
        The write makes the WAIT cover every earlier write, this connection's or another's
        (an idempotent repeat writes nothing else, and its original came from elsewhere)."""
        if self._wait_replicas <= 0:
            return False
        pipe.incr(keys.REPLICATION_MARK)
        pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)
        return True

    def _check_wait(self, acknowledged: Any) -> None:
        if int(acknowledged) < self._wait_replicas:
            raise StoreUnavailable(
                f"the write reached {int(acknowledged)} of the {self._wait_replicas} "
                f"replica(s) it must reach within {self._wait_timeout_ms} ms; retry",
            )

    async def wait_for_replicas(self) -> None:
        """Returns once every write made so far is on enough replicas (``StoreUnavailable``
        when they do not confirm in time): for writes acknowledged to a client that are not
        scripts (endpoint changes, event types, portal links)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            if not self._queue_wait(pipe):
                return
            replies = await pipe.execute()
        self._check_wait(replies[-1])

    async def ingest_many(
        self, events: Sequence[NewEvent], *, now: int, idempotency_ttl_ms: int
    ) -> list[tuple[str, str]]:
        """Stores ``events`` (INGEST_MANY, in groups, one round trip); returns (kind, payload)
        per event: ``created`` (delivery ids, comma-separated), ``duplicate`` (what the
        idempotency key holds: ``{fingerprint}|{event_id}``) or ``unknown_type``."""
        common = self._common(now)
        calls = []
        for start in range(0, len(events), INGEST_GROUP):
            args: list[Any] = [*common, idempotency_ttl_ms]
            for ev in events[start : start + INGEST_GROUP]:
                idem, okey = ev.idempotency_key, ev.ordering_key
                args.append(
                    f"{'1' if ev.check_type else '0'} {ev.event_id} {ev.type} {ev.business_id} "
                    f"{ev.fingerprint or '-'} {ev.only_endpoint or '-'} "
                    f"{'k' + idem if idem else '_'} {'o' + okey.encode().hex() if okey else '_'}"
                )
                args.append(ev.body)
            calls.append(((keys.EVENT_TYPES,), args))
        groups = await self._pipelined(self._ingest_many, calls, replicated=True)
        flat = [r for group in groups for r in group]
        return [(_text(flat[k]), _text(flat[k + 1])) for k in range(0, len(flat), 2)]

    async def take_and_claim(
        self,
        job_ids: Sequence[bytes],
        *,
        wanted: int,
        in_progress_ms: int,
        lease_ms: int,
        busy_defer_ms: int,
        default_cap: int,
        max_cap: int,
        offline_defer_ms: int,
    ) -> list[tuple[str, int | ClaimReply]]:
        """Starts up to ``wanted`` of ``job_ids`` (TAKE_AND_CLAIM): (job id, claim) for each
        attempt to make now, (job id, queue score) for each job arq runs itself. No endpoint
        holds more than ``max_cap`` attempts open, whatever its own cap says."""
        reply = await self._take_and_claim(
            args=[
                *self._common(now_ms()),
                in_progress_ms,
                wanted,
                lease_ms,
                busy_defer_ms,
                default_cap,
                max_cap,
                offline_defer_ms,
                *job_ids,
            ]
        )
        taken: list[tuple[str, int | ClaimReply]] = []
        for entry in reply:
            job_id = _text(entry[0])
            if len(entry) == 2:
                taken.append((job_id, int(float(entry[1]))))
            else:
                taken.append((job_id, ClaimReply(*entry[2:])))  # entry[1] is 'go'
        return taken

    async def create_endpoint(
        self, endpoint_id: str, business_id: str, fields: Mapping[str, Any], *, limit: int
    ) -> tuple[bool, int]:
        """Stores an endpoint with ``fields`` unless its business has ``limit`` endpoints or
        more (CREATE_ENDPOINT): (stored, how many endpoints the business has)."""
        flat = [part for item in fields.items() for part in item]
        [(stored, count)] = await self._pipelined(
            self._create_endpoint,
            [
                (
                    (keys.endpoint(endpoint_id), keys.business_endpoints(business_id)),
                    [*self._common(now_ms()), endpoint_id, business_id, limit, *flat],
                )
            ],
            replicated=True,
        )
        return bool(int(stored)), int(count)

    async def finish_many(self, many: Sequence[Finished]) -> list[str]:
        """Records attempts (FINISH_MANY, one call); returns ``ok``, ``stale`` or ``gone``
        per attempt, followed (space-separated) by the ids of the jobs its outcome made due
        now: an ordering key's next delivery, for the worker to take at once."""
        args: list[Any] = [*self._common(now_ms()), self._audit_retention_ms]
        for done in many:
            # A success can emit no operational event; anything else may (exhausted, disabled).
            emit = (
                "- -"
                if done.outcome == "succeeded"
                else (
                    f"{new_id('evt', suffix=self.id_suffix)} {new_id('evt', suffix=self.id_suffix)}"
                )
            )
            # No field can hold a space: ids, an outcome, numbers.
            args.append(
                f"{done.delivery_id} {done.job_id} {done.outcome} {done.next_at_ms} "
                f"{done.latency_bucket} {done.latency_s:.6f} {emit}"
            )
            args.append(codec.dumps(done.record))
        [states] = await self._pipelined(self._finish_many, [((), args)])
        return [_text(state) for state in states]

    async def rescue(self, delivery_id: str) -> str:
        """``rescued``, ``queued`` (its job exists) or ``closed`` (no longer pending)."""
        reply = await self._rescue(
            keys=[keys.delivery(delivery_id)], args=[*self._common(now_ms()), delivery_id]
        )
        return _text(reply)

    async def replay(self, delivery_id: str) -> str:
        """``ok``, ``gone``, ``pending``, ``endpoint_deleted`` or ``endpoint_disabled``."""
        [reply] = await self._pipelined(
            self._replay,
            [((keys.delivery(delivery_id),), [*self._common(now_ms()), delivery_id])],
            replicated=True,
        )
        return _text(reply)

    async def disable(self, endpoint_id: str, reason: str) -> str:
        """``ok``, ``already`` or ``gone``."""
        [reply] = await self._pipelined(
            self._disable,
            [
                (
                    (keys.endpoint(endpoint_id),),
                    [
                        *self._common(now_ms()),
                        endpoint_id,
                        reason,
                        new_id("evt", suffix=self.id_suffix),
                    ],
                )
            ],
            replicated=True,
        )
        return _text(reply)

    async def cancel_endpoint(self, endpoint_id: str, reason: str) -> int:
        """Cancels the endpoint's pending deliveries; returns how many."""
        [reply] = await self._pipelined(
            self._cancel_endpoint,
            [
                (
                    (keys.endpoint(endpoint_id), keys.endpoint_pending(endpoint_id)),
                    [*self._common(now_ms()), endpoint_id, reason],
                )
            ],
            replicated=True,
        )
        return int(reply)

    async def replay_batch(self, replay_id: str, *, lock: str, batch: int, size: int) -> str:
        """Replays batch ``batch`` of a bulk replay: ``more`` (the next batch's job is queued)
        or ``done``."""
        reply = await self._replay_batch(
            keys=[keys.replay(replay_id), keys.replay_todo(replay_id), lock],
            args=[
                *self._common(now_ms()),
                replay_id,
                size,
                queue.replay_job_id(replay_id, batch + 1),
            ],
        )
        return _text(reply)

    async def replay_start(
        self, replay_id: str, *, lock: str, lock_ttl_ms: int, now: int
    ) -> tuple[bool, str]:
        """(True, ``replay_id``) once the prepared replay runs, or (False, the running one)."""
        [(started, current)] = await self._pipelined(
            self._replay_start,
            [
                (
                    (lock, keys.replay(replay_id), keys.replay_todo(replay_id)),
                    [*self._common(now), replay_id, lock_ttl_ms, queue.replay_job_id(replay_id, 0)],
                )
            ],
            replicated=True,
        )
        return bool(int(started)), _text(current)

    async def ordering_skip(self, endpoint_id: str, ordering_key: str) -> tuple[str, str, str]:
        """Moves an ordering key past its head (ORDERING_SKIP): (``skipped``, the head, the
        delivery going now or ''), (``in_flight``, the head, '') or (``none``, '', '')."""
        [reply] = await self._pipelined(
            self._ordering_skip,
            [((), [*self._common(now_ms()), endpoint_id, ordering_key])],
            replicated=True,
        )
        parts = [_text(part) for part in reply] + ["", ""]
        return parts[0], parts[1], parts[2]

    async def ordering_release(self, endpoint_id: str) -> int:
        """Lets the deliveries waiting behind ordering keys go, on an endpoint no longer
        ordered (ORDERING_RELEASE); returns how many."""
        [reply] = await self._pipelined(
            self._ordering_release,
            [((), [*self._common(now_ms()), endpoint_id])],
            replicated=True,
        )
        return int(reply)

    async def listen_session(
        self,
        endpoint_id: str,
        business_id: str,
        name: str,
        fields: Mapping[str, Any],
        *,
        limit: int,
    ) -> tuple[str, str]:
        """The business's listen session ``name`` (LISTEN_SESSION): (``found``, its endpoint
        id), or stored now with ``fields`` under ``endpoint_id``: (``created``, that id), unless
        the business has ``limit`` endpoints or more: (``limit``, how many it has)."""
        flat = [part for item in fields.items() for part in item]
        [(kind, value)] = await self._pipelined(
            self._listen_session,
            [
                (
                    (
                        keys.endpoint(endpoint_id),
                        keys.business_endpoints(business_id),
                        keys.business_listen_sessions(business_id),
                    ),
                    [*self._common(now_ms()), endpoint_id, business_id, limit, name, *flat],
                )
            ],
            replicated=True,
        )
        return _text(kind), _text(value)

    async def listen_presence(self, endpoint_id: str, token: str, what: str, ttl_ms: int) -> str:
        """A connection to a listen session comes (``connect``), stays or goes (``leave``)
        (LISTEN_PRESENCE): ``ok``, ``replaced`` (another connection holds the session),
        ``gone`` (no such session) or ``disabled``."""
        reply = await self._listen_presence(
            args=[*self._common(now_ms()), endpoint_id, token, what, ttl_ms]
        )
        return _text(reply)

    async def audit(self, business_id: str | None, fields: Sequence[str]) -> str:
        """Appends an audit entry (AUDIT; ``fields`` alternate names and values, as
        ``core.audit.Entry.fields`` makes them) and returns its id, once enough replicas hold
        it (``StoreUnavailable`` otherwise), like the change it records."""
        [reply] = await self._pipelined(
            self._audit,
            [((), [*self._common(now_ms()), self._audit_retention_ms, business_id or "", *fields])],
            replicated=True,
        )
        return _text(reply)
