"""No payload, key or secret in a log line, and no line without bound: real ``hookgate serve``
and ``hookgate worker`` processes over a redis-server of the test's own that refuses writes
(OOM, too few replicas), and a client that hangs up mid-body. The unit tests pin the pieces:
the description of an exception, and the processors every line (structlog's or a library's)
passes."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import structlog
from aiohttp import web
from redis.exceptions import OutOfMemoryError, ResponseError
from support import AUTH, TOKEN, hookgate_exe, wait_healthy
from test_crash import hookgate_env

from gateway.cli.redis_server import free_port, start_redis
from gateway.core import logs
from gateway.core.logs import MAX_LINE, MAX_VALUE, configure, describe_error
from gateway.store import keys

CARD = "4111111111111111"  # a card number in an event's data
IDEM = "idem-marker-7f3a9c"  # an Idempotency-Key
ECHO = "merchant-echo-5e1d2b"  # what a merchant's endpoint answers


# ---- the pieces -----------------------------------------------------------------------------


def pipeline_error(cls: type[Exception], reply: str, *command: str) -> Exception:
    """An error as redis-py's asyncio pipeline raises it: the whole command quoted first."""
    exc = cls(reply)
    exc.args = (f"Command # 1 ({' '.join(command)}) of pipeline caused error: {exc.args}",)
    return exc


@pytest.mark.parametrize(
    ("exc", "described"),
    [
        (
            pipeline_error(
                ResponseError, "NOREPLICAS Not enough good replicas to write.", "EVALSHA", "x", CARD
            ),
            "NOREPLICAS (ResponseError)",
        ),
        (
            pipeline_error(
                OutOfMemoryError, "command not allowed", "HSET", "ep:1", "secrets", CARD
            ),
            "OOM (OutOfMemoryError)",
        ),
        (ResponseError(f"WRONGTYPE Operation against a key {CARD}"), "WRONGTYPE (ResponseError)"),
        (ResponseError(f"Error running script: {CARD}"), "ResponseError"),
        (ConnectionResetError(104, CARD), "ConnectionResetError (ECONNRESET)"),
        (KeyError(CARD), "KeyError"),
        (ValueError(f"invalid literal for int() with base 10: '{CARD}'"), "ValueError"),
    ],
)
def test_an_exception_is_described_by_its_class_and_code_only(
    exc: Exception, described: str
) -> None:
    assert describe_error(exc) == described


def test_a_refused_pipeline_command_is_logged_by_name_and_size() -> None:
    logs.name_script("f00d" * 10, "INGEST_MANY")
    exc = pipeline_error(OutOfMemoryError, "no", "EVALSHA", "f00d" * 10, "2", CARD, "x" * 100)
    assert logs.error_fields(exc) == {
        "error": "OOM (OutOfMemoryError)",
        "command": "EVALSHA",
        "script": "INGEST_MANY",
        "argument_chars": 40 + 1 + 1 + 1 + len(CARD) + 1 + 100,
    }
    hset = pipeline_error(ResponseError, "NOREPLICAS no", "HSET", "ep:1", "secrets", CARD)
    assert logs.error_fields(hset)["command"] == "HSET"
    assert logs.error_fields(KeyError(CARD)) == {"error": "KeyError"}


@pytest.fixture
def json_logs() -> Iterator[None]:
    configure("json")
    yield
    configure("console", logging.WARNING)  # the suite's own (conftest ``quiet_logs``)


def render(method: str, event: str, **values: Any) -> str:
    """One line through the configured processors, returned instead of printed."""
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=structlog.get_config()["processors"],
        wrapper_class=structlog.get_config()["wrapper_class"],
    )
    line: str = getattr(logger, method)(event, **values)
    return line


def test_every_value_and_every_line_is_bounded(json_logs: None) -> None:
    quoted = str(pipeline_error(ResponseError, "NOREPLICAS no", "EVALSHA", "f00", CARD))
    line = render(
        "error",
        "x",
        one="a" * 100_000,
        body=CARD.encode(),
        error=ResponseError(CARD),
        text=quoted,  # a call site that logs str(exc) still logs no argument
    )
    event = json.loads(line)
    assert len(event["one"]) < MAX_VALUE + 50 and event["one"].startswith("a" * MAX_VALUE)
    assert event["body"] == "<16 bytes>" and event["error"] == "ResponseError"
    assert event["text"] == "Redis pipeline error NOREPLICAS"
    assert CARD not in line

    many = {f"k{i}": "v" * MAX_VALUE for i in range(100)}
    line = render("warning", "hookgate.test.many", nested={"rows": ["w" * 10_000] * 1000}, **many)
    assert len(line.encode()) <= MAX_LINE
    event = json.loads(line)
    assert event["event"] == "hookgate.test.many" and event["level"] == "warning"
    assert event["truncated"] is True


