"""The budget of large request bodies in flight (``HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT``,
``gateway/web/budget.py``): a body over 256 KB reserves its bytes before they are read and gives
them back however its request ends; one the rest cannot cover is refused with 503 busy and
Retry-After before it is read; bodies of at most 256 KB are never counted or refused.

Against a real Redis and a real aiohttp server; raw sockets where a client must stop half-way
through a body."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from arq.connections import ArqRedis
from support import AUTH, TOKEN, run_cli

from gateway.core.errors import ConfigError
from gateway.core.settings import MIN_BODY_BYTES_IN_FLIGHT, Settings
from gateway.store import keys
from gateway.web import budget
from gateway.web.app import create_app
from gateway.web.budget import SMALL_BODY, BodyBudget
from gateway.web.context import BODY_BUDGET
from gateway.web.errors import Busy
from gateway.web.schemas import BATCH_BODY_LIMIT, EVENT_BODY_LIMIT

Client = TestClient[Any, Any]

KB = 1024
BUDGET = 1024 * KB  # small, so a test can fill it with bodies of a few hundred KB
EVENT = {"business_id": "bus_budget", "type": "payment.succeeded", "data": {"n": 1}}


def batch(size: int) -> bytes:
    """A valid batch of about ``size`` bytes (events of at most 100 KB each)."""
    events = []
    left = size
    while left > 0:
        pad = max(min(left, 100 * KB) - 120, 0)
        events.append({**EVENT, "data": {"pad": "x" * pad}})
        left -= pad + 120
    return json.dumps({"events": events}).encode()


@pytest.fixture
async def client(settings: Settings, redis: ArqRedis) -> AsyncIterator[Client]:
    """The gateway with a 1 MB budget and a 2 s request timeout."""
    tight = dataclasses.replace(settings, max_body_bytes_in_flight=BUDGET, request_timeout=2.0)
    client = TestClient(TestServer(create_app(tight, redis)))
    await client.start_server()
    yield client
    await client.close()


async def post(client: Client, body: bytes) -> Any:
    """POST /v1/events/batch with ``body`` (from a file-like object: aiohttp warns about
    bodies over 1 MB in one piece)."""
    headers = {**AUTH, "Content-Type": "application/json"}
    return await client.post("/v1/events/batch", data=io.BytesIO(body), headers=headers)


def in_use(client: Client) -> int:
    return client.app[BODY_BUDGET].in_use


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


class Raw:
    """One raw HTTP/1.1 connection to the test server, for clients that stop half-way."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, client: Client) -> Raw:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        return cls(reader, writer)

    async def start(self, path: str, *, length: int | None) -> None:
        """Sends a POST's headers: a Content-Length, or chunked when ``length`` is None."""
        framing = (
            f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
        )
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\n{framing}\r\n\r\n"
        )
        self.writer.write(head.encode())
        await self.writer.drain()

    async def send(self, data: bytes, *, chunked: bool = False) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        await self.writer.drain()

    async def answer(self) -> tuple[int, dict[str, str], Any]:
        """The status, headers and JSON body of the answer."""
        status_line = await self.reader.readline()
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers["content-length"]))
        return int(status_line.split()[1]), headers, json.loads(body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def holding(client: Client, length: int) -> AsyncIterator[Raw]:
    """A batch request that has reserved ``length`` bytes and sent 10 KB of them; hung up on
    when the block ends (unless the block finished it)."""
    raw = await Raw.open(client)
    try:
        await raw.start("/v1/events/batch", length=length)
        await raw.send(b" " * 10 * KB)  # whitespace: the JSON comes at the end
        await until(lambda: in_use(client) >= length)
        yield raw
    finally:
        await raw.close()


def assert_busy(status: int, headers: dict[str, str], body: Any) -> None:
    assert status == 503, body
    assert headers["retry-after"] == "1"
    assert body["error"]["code"] == "busy"


# ---- refused before it is read -----------------------------------------------------------


async def test_a_body_the_rest_of_the_budget_cannot_cover_is_refused_before_it_is_read(
    client: Client, redis: ArqRedis
) -> None:
    body = batch(600 * KB)
    async with holding(client, len(body) + 10 * KB) as first:
        held = in_use(client)
        second = await Raw.open(client)
        try:
            await second.start("/v1/events/batch", length=500 * KB)
            # not a byte of its body sent: the answer comes all the same
            assert_busy(*await asyncio.wait_for(second.answer(), 5))
        finally:
            await second.close()
        assert in_use(client) == held  # the refused one reserved nothing
        await first.send(body)  # the first one goes through
        status, _, answer = await asyncio.wait_for(first.answer(), 10)
        assert status == 202 and answer["rejected"] == 0, answer
    assert in_use(client) == 0
    assert len(await redis.keys(keys.event_body("*"))) == answer["accepted"]


async def test_a_body_larger_than_the_whole_budget_is_refused(client: Client) -> None:
    resp = await post(client, batch(BUDGET + 100 * KB))
    assert_busy(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.json())
    assert in_use(client) == 0


# ---- given back however the request ends ------------------------------------------------


async def test_the_bytes_are_given_back_after_success_and_after_refusals(client: Client) -> None:
    ok = await client.post("/v1/events/batch", data=batch(600 * KB), headers=AUTH)
    assert ok.status == 202, await ok.text()
    assert in_use(client) == 0
    not_json = b'{"events": [' + b" " * (400 * KB) + b"nope]}"
    bad = await client.post("/v1/events/batch", data=not_json, headers=AUTH)
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid_json"
    assert in_use(client) == 0
    wrong = json.dumps({"events": "x" * (400 * KB)}).encode()
    refused = await client.post("/v1/events/batch", data=wrong, headers=AUTH)
    assert refused.status == 422
    assert in_use(client) == 0
    items = json.dumps({"events": [{**EVENT, "type": "hookgate.x", "pad": "x" * 200 * KB}] * 2})
    rejected = await client.post("/v1/events/batch", data=items.encode(), headers=AUTH)
    assert rejected.status == 202 and (await rejected.json())["rejected"] == 2
    assert in_use(client) == 0


async def test_a_client_that_hangs_up_mid_body_gives_its_bytes_back(client: Client) -> None:
    async with holding(client, 700 * KB):
        assert in_use(client) == 700 * KB
    await until(lambda: in_use(client) == 0)


async def test_a_client_too_slow_to_send_its_body_gives_its_bytes_back(client: Client) -> None:
    async with holding(client, 700 * KB) as slow:
        status, _, body = await asyncio.wait_for(slow.answer(), 10)  # after the 2 s timeout
        assert status == 408, body
        assert in_use(client) == 0


async def test_the_middleware_gives_the_bytes_back_when_the_handler_is_cancelled() -> None:
    app = web.Application()
    app[BODY_BUDGET] = BodyBudget(BUDGET)
    request = make_mocked_request("POST", "/v1/events/batch", app=app)

    async def handler(request: web.Request) -> web.StreamResponse:
        app[BODY_BUDGET].reserve(request, 300 * KB)
        app[BODY_BUDGET].reserve(request, 200 * KB)
        assert app[BODY_BUDGET].in_use == 500 * KB
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await budget.release_bodies(request, handler)
    assert app[BODY_BUDGET].in_use == 0
    budget.release(request)  # a second release gives back nothing more
    assert app[BODY_BUDGET].in_use == 0


def test_a_refused_reservation_counts_nothing() -> None:
    bodies = BodyBudget(BUDGET)
    request = make_mocked_request("POST", "/")
    bodies.reserve(request, 600 * KB)
    with pytest.raises(Busy):
        bodies.reserve(request, 500 * KB)
    assert bodies.in_use == 600 * KB
    bodies.reserve(request, 424 * KB)  # exactly full
    assert bodies.in_use == BUDGET
    budget.release(request)
    assert bodies.in_use == 0


# ---- chunked bodies -----------------------------------------------------------------------


async def test_a_chunked_body_is_counted_as_it_arrives(client: Client, redis: ArqRedis) -> None:
    body = batch(700 * KB)
    raw = await Raw.open(client)
    try:
        await raw.start("/v1/events/batch", length=None)
        await raw.send(body[: 200 * KB], chunked=True)
        await asyncio.sleep(0.1)
        assert in_use(client) == 0  # the first 256 KB are free
        await raw.send(body[200 * KB : 400 * KB], chunked=True)
        await until(lambda: in_use(client) == 400 * KB)  # then all of it so far
        await raw.send(body[400 * KB :], chunked=True)
        await raw.send(b"", chunked=True)
        status, _, answer = await asyncio.wait_for(raw.answer(), 10)
        assert status == 202 and answer["rejected"] == 0, answer
    finally:
        await raw.close()
    assert in_use(client) == 0
    assert len(await redis.keys(keys.event_body("*"))) == answer["accepted"]


async def test_a_chunked_body_that_outgrows_the_budget_is_refused(
    client: Client, redis: ArqRedis
) -> None:
    async with holding(client, 700 * KB):
        raw = await Raw.open(client)
        try:
            await raw.start("/v1/events/batch", length=None)
            await raw.send(b" " * 200 * KB, chunked=True)  # under 256 KB: passes
            await raw.send(b" " * 200 * KB, chunked=True)  # 400 KB: 1.1 MB in all
            assert_busy(*await asyncio.wait_for(raw.answer(), 5))
        finally:
            await raw.close()
        assert in_use(client) == 700 * KB
    await until(lambda: in_use(client) == 0)
    assert await redis.keys(keys.event_body("*")) == []


# ---- small bodies are never starved ------------------------------------------------------


async def test_small_bodies_pass_while_large_ones_fill_the_budget(client: Client) -> None:
    async with holding(client, BUDGET):
        event = await client.post("/v1/events", json=EVENT, headers=AUTH)
        assert event.status == 202, await event.text()
        small_batch = batch(EVENT_BODY_LIMIT - 10 * KB)
        assert len(small_batch) <= SMALL_BODY
        batched = await client.post("/v1/events/batch", data=small_batch, headers=AUTH)
        assert batched.status == 202, await batched.text()
        endpoint = {"business_id": "bus_budget", "url": "http://127.0.0.1:9/hook"}
        created = await client.post("/v1/endpoints", json=endpoint, headers=AUTH)
        assert created.status == 201, await created.text()
        large = await client.post("/v1/events/batch", data=batch(300 * KB), headers=AUTH)
        assert large.status == 503
        assert in_use(client) == BUDGET
    await until(lambda: in_use(client) == 0)


# ---- large batches ----------------------------------------------------------------------


async def test_a_batch_of_several_megabytes_is_stored_whole_and_as_sent(client: Client) -> None:
    """Over 2 MB of bodies: stored in several round trips (``INGEST_ROUND_TRIP_BYTES``) and
    checked in several slices of the event loop; every event as it was sent, in order."""
    client.app[BODY_BUDGET].limit = 8 * BUDGET
    # 120 KB of JSON each ("é" escaped), 40 KB stored (UTF-8); a big integer in each
    events = [{**EVENT, "data": {"n": n, "big": 2**70, "text": "é" * 20_000}} for n in range(60)]
    resp = await post(client, json.dumps({"events": events}).encode())
    assert resp.status == 202, await resp.text()
    results = (await resp.json())["results"]
    assert [r["index"] for r in results] == list(range(60))
    assert {r["status"] for r in results} == {202}
    for n in (0, 29, 59):
        stored = await client.get(f"/v1/events/{results[n]['id']}", headers=AUTH)
        assert (await stored.json())["payload"]["data"] == events[n]["data"]
    assert in_use(client) == 0


# ---- the setting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MB", 64 * 2**20), ("48mb", 48 * 2**20), ("16 MB", 16 * 2**20), ("1GB", 2**30),
     (str(20_000_000), 20_000_000), ("32768KB", 32 * 2**20)],
)  # fmt: skip
def test_the_budget_is_read_from_the_environment(text: str, size: int) -> None:
    settings = Settings.from_env({"HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT": text})
    assert settings.max_body_bytes_in_flight == size


@pytest.mark.parametrize("text", ["15MB", "0", "-1", "lots", "1.5GB", "64 TB", "64MB of it"])
def test_a_bad_budget_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT"):
        Settings.from_env({"HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT": text})


def test_the_default_budget_holds_four_of_the_largest_batches() -> None:
    assert Settings().max_body_bytes_in_flight == 4 * BATCH_BODY_LIMIT


def test_the_floor_is_one_batch_of_the_largest_size() -> None:
    """The settings (core) cannot read the API's limit (web): the two are kept equal here."""
    assert MIN_BODY_BYTES_IN_FLIGHT == BATCH_BODY_LIMIT
    with pytest.raises(ConfigError):
        Settings.from_env({"HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT": str(BATCH_BODY_LIMIT - 1)})


async def test_serve_exits_2_on_a_bad_budget(env: dict[str, str]) -> None:
    bad = {**env, "HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT": "8MB"}
    result = await asyncio.to_thread(run_cli, "serve", env=bad, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT" in result.stderr
    assert "Traceback" not in result.stderr
