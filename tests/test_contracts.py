"""The contracts the store shares with Lua and with arq, each held to its one owner: key names
(``keys.py``), arq's layout, job ids, job encoding and job functions (``queue.py``), script
sources and arguments (``scripts.py``). Against a real redis-server."""

from __future__ import annotations

import importlib.resources
import inspect
import re
import time
from collections.abc import Iterator
from typing import Any

import arq.constants
import arq.version
import pytest
import redis as redis_sync
from arq.connections import ArqRedis
from arq.jobs import deserialize_job, serialize_job
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.core.catalog import load_catalog
from gateway.core.errors import ConfigError
from gateway.core.model import Claim, EndpointFields, EventIn, Finished, PreparedEvent
from gateway.core.settings import Settings
from gateway.store import keys, queue, scripts
from gateway.store.recovery import Recovery
from gateway.store.store import Store
from worker.main import build_worker

LUA_DIR = importlib.resources.files("gateway.store") / "lua"
DELIVERY_IDS = st.from_regex(r"dlv_[0-9A-Z]{26}[0-9a-f]{1,8}", fullmatch=True)
# What Lua may get for a chain, attempt or re-deferral count: a hash field or a script's sum.
COUNTS = st.integers(min_value=0, max_value=10**9)
FUZZ = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def lua(redis_url: str) -> Iterator[Any]:
    """Runs Lua composed as the scripts are (prelude, includes) on the tests' redis-server."""
    client = redis_sync.Redis.from_url(redis_url)

    def run(source: str, *args: Any) -> Any:
        return client.eval(scripts.compose(source), 0, *args)

    yield run
    client.close()


async def _ingested(
    redis: ArqRedis, settings: Settings, store: Store | None = None
) -> tuple[Store, str]:
    """One event to a new endpoint (or, given a store, to the endpoints it has)."""
    endpoint_id = ""
    if store is None:
        store = Store(redis, settings, load_catalog())
        view, _ = await store.create_endpoint(
            EndpointFields(business_id="bus_1", url="http://127.0.0.1:9/hook")
        )
        endpoint_id = view["id"]
    event = EventIn("bus_1", "payment.succeeded", "2024-01-01T00:00:00Z", {"n": 1})
    await store.ingest([PreparedEvent(event, None, "")])
    return store, endpoint_id


# ---- (a) a job Lua writes is one arq reads, with queue.py's deserializer ---------------------


async def test_an_attempt_job_written_by_lua_decodes_with_arq(
    redis: ArqRedis, settings: Settings
) -> None:
    before = int(time.time() * 1000)
    await _ingested(redis, settings)
    [job_id] = [j.decode() for j in await redis.zrange(queue.QUEUE, 0, -1)]
    delivery_id = queue.delivery_of(job_id)
    assert job_id == queue.attempt_job_id(delivery_id, 1)
    raw = await redis.get(queue.JOB_KEY_PREFIX + job_id)
    job = deserialize_job(raw, deserializer=queue.deserialize_job)
    assert job.function == queue.ATTEMPT_FUNCTION
    assert job.args == [delivery_id]
    assert job.kwargs == {}
    assert job.job_try is None
    assert before <= job.enqueue_time.timestamp() * 1000 <= time.time() * 1000
    # byte for byte what arq writes for the same job through queue.py's serializer
    et = int(job.enqueue_time.timestamp() * 1000)
    python = serialize_job(
        queue.ATTEMPT_FUNCTION, (delivery_id,), {}, None, et, serializer=queue.serialize_job
    )
    assert raw == python
    # the delivery keeps the suffix of its job id
    stored = (await redis.hget(keys.delivery(delivery_id), "job")).decode()
    assert queue.current_job_id(delivery_id, stored) == job_id


async def test_replay_batch_jobs_written_by_lua_decode_with_arq(
    redis: ArqRedis, settings: Settings
) -> None:
    store, endpoint_id = await _ingested(redis, settings)
    await _ingested(redis, settings, store=store)
    for member in await redis.zrange(keys.INDEX_ALL, 0, -1):
        await redis.hset(keys.delivery(member.decode().split(":")[1]), "status", "succeeded")
    await redis.delete(queue.QUEUE)
    started = await Recovery(store).start_replay(
        endpoint_id,
        since_ms=0,
        until_ms=int(time.time() * 1000) + 1000,
        include_succeeded=True,
        dry_run=False,
    )
    replay_id = started["replay_id"]
    first = queue.replay_job_id(replay_id, 0)
    assert [j.decode() for j in await redis.zrange(queue.QUEUE, 0, -1)] == [first]
    # a batch of one leaves one to do: the batch script queues the next job
    lock = (await redis.hget(keys.replay(replay_id), "lock")).decode()
    assert await store.scripts.replay_batch(replay_id, lock=lock, batch=0, size=1) == "more"
    second = queue.replay_job_id(replay_id, 1)
    assert queue.replay_batch_of(second) == 1
    for job_id in (first, second):
        job = deserialize_job(
            await redis.get(queue.JOB_KEY_PREFIX + job_id), deserializer=queue.deserialize_job
        )
        assert job.function == queue.REPLAY_BATCH_FUNCTION
        assert job.args == [replay_id]