def test_a_traceback_names_frames_and_classes_never_messages(json_logs: None) -> None:
    def fail() -> None:
        try:
            {}[CARD]
        except KeyError:
            raise pipeline_error(ResponseError, "NOREPLICAS no", "EVALSHA", CARD) from None

    try:
        try:
            fail()
        except ResponseError as exc:
            raise RuntimeError(CARD) from exc
    except RuntimeError:
        line = render("exception", "hookgate.test.crashed")
    event = json.loads(line)
    assert CARD not in line
    assert "in fail" in event["exception"]
    assert "NOREPLICAS (ResponseError)" in event["exception"]
    assert event["exception"].rstrip().endswith("RuntimeError")


def test_the_console_format_is_as_safe() -> None:
    configure("console")
    try:
        try:
            raise pipeline_error(OutOfMemoryError, "no", "EVALSHA", CARD, "y" * 100_000)
        except OutOfMemoryError as exc:
            line = render("exception", "hookgate.test.crashed", error=exc, body="z" * 100_000)
    finally:
        configure("console", logging.WARNING)
    assert CARD not in line and len(line.encode()) <= MAX_LINE
    assert "OOM (OutOfMemoryError)" in line and "Traceback" in line


def test_a_library_record_is_safe_and_bounded(json_logs: None) -> None:
    """arq and aiohttp log through stdlib logging: ``"%s failed: %s", job, exc``."""
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, logs._StdlibHandler))
    exc = pipeline_error(OutOfMemoryError, "command not allowed", "EVALSHA", CARD)
    try:
        raise exc
    except OutOfMemoryError:
        record = logging.getLogger("arq.worker").makeRecord(
            "arq.worker",
            logging.ERROR,
            __file__,
            1,
            "%s failed: %s %s",
            ("j1", exc, "z" * 10_000),
            sys.exc_info(),
        )
    line = handler.format(record)
    event = json.loads(line)
    assert CARD not in line and len(line.encode()) <= MAX_LINE
    assert event["event"].startswith("j1 failed: OOM (OutOfMemoryError) zzz")
    assert event["logger"] == "arq.worker" and "exception" in event


# ---- real processes -------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, redis.Redis]]:
    port = free_port()
    process = start_redis(tmp_path / "redis", port)
    client = redis.Redis(port=port)
    try:
        yield f"redis://127.0.0.1:{port}/0", client
    finally:
        client.config_set("maxmemory", "0")
        client.close()
        process.terminate()
        process.wait(timeout=10)


def spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([hookgate_exe(), command], env=env, stdout=out, stderr=out)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def text_of(log: Path) -> str:
    return log.read_text(errors="replace")


async def wait_for_line(log: Path, needle: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while needle not in text_of(log):
        assert time.monotonic() < deadline, f"no {needle!r} in:\n{text_of(log)[-3000:]}"
        await asyncio.sleep(0.1)


def assert_safe(log: Path, *markers: str) -> list[dict[str, Any]]:
    """Every line of ``log`` is bounded and holds none of ``markers``; returns the lines."""
    events = []
    for line in log.read_bytes().splitlines():
        assert len(line) <= MAX_LINE, line[:300]
        for marker in markers:
            assert marker.encode() not in line, line[:300]
        if line.startswith(b"{"):  # not a Python warning printed straight to stderr
            events.append(json.loads(line))
    return events


async def test_a_redis_refusing_writes_logs_no_argument_of_what_it_refused(
    own_redis: tuple[str, redis.Redis], tmp_path: Path
) -> None:
    url, client = own_redis
    env = hookgate_env(url)
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    log = tmp_path / "gateway.log"
    process = spawn("serve", env, log)
    try:
        await wait_healthy(base, process)
        async with aiohttp.ClientSession(base, headers=AUTH) as http:
            body = {"business_id": "bus_1", "url": "http://127.0.0.1:9/hook"}
            async with http.post("/v1/endpoints", json=body) as resp:
                assert resp.status == 201, await resp.text()
                endpoint_id = (await resp.json())["id"]
            sealed = json.loads(client.hget(keys.endpoint(endpoint_id), "secrets") or b"")
            secret = sealed[0]["secret"]

            client.config_set("maxmemory", "1")  # noeviction: every write is refused (OOM)
            padding = "p" * 4000
            events = [
                {
                    "business_id": "bus_1",
                    "type": "payment.succeeded",
                    "data": {"card": CARD, "n": i, "padding": padding},
                    "idempotency_key": f"{IDEM}-{i}",
                }
                for i in range(250)  # about 1 MB
            ]
            async with http.post("/v1/events/batch", json={"events": events}) as resp:
                assert resp.status == 503, await resp.text()
            single = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"c": CARD}}
            async with http.post(
                "/v1/events", json=single, headers={"Idempotency-Key": IDEM}
            ) as resp:
                assert resp.status == 503, await resp.text()
            async with http.post(f"/v1/endpoints/{endpoint_id}/rotate-secret") as resp:
                assert resp.status == 503, await resp.text()
        await wait_for_line(log, "hookgate.api.redis_unavailable")
    finally:
        client.config_set("maxmemory", "0")
        stop(process)
    events = assert_safe(log, CARD, IDEM, secret)
    refused = [e for e in events if e["event"] == "hookgate.api.redis_unavailable"]
    assert len(refused) >= 2, events
    assert {e["error"] for e in refused} == {"OOM (OutOfMemoryError)"}
    by_path = {e["path"]: e for e in refused}
    assert by_path["/v1/events/batch"]["script"] == "INGEST_MANY"
    assert by_path["/v1/events/batch"]["argument_chars"] > 100_000  # its size, not its text
    assert by_path["/v1/events"]["script"] == "INGEST_MANY"
    assert by_path[f"/v1/endpoints/{endpoint_id}/rotate-secret"]["command"] == "HSET"


