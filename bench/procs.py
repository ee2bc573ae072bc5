"""The processes a benchmark runs: its own Redis, ``hookgate serve``/``worker``, receivers.

Everything listens on 127.0.0.1 on free ports and is stopped by the ``Cluster`` that started
it; the Redis on 6379 is never touched.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis

from bench.payloads import BUSINESS_ID
from gateway.cli.redis_server import free_port, start_redis

TOKEN = "bench-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Never pick up the operator's own settings: every HOOKGATE_* the processes see is set here.
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}


class BenchError(Exception):
    """A benchmark could not produce its figure (a process died, a wait ran out, a bad reply)."""


class Proc:
    """One child process, its output in a log file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self.stopped = False
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail(1500)}")

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rss(self) -> int:
        """Resident set size in bytes (VmRSS)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise BenchError(f"no VmRSS for {self.name}")

    def stop(self, timeout: float = 20.0) -> None:
        self.stopped = True
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def wait_port(port: int, proc: Proc, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.name} did not listen on {port} within {timeout:g} s")


def hookgate_command(*args: str) -> list[str]:
    beside = Path(sys.executable).parent / "hookgate"
    if beside.exists():
        return [str(beside), *args]
    return [sys.executable, "-c", "from gateway.cli.main import main; main()", *args]


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stops a redis-server: SIGTERM (it writes its AOF), then SIGKILL after 10 s."""
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