def test_queue_serializer_is_json_never_pickle() -> None:
    raw = queue.serialize_job({"t": None, "f": "f", "a": ["x"], "k": {}, "et": 1})
    assert raw == b'{"t":null,"f":"f","a":["x"],"k":{},"et":1}'
    with pytest.raises(ValueError):
        queue.deserialize_job(b"\x80\x04K\x01.")  # a pickle


# ---- (b) arq's layout is arq's own ----------------------------------------------------------


async def test_arq_prefixes_are_arqs(redis: ArqRedis, settings: Settings) -> None:
    assert arq.constants.default_queue_name == queue.QUEUE
    assert arq.constants.job_key_prefix == queue.JOB_KEY_PREFIX
    assert arq.constants.in_progress_key_prefix == queue.IN_PROGRESS_KEY_PREFIX
    assert arq.constants.retry_key_prefix == queue.RETRY_KEY_PREFIX
    assert arq.constants.expires_extra_ms == queue.JOB_EXPIRY_MS
    # keys.py holds hookgate's keys only: no copy of arq's
    assert not [v for v in vars(keys).values() if isinstance(v, str) and v.startswith("arq:")]
    worker = build_worker(settings, redis)
    assert worker.queue_name == queue.QUEUE
    assert worker.job_serializer is queue.serialize_job
    assert worker.job_deserializer is queue.deserialize_job
    # the sweeper's wait is built on what arq computes
    assert worker.in_progress_timeout_s == queue.in_progress_timeout(settings.job_timeout)


def test_an_arq_hookgate_was_not_written_for_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    queue.check_arq()
    monkeypatch.setattr(arq.version, "VERSION", "0.29.0")
    with pytest.raises(ConfigError, match=r"arq 0\.28\.x .* arq 0\.29\.0 is installed"):
        queue.check_arq()


# ---- (c) job ids: Python and Lua build and read the same ------------------------------------


@FUZZ
@given(DELIVERY_IDS, COUNTS, COUNTS, COUNTS)
def test_lua_and_python_build_the_same_attempt_job_ids(
    lua: Any, delivery_id: str, chain: int, attempt: int, redefer: int
) -> None:
    python = queue.attempt_job_id(delivery_id, attempt, chain, redefer)
    # as text (fields of the delivery hash) and as numbers (what a script adds up)
    as_text, as_numbers, suffix, full, inside = lua(
        "--@include lib/jobs.lua\n"
        "local did, c, a, r = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
        "local job = job_name(did, c, a, r)\n"
        "return {job, job_name(did, tonumber(c), tonumber(a), tonumber(r)),\n"
        "        job_suffix(did, job), full_job(did, job_suffix(did, job)), delivery_of(job)}",
        delivery_id,
        chain,
        attempt,
        redefer,
    )
    assert as_text.decode() == as_numbers.decode() == full.decode() == python
    assert queue.current_job_id(delivery_id, suffix.decode()) == python
    assert inside.decode() == queue.delivery_of(python) == delivery_id
    assert queue.parse_attempt_job_id(python) == queue.AttemptJob(
        delivery_id, attempt, chain, redefer
    )


@FUZZ
@given(st.one_of(st.text(max_size=40), st.from_regex(r"(attempt|replay):[^:]*:.*", fullmatch=True)))
def test_lua_and_python_tell_attempt_jobs_apart_alike(lua: Any, job_id: str) -> None:
    [inside] = lua("--@include lib/jobs.lua\nreturn {delivery_of(ARGV[1])}", job_id) or [None]
    try:
        python: str | None = queue.delivery_of(job_id)
    except ValueError:
        python = None
    assert (inside.decode() if inside is not None else None) == python


@given(st.from_regex(r"rpl_[0-9A-Z]{26}", fullmatch=True), st.integers(0, 10**6))
def test_replay_job_ids_round_trip(replay_id: str, batch: int) -> None:
    job_id = queue.replay_job_id(replay_id, batch)
    assert queue.replay_batch_of(job_id) == batch
    with pytest.raises(ValueError):
        queue.delivery_of(job_id)
    with pytest.raises(ValueError):
        queue.replay_batch_of(queue.attempt_job_id("dlv_1", batch))


