"""Fixtures for the hookgate-verifier suite: keys, a fixed clock, a private redis-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from hookgate_verifier import Verifier, generate_ed25519_keypair, signed_headers

# The published Standard Webhooks test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000
SECRET = "whsec_" + "c2VjcmV0LWZvci1ob29rZ2F0ZS12ZXJpZmllci10ZXN0cw=="
OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LWZvci1ob29rZ2F0ZS10ZXN0cw=="
BODY = b'{"type": "payment.succeeded", "data": {"id": "pay_1", "amount": 1200}}'
EVENT = {"type": "payment.succeeded", "data": {"id": "pay_1", "amount": 1200}}


class FakeClock:
    """A settable Unix-seconds clock."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(clock: FakeClock) -> Verifier:
    return Verifier(SECRET, clock=clock)


@pytest.fixture
def headers() -> dict[str, str]:
    return signed_headers(SECRET, BODY, msg_id="msg_1", timestamp=NOW)


@pytest.fixture(scope="session")
def ed25519_keypair() -> tuple[str, str]:
    return generate_ed25519_keypair()


@pytest.fixture
def make_headers() -> Callable[..., dict[str, str]]:
    def make(
        body: bytes = BODY, *, secret: str = SECRET, msg_id: str = "msg_1", timestamp: int = NOW
    ) -> dict[str, str]:
        return signed_headers(secret, body, msg_id=msg_id, timestamp=timestamp)

    return make


def _redis_server_binary() -> str:
    for candidate in (shutil.which("redis-server"), str(Path(sys.prefix, "bin", "redis-server"))):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("redis-server not found on PATH or in sys.prefix/bin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server of our own on a free loopback port, never the shared 6379."""
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            _redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=port) as client:
                    client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def redis_client(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port)
    client.flushall()
    yield client
    client.flushall()
    client.close()