class Cluster:
    """Redis + one gateway for the whole suite; workers, receivers and baselines on demand."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []
        self.redis_port = free_port()
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.replica_proc: subprocess.Popen[bytes] | None = None
        # more redis-servers, one per extra cell (the cells benchmark); reset() empties them too
        self.cell_servers: list[tuple[subprocess.Popen[bytes], redis.Redis]] = []
        self.gateway: Proc | None = None
        self.gateway_url = ""
        self.worker_env: dict[str, str] = {}
        self.secret_key = base64.b64encode(os.urandom(32)).decode()
        self._spawned = 0

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        # AOF with fsync every second, as hookgate ships. Automatic AOF rewrites are left to
        # reset() between measurements, so that a rewrite's fork never lands inside one.
        self.redis_proc = start_redis(
            self.workdir / "redis",
            self.redis_port,
            fsync="everysec",
            extra=("--auto-aof-rewrite-min-size", "8gb"),
        )
        self.redis = redis.Redis(port=self.redis_port)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=5)
        self.stop_cell_servers()
        for server in (self.replica_proc, self.redis_proc):
            if server is not None:
                stop_server(server)
        self.redis.close()

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **BASE_ENV,
            "HOOKGATE_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "HOOKGATE_ADMIN_TOKEN": TOKEN,
            "HOOKGATE_SECRET_KEY": self.secret_key,
            "HOOKGATE_ALLOW_PRIVATE_TARGETS": "true",  # the receivers are on loopback
            "HOOKGATE_HTTPS_ONLY": "false",  # and speak plain http
            "HOOKGATE_LOG_FORMAT": "json",
            **extra,
        }

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        self._spawned += 1
        log = self.workdir / f"{self._spawned:02d}-{name}.log"
        proc = Proc(name, args, log, env or {**BASE_ENV})
        self.procs.append(proc)
        return proc

    def start_gateway(self) -> None:
        port = free_port()
        self.gateway = self.spawn(
            "gateway", hookgate_command("serve"), self.env(HOOKGATE_PORT=str(port))
        )
        self.gateway_url = f"http://127.0.0.1:{port}"
        wait_port(port, self.gateway)
        self.request("GET", "/healthz")

    def start_extra_gateway(self, name: str, **env: str) -> str:
        """Another ``hookgate serve`` on this Redis (stopped with the benchmark's processes);
        returns its base URL."""
        port = free_port()
        proc = self.spawn(name, hookgate_command("serve"), self.env(HOOKGATE_PORT=str(port), **env))
        wait_port(port, proc)
        return f"http://127.0.0.1:{port}"

    def start_replica(self) -> None:
        """A replica of this Redis (AOF, as a production replica), kept until the suite ends;
        returns once it is in sync."""
        if self.replica_proc is not None:
            return
        port = free_port()
        self.replica_proc = start_redis(
            self.workdir / "replica",
            port,
            fsync="everysec",
            extra=("--replicaof", "127.0.0.1", str(self.redis_port)),
        )
        replica = redis.Redis(port=port)
        deadline = time.monotonic() + 30
        while replica.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise BenchError("the replica did not sync within 30 s")
            time.sleep(0.05)
        replica.close()

    def stop_replica(self) -> None:
        if self.replica_proc is not None:
            self.replica_proc.terminate()
            self.replica_proc.wait(10)
            self.replica_proc = None

    def start_cell_server(self, name: str) -> str:
        """Another redis-server configured as the first (AOF, fsync every second, rewrites left
        to reset()), for a cell of its own; returns its URL. reset() empties it too, until
        stop_cell_servers()."""
        port = free_port()
        server = start_redis(
            self.workdir / name,
            port,
            fsync="everysec",
            extra=("--auto-aof-rewrite-min-size", "8gb"),
        )
        self.cell_servers.append((server, redis.Redis(port=port)))
        return f"redis://127.0.0.1:{port}/0"

    def stop_cell_servers(self) -> None:
        for server, client in self.cell_servers:
            client.close()
            stop_server(server)
        self.cell_servers = []

    def start_worker(self) -> Proc:
        proc = self.spawn("worker", hookgate_command("worker"), self.env(**self.worker_env))
        deadline = time.monotonic() + 20
        while "hookgate.worker.started" not in proc.tail(100_000):
            proc.check()
            if time.monotonic() > deadline:
                raise BenchError(f"the worker did not start within 20 s:\n{proc.tail()}")
            time.sleep(0.05)
        return proc

    def start_receiver(self, delay: float = 0.0) -> tuple[Proc, str]:
        """A receiver process; returns it and its base URL (``/hook`` takes webhooks)."""
        port = free_port()
        args = [sys.executable, "-m", "bench.receiver", str(port), str(delay)]
        proc = self.spawn(f"receiver-{port}", args)
        wait_port(port, proc)
        return proc, f"http://127.0.0.1:{port}"

    def start_baseline(self, role: str) -> tuple[Proc, str]:
        port = free_port()
        args = [sys.executable, "-m", "bench.baselines", "serve", role, str(port)]
        proc = self.spawn(role, [*args, str(self.redis_port)])
        wait_port(port, proc)
        return proc, f"http://127.0.0.1:{port}/e"

    # ---- Redis -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Empties Redis (and each cell server's) and compacts its AOF, so each measurement
        starts from the same state."""
        for client in (self.redis, *(c for _, c in self.cell_servers)):
            self._reset(client)

    @staticmethod
    def _reset(client: redis.Redis) -> None:
        client.flushall()
        deadline = time.monotonic() + 60
        while client.info("persistence")["aof_rewrite_in_progress"]:
            if time.monotonic() > deadline:
                raise BenchError("an AOF rewrite did not finish within 60 s")
            time.sleep(0.05)
        client.bgrewriteaof()
        time.sleep(0.05)
        while True:
            info = client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                break
            if time.monotonic() > deadline:
                raise BenchError("an AOF rewrite did not finish within 60 s")
            time.sleep(0.05)

    def command_calls(self) -> dict[str, int]:
        """Calls per Redis command so far (commands run inside Lua scripts included)."""
        stats = self.redis.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def counter(self, name: str, client: redis.Redis | None = None) -> int:
        """A counter of hookgate's in this Redis (or ``client``'s)."""
        value = (client or self.redis).hget("hg:metrics", name)
        return int(float(value)) if value else 0

    def pending(self) -> int:
        return int(self.redis.zcard("hg:due"))

    # ---- the API ---------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, base: str = "") -> Any:
        """An API call to the suite's gateway (or the one at ``base``), with the admin token."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            (base or self.gateway_url) + path,
            data=data,
            method=method,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise BenchError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}") from None
        return json.loads(raw) if raw else None

    def create_api_key(self, scopes: list[str]) -> str:
        """A new API key (through the admin token); returns the key."""
        reply = self.request("POST", "/v1/api-keys", {"name": "bench", "scopes": scopes})
        return str(reply["key"])

    def add_endpoint(self, url: str, max_in_flight: int = 100) -> str:
        reply = self.request(
            "POST",
            "/v1/endpoints",
            {"business_id": BUSINESS_ID, "url": url, "max_in_flight": max_in_flight},
        )
        return str(reply["id"])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def post_empty(url: str) -> None:
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
