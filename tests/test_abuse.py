"""Abuse of a real ``hookgate serve`` process: oversized headers, slowloris-style slow
requests and a flood of idle connections. The gateway answers each bad request with a 4xx and
keeps answering ``/healthz`` within 1 s throughout. Everything here is bounded in count and
time and closes its own sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from support import TOKEN, hookgate_exe

from gateway.cli.redis_server import free_port

pytestmark = pytest.mark.e2e

HEALTH_LIMIT_S = 1.0  # the requirement: /healthz answers within 1 s, whatever else
IDLE_SOCKETS = 300
SLOW_HEADER_WRITERS = 10
SLOW_BODY_WRITERS = 10
ABUSE_SECONDS = 5.0


@contextlib.contextmanager
def run_gateway(redis_url: str, tmp_path: Path, **extra: str) -> Iterator[tuple[str, int]]:
    """``hookgate serve`` on a free loopback port; yields (host, port)."""
    port = free_port()
    env = {
        **os.environ,
        "HOOKGATE_REDIS_URL": redis_url,
        "HOOKGATE_ADMIN_TOKEN": TOKEN,
        "HOOKGATE_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "HOOKGATE_PORT": str(port),
        "HOOKGATE_LOG_FORMAT": "json",
        **extra,
    }
    with (tmp_path / "gateway.log").open("wb") as log:
        process = subprocess.Popen(
            [hookgate_exe(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert process.poll() is None, (tmp_path / "gateway.log").read_text()
            try:
                status, _ = asyncio.run(raw_request("127.0.0.1", port, health_request()))
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "hookgate serve did not come up"
            time.sleep(0.05)
        yield "127.0.0.1", port
        assert process.poll() is None, "the gateway died: " + (tmp_path / "gateway.log").read_text()
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def gateway(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    with run_gateway(redis_url, tmp_path) as address:
        yield address


@pytest.fixture
def strict_gateway(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A gateway that gives a client 1 s to send a request."""
    with run_gateway(redis_url, tmp_path, HOOKGATE_REQUEST_TIMEOUT="1s") as address:
        yield address