# ---- (d) one spelling of every key ----------------------------------------------------------

KEY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)


@FUZZ
@given(st.lists(KEY_TEXT, min_size=2, max_size=2))
def test_every_key_function_has_a_lua_twin_building_the_same_key(lua: Any, args: list[str]) -> None:
    functions = scripts.key_functions()
    calls, expected = [], []
    for lua_name, build in functions.items():
        count = len(inspect.signature(build).parameters)
        calls.append(f"{lua_name}({', '.join(f'ARGV[{i + 1}]' for i in range(count))})")
        expected.append(build(*args[:count]).encode())
    got = lua("return {" + ", ".join(calls) + "}", *(a.encode() for a in args))
    assert got == expected


def test_every_key_function_and_constant_is_in_the_prelude(lua: Any) -> None:
    python_functions = {
        name
        for name, value in vars(keys).items()
        if callable(value) and getattr(value, "__module__", None) == keys.__name__
    }
    assert {f"key_{n}" for n in python_functions} == set(scripts.key_functions())
    constants = scripts.key_constants()
    assert constants["KEY_DUE"] == keys.DUE and constants["KEY_METRICS"] == keys.METRICS
    got = lua("return {" + ", ".join(constants) + "}")
    assert got == [v.encode() for v in constants.values()]


def _lua_files() -> list[tuple[str, str]]:
    found = [(f"{n}.lua", (LUA_DIR / f"{n}.lua").read_text()) for n in scripts.SCRIPTS]
    found += [
        (f"lib/{f.name}", f.read_text())
        for f in (LUA_DIR / "lib").iterdir()
        if f.name.endswith(".lua")
    ]
    return found


def test_no_lua_file_spells_a_key_or_a_job_id_itself() -> None:
    spelled = [keys.PREFIX, "arq:", queue.ATTEMPT_JOB_PREFIX, queue.REPLAY_JOB_PREFIX]
    for name, text in _lua_files():
        code = _code_only(text)
        for literal in re.findall(r"'[^']*'|\"[^\"]*\"", code):
            assert not any(s in literal for s in spelled), (name, literal)


# ---- (e) every script composes and loads ----------------------------------------------------

# What Lua and Redis give every script, and Lua's keywords.
_LUA_NAMES = (
    "tonumber tostring type pairs ipairs next select unpack error assert pcall rawget rawset "
    "setmetatable getmetatable redis string table math cjson cmsgpack bit struct KEYS ARGV "
    "and or not if then else elseif end for in do while repeat until return local function "
    "nil true false break"
)
LUA_BUILTINS = frozenset(_LUA_NAMES.split())