async def test_a_worker_that_cannot_record_an_outcome_logs_none_of_it(
    own_redis: tuple[str, redis.Redis], tmp_path: Path, receiver: Any
) -> None:
    """The merchant's answer is an argument of the script that records it: when Redis refuses
    that write (too few replicas), the worker's line names the refusal, not the answer."""
    url, client = own_redis

    async def refuse_then_answer(request: web.Request, n: int) -> web.StreamResponse:
        # The worker's next write is refused. Not by OOM: a full Redis refuses a script only
        # at its first write and only if that one can grow memory; FINISH's is a ZREM.
        client.config_set("min-replicas-to-write", "1")
        return web.Response(text=f"{ECHO} " * 100, status=200)

    sink = await receiver(refuse_then_answer)
    env = hookgate_env(url)
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    gateway_log, worker_log = tmp_path / "gateway.log", tmp_path / "worker.log"
    gateway = spawn("serve", env, gateway_log)
    worker = spawn("worker", env, worker_log)
    try:
        await wait_healthy(base, gateway)
        async with aiohttp.ClientSession(base, headers=AUTH) as http:
            body = {"business_id": "bus_1", "url": sink.url}
            async with http.post("/v1/endpoints", json=body) as resp:
                assert resp.status == 201, await resp.text()
            event = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"c": CARD}}
            async with http.post(
                "/v1/events", json=event, headers={"Idempotency-Key": IDEM}
            ) as resp:
                assert resp.status == 202, await resp.text()
        await wait_for_line(worker_log, "hookgate.delivery.record_failed")
    finally:
        client.config_set("min-replicas-to-write", "0")
        stop(worker)
        stop(gateway)
    events = assert_safe(worker_log, CARD, IDEM, ECHO)
    failed = [e for e in events if e["event"] == "hookgate.delivery.record_failed"]
    assert failed and failed[0]["error"] == "NOREPLICAS (ResponseError)"
    assert failed[0]["script"] == "FINISH_MANY"
    assert_safe(gateway_log, CARD, IDEM, ECHO)


@pytest.mark.parametrize(
    ("path", "content_type", "length"),
    [
        ("/v1/events", "application/json", 100_000),
        ("/portal/login", "application/x-www-form-urlencoded", 60_000),  # within the form limit
    ],
)
async def test_a_client_hanging_up_mid_body_is_an_abort_not_an_error(
    own_redis: tuple[str, redis.Redis], tmp_path: Path, path: str, content_type: str, length: int
) -> None:
    url, _ = own_redis
    env = hookgate_env(url)
    port = int(env["HOOKGATE_PORT"])
    log = tmp_path / "gateway.log"
    process = spawn("serve", env, log)
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", process)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode()
            + b"0123456789"
        )
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler is reading the body now
        writer.close()
        await writer.wait_closed()
        await wait_for_line(log, "hookgate.api.client_aborted")
        await wait_healthy(f"http://127.0.0.1:{port}", process)  # and it goes on answering
    finally:
        stop(process)
    text = text_of(log)
    assert "unhandled" not in text and "Traceback" not in text, text
    [aborted] = [e for e in assert_safe(log) if e["event"] == "hookgate.api.client_aborted"]
    assert aborted["level"] == "info" and aborted["path"] == path
    assert "exception" not in aborted


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (None, None),
        ("HTTP 503", "HTTP 503"),
        ("timeout after 15s", "timeout"),
        (
            "connection failed: [Errno 111] Connect call failed ('10.1.2.3', 8443)",
            "connection failed",
        ),
        ("blocked_destination: secret-host.example is loopback", "blocked_destination"),
        (
            "ClientConnectorError: Cannot connect to host secret-host.example:443 ssl:default",
            "ClientConnectorError",
        ),
        ("ValueError: " + CARD * 10, "ValueError"),
    ],
)
def test_a_delivery_line_names_the_kind_of_error_never_its_text(
    error: str | None, kind: str | None
) -> None:
    """The worker's per-attempt line: an attempt's error text can name the endpoint's host or
    quote the receiver; the line keeps its kind (the attempt record keeps the text)."""
    from worker.http import error_kind

    assert error_kind(error) == kind