def health_request() -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def raw_request(host: str, port: int, data: bytes, timeout: float = 5) -> tuple[int, bytes]:
    """Sends ``data`` on a fresh connection; returns the status code and the whole answer.

    The answer is read while the request is still being written: a server that refuses a
    huge request answers and closes early, and the reset that follows (the rest of the
    request is still unread on its side) can discard an answer nobody read in time. A reset
    before any answer arrived comes back as status 0.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        reading = asyncio.create_task(reader.read())
        try:
            for start in range(0, len(data), 16384):
                writer.write(data[start : start + 16384])
                try:
                    await writer.drain()
                except ConnectionError:
                    break
            try:
                answer = await reading
            except ConnectionError:  # reset, or a broken pipe seen by our last write
                answer = b""
        finally:
            reading.cancel()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    if not answer:
        return 0, answer
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1]), answer


async def health_latency(host: str, port: int) -> float:
    started = time.monotonic()
    status, _ = await raw_request(host, port, health_request(), timeout=HEALTH_LIMIT_S * 5)
    assert status == 200
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("name", "request_bytes"),
    [
        (
            "a 100 KB header value",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        ),
        (
            "a 100 KB bearer token on ingest",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
            b"Authorization: Bearer " + b"t" * 100_000 + b"\r\n\r\n{}",
        ),
        (
            "a 100 KB header name",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X" * 100_000 + b": 1\r\n\r\n",
        ),
        ("a 100 KB request target", b"GET /" + b"p" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "20 000 small headers (260 KB)",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%05d: v\r\n" % i for i in range(20_000))
            + b"\r\n",
        ),
    ],
)
async def test_oversized_headers_get_a_4xx_and_the_gateway_stays_up(
    gateway: tuple[str, int], name: str, request_bytes: bytes
) -> None:
    host, port = gateway
    status, answer = await raw_request(host, port, request_bytes)
    print(f"\n[abuse] {name}: HTTP {status} ({len(answer)} bytes back)")
    # refused: a 4xx, or a reset before the 4xx could be read (the server closed on a request
    # it will not read; the health check below shows it did not crash)
    assert 400 <= status < 500 or (status == 0 and len(request_bytes) > 64 * 1024), answer[:300]
    if status:
        # the JSON error shape, and nothing of the request quoted back (a header could be a
        # credential)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower()
        assert json.loads(body)["error"]["code"] == "bad_http_request"
        assert not any(run in answer for run in (b"a" * 8, b"t" * 8, b"X" * 8, b"p" * 8))
        assert b"X-H0" not in answer
    assert await health_latency(host, port) < HEALTH_LIMIT_S


async def _idle(host: str, port: int, opened: list[asyncio.StreamWriter]) -> None:
    _, writer = await asyncio.open_connection(host, port)
    opened.append(writer)


async def _slow_headers(host: str, port: int, stop: asyncio.Event, sent: list[int]) -> None:
    """Classic slowloris: a request whose header block never ends, a few bytes at a time."""
    _, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        n = 0
        while not stop.is_set():
            writer.write(b"X-%d: %d\r\n" % (n, n))
            await writer.drain()
            sent[0] += 1
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    except ConnectionError:
        sent[1] += 1  # the server hung up on us: fine
    finally:
        writer.close()


async def _slow_body(host: str, port: int, stop: asyncio.Event, sent: list[int]) -> None:
    """An authenticated ingest that promises 100 KB and trickles it 16 bytes at a time."""
    _, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n"
        )
        while not stop.is_set():
            writer.write(b" " * 16)
            await writer.drain()
            sent[0] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    except ConnectionError:
        sent[1] += 1
    finally:
        writer.close()


@pytest.fixture
async def opened() -> AsyncIterator[list[asyncio.StreamWriter]]:
    writers: list[asyncio.StreamWriter] = []
    yield writers
    for writer in writers:
        writer.close()


async def test_healthz_answers_within_1s_under_slowloris_and_a_connection_flood(
    gateway: tuple[str, int], opened: list[asyncio.StreamWriter]
) -> None:
    host, port = gateway
    baseline = [await health_latency(host, port) for _ in range(5)]

    await asyncio.gather(*(_idle(host, port, opened) for _ in range(IDLE_SOCKETS)))
    stop = asyncio.Event()
    sent = [0, 0]  # chunks written, writers the server hung up on
    writers = [
        asyncio.create_task(_slow_headers(host, port, stop, sent))
        for _ in range(SLOW_HEADER_WRITERS)
    ] + [asyncio.create_task(_slow_body(host, port, stop, sent)) for _ in range(SLOW_BODY_WRITERS)]

    latencies: list[float] = []
    deadline = time.monotonic() + ABUSE_SECONDS
    try:
        while time.monotonic() < deadline:
            latencies.append(await health_latency(host, port))
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*writers)

    # A real client still gets its work done beside the abuse.
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{host}:{port}/readyz") as resp,
    ):
        assert resp.status == 200
    print(
        f"\n[abuse] {IDLE_SOCKETS} idle sockets + {SLOW_HEADER_WRITERS} slow-header and "
        f"{SLOW_BODY_WRITERS} slow-body writers for {ABUSE_SECONDS:.0f} s: "
        f"{len(latencies)} /healthz probes, median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms (idle baseline max {max(baseline) * 1000:.1f} ms); "
        f"{sent[0]} slow chunks sent, {sent[1]} slow writers cut off by the server"
    )
    assert len(latencies) >= 20
    assert sent[0] >= (SLOW_HEADER_WRITERS + SLOW_BODY_WRITERS) * 10  # the abuse really ran
    assert max(latencies) < HEALTH_LIMIT_S


async def _cut_off_after(host: str, port: int, first: bytes, trickle: bytes) -> tuple[float, bytes]:
    """Sends ``first``, then ``trickle`` every 0.1 s, until the server closes the connection
    (at most 10 s). Returns how long that took and whatever the server answered."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    reading = asyncio.create_task(reader.read())
    try:
        writer.write(first)
        while not reading.done() and time.monotonic() - started < 10:
            with contextlib.suppress(ConnectionError):
                writer.write(trickle)
                await writer.drain()
            await asyncio.wait([reading], timeout=0.1)
        assert reading.done(), "the slow client was never cut off"
        try:
            answer = reading.result()
        except ConnectionResetError:
            answer = b""
        return time.monotonic() - started, answer
    finally:
        reading.cancel()
        writer.close()


async def test_a_slow_body_is_cut_off_with_408_after_the_request_timeout(
    strict_gateway: tuple[str, int],
) -> None:
    host, port = strict_gateway
    took, answer = await _cut_off_after(
        host,
        port,
        b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\nContent-Length: 100000\r\n\r\n",
        b" " * 16,
    )
    print(f"\n[abuse] slow body cut off after {took:.2f} s (HOOKGATE_REQUEST_TIMEOUT=1s)")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert 0.9 <= took < 5
    assert await health_latency(host, port) < HEALTH_LIMIT_S


async def test_slow_headers_and_idle_connections_are_closed_after_the_request_timeout(
    strict_gateway: tuple[str, int],
) -> None:
    host, port = strict_gateway
    took, answer = await _cut_off_after(
        host, port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n"
    )
    print(f"\n[abuse] slow headers cut off after {took:.2f} s (HOOKGATE_REQUEST_TIMEOUT=1s)")
    assert answer == b"" and 0.9 <= took < 5
    # a connection that never sends anything is closed the same way
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
    assert 0.9 <= time.monotonic() - started < 5