def _code_only(text: str) -> str:
    """Lua without its comments (string literals are kept)."""
    text = re.sub(r"--\[\[.*?\]\]", "", text, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", "", text)


async def test_every_script_composes_and_loads(redis: ArqRedis) -> None:
    for name in scripts.SCRIPTS:
        source = scripts.script_source(name)
        assert "--@include" not in source.replace("-- lib/", "")
        sha = await redis.script_load(source)
        assert (await redis.script_exists(sha)) == [True]


def _undefined(source: str) -> set[str]:
    """Names a composed script uses but neither defines nor gets from Lua or Redis."""
    code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", _code_only(source))
    code = re.sub(r"(?<!\.)\.(?!\.)\s*[A-Za-z_]\w*", "", code)  # fields: string.sub, t.x
    defined: set[str] = set()
    for names in re.findall(r"\blocal\s+(?:function\s+)?([\w\s,]+?)\s*(?:=|\(|$)", code, re.M):
        defined |= set(re.findall(r"\w+", names))
    code = re.sub(r"(?<=[{,])\s*[A-Za-z_]\w*\s*=(?!=)", "", code)  # table constructor keys
    for names in re.findall(r"\bfunction\s*\w*\s*\(([^)]*)\)", code):
        defined |= set(re.findall(r"\w+", names))
    for names in re.findall(r"\bfor\s+([\w\s,]+?)\s+in\b|\bfor\s+(\w+)\s*=", code):
        defined |= set(re.findall(r"\w+", " ".join(names)))
    used = set(re.findall(r"\b([A-Za-z_]\w*)\b", code))
    return used - defined - LUA_BUILTINS


def test_every_name_a_script_uses_is_defined_in_it() -> None:
    """Redis refuses an undefined global only when the line runs: a helper a script forgot to
    include would fail on the one path that calls it. This finds it before any path runs."""
    for name in scripts.SCRIPTS:
        assert _undefined(scripts.script_source(name)) == set(), name
    forgot = scripts.compose("--@include lib/jobs.lua\nreturn schedule('k', 'd', 'j', 1, 1)")
    assert _undefined(forgot) == {"schedule"}


def test_the_loader_refuses_a_broken_source(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(scripts.ScriptSourceError, match="no Lua file"):
        scripts.compose("--@include lib/missing.lua\nreturn 1")
    with pytest.raises(scripts.ScriptSourceError, match="malformed"):
        scripts.compose("--@include ../secrets.lua\nreturn 1")
    with pytest.raises(scripts.ScriptSourceError, match="with_counts"):
        scripts.compose("--@include lib/counts.lua\ncount('x', 1)\nreturn 1")
    fake = {"lib/a.lua": "--@include lib/b.lua\n", "lib/b.lua": "--@include lib/a.lua\n"}
    monkeypatch.setattr(scripts, "_read", fake.__getitem__)
    with pytest.raises(scripts.ScriptSourceError, match="cycle"):
        scripts.compose("--@include lib/a.lua\n")


def test_includes_come_once_and_before_what_needs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {
        "lib/a.lua": "--@include lib/c.lua\nA\n",
        "lib/b.lua": "--@include lib/c.lua\n--@include lib/a.lua\nB\n",
        "lib/c.lua": "C\n",
    }
    monkeypatch.setattr(scripts, "_read", fake.__getitem__)
    body = scripts.compose("--@include lib/b.lua\n--@include lib/a.lua\nMAIN")
    body = body.removeprefix(scripts.prelude())
    assert [line for line in body.splitlines() if line.isupper()] == ["C", "A", "B", "MAIN"]


# ---- (f) the functions jobs name are ones the worker runs -----------------------------------


async def test_the_worker_handles_every_job_the_scripts_write(
    redis: ArqRedis, settings: Settings
) -> None:
    worker = build_worker(settings, redis)
    # arq runs replay batches: the worker registers the function Lua names in them
    assert queue.REPLAY_BATCH_FUNCTION in worker.functions
    # attempt jobs never reach arq's runner: the take step claims them by their id
    assert queue.ATTEMPT_FUNCTION not in worker.functions
    store, endpoint_id = await _ingested(redis, settings)
    [attempt_job] = [j for j in await redis.zrange(queue.QUEUE, 0, -1)]
    recovery = Recovery(store)
    await redis.hset(keys.delivery(queue.delivery_of(attempt_job.decode())), "status", "failed")
    await redis.zrem(queue.QUEUE, attempt_job)
    replay = await recovery.start_replay(
        endpoint_id,
        since_ms=0,
        until_ms=int(time.time() * 1000) + 1000,
        include_succeeded=False,
        dry_run=False,
    )
    replay_job = queue.replay_job_id(replay["replay_id"], 0).encode()
    taken = dict(
        await store.take_and_claim(
            [replay_job], wanted=10, in_progress_ms=60_000, busy_defer_ms=1000
        )
    )
    assert isinstance(taken[replay_job.decode()], int)  # handed to arq, which runs it
    assert (await recovery.run_replay_batch(replay["replay_id"], 0)) == "done"
    prefix = queue.ATTEMPT_JOB_PREFIX.encode()
    [replayed] = [j for j in await redis.zrange(queue.QUEUE, 0, -1) if j.startswith(prefix)]
    raw = await redis.get(queue.JOB_KEY_PREFIX + replayed.decode())
    assert deserialize_job(raw, deserializer=queue.deserialize_job).function == (
        queue.ATTEMPT_FUNCTION
    )
    taken = dict(
        await store.take_and_claim([replayed], wanted=10, in_progress_ms=60_000, busy_defer_ms=1000)
    )
    claim = taken[replayed.decode()]
    assert isinstance(claim, Claim) and claim.chain == 1


async def test_scripts_reload_themselves_into_an_empty_script_cache(
    redis: ArqRedis, settings: Settings
) -> None:
    """After a Redis restart the script cache is empty: every call loads its script again,
    the pipelined ones (ingest, finish) included."""
    store, _ = await _ingested(redis, settings)
    await redis.script_flush()
    await _ingested(redis, settings, store=store)
    await redis.script_flush()
    job_ids = await redis.zrange(queue.QUEUE, 0, -1)
    taken = await store.take_and_claim(job_ids, wanted=10, in_progress_ms=60_000, busy_defer_ms=1)
    assert len(taken) == 2
    await redis.script_flush()
    finished = [
        Finished(queue.delivery_of(job_id), job_id, {}, "succeeded", 0, "0.1", 0.01)
        for job_id, _ in taken
    ]
    assert await store.finish_many(finished) == ["ok", "ok"]
