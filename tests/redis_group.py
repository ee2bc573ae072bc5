"""A Redis group of the tests' own: one primary, replicas and three sentinels, each a real
``redis-server`` on a free loopback port (sentinels are ``redis-server <conf> --sentinel``)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from gateway.cli.redis_server import find_redis_server, free_port, start_redis

MASTER = "hg"


@dataclasses.dataclass
class Node:
    name: str
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclasses.dataclass
class RedisGroup:
    """Start with ``start()``; ``url`` is the ``redis+sentinel://`` URL hookgate takes."""

    directory: Path
    replicas: int = 2
    sentinels: int = 3
    down_after_ms: int = 1000
    nodes: list[Node] = dataclasses.field(default_factory=list)
    sentinel_nodes: list[Node] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinel_nodes)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def start(self) -> None:
        primary = Node("primary", self.directory / "primary", free_port())
        self._start_data_node(primary, replica_of=None)
        self.nodes.append(primary)
        for i in range(self.replicas):
            node = Node(f"replica{i + 1}", self.directory / f"replica{i + 1}", free_port())
            self._start_data_node(node, replica_of=primary.port)
            self.nodes.append(node)
        self._wait_in_sync(primary, self.replicas)
        for i in range(self.sentinels):
            self.sentinel_nodes.append(self._start_sentinel(i, primary.port))
        self._wait_sentinels_see(primary.port, self.replicas)

    def _start_data_node(self, node: Node, replica_of: int | None) -> None:
        extra: tuple[str, ...] = ("--enable-debug-command", "local")
        if replica_of is not None:
            extra += ("--replicaof", "127.0.0.1", str(replica_of))
        node.process = start_redis(node.directory, node.port, extra=extra)

    def restart(self, node: Node) -> None:
        """Starts a stopped data node again on its own data directory, as a plain server:
        the sentinels turn it into a replica of whichever node is primary now."""
        node.process = start_redis(
            node.directory, node.port, extra=("--enable-debug-command", "local")
        )

    def _start_sentinel(self, i: int, primary_port: int) -> Node:
        node = Node(f"sentinel{i + 1}", self.directory / f"sentinel{i + 1}", free_port())
        node.directory.mkdir(parents=True, exist_ok=True)
        conf = node.directory / "sentinel.conf"
        conf.write_text(
            f"port {node.port}\n"
            "bind 127.0.0.1\n"
            f"dir {node.directory}\n"
            f"logfile {node.directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 2\n"
        )
        node.process = subprocess.Popen(
            [find_redis_server(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if node.client().ping():
                    return node
            except redis.RedisError:
                pass
            assert node.alive, f"sentinel exited: {self._log(node)}"
            assert time.monotonic() < deadline, f"sentinel did not start: {self._log(node)}"
            time.sleep(0.05)

    def _wait_in_sync(self, primary: Node, replicas: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            info = primary.client().info("replication")
            online = [
                v
                for k, v in info.items()
                if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
            ]
            if len(online) >= replicas:
                return
            assert time.monotonic() < deadline, f"replicas not in sync: {info}"
            time.sleep(0.05)

    def _wait_sentinels_see(self, primary_port: int, replicas: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for sentinel in self.sentinel_nodes:
            while True:
                try:
                    state = sentinel.client().sentinel_master(MASTER)
                    if (
                        int(state["port"]) == primary_port
                        and int(state["num-slaves"]) >= replicas
                        and int(state["num-other-sentinels"]) >= self.sentinels - 1
                    ):
                        break
                except redis.RedisError:
                    pass
                assert time.monotonic() < deadline, "sentinels did not see the whole group"
                time.sleep(0.1)

    def primary_port(self) -> int:
        """The port the sentinels name as primary now."""
        for sentinel in self.sentinel_nodes:
            if sentinel.alive:
                try:
                    return int(sentinel.client().sentinel_get_master_addr_by_name(MASTER)[1])
                except redis.RedisError:
                    continue
        raise AssertionError("no sentinel answers")

    def node_on(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def wait_new_primary(self, old_port: int, timeout: float = 30) -> tuple[Node, float]:
        """Until the sentinels name a primary other than ``old_port`` and it takes writes."""
        started = time.monotonic()
        while True:
            port = self.primary_port()
            if port != old_port:
                node = self.node_on(port)
                try:
                    role = node.client().execute_command("ROLE")
                    if role[0] == b"master":
                        return node, time.monotonic() - started
                except redis.RedisError:
                    pass
            assert time.monotonic() - started < timeout, "no failover happened"
            time.sleep(0.05)

    def pause(self, node: Node) -> None:
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        assert node.process is not None
        os.kill(node.process.pid, signal.SIGCONT)

    def kill(self, node: Node) -> None:
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=10)

    def stop(self) -> None:
        for node in [*self.sentinel_nodes, *self.nodes]:
            if node.process is not None and node.process.poll() is None:
                os.kill(node.process.pid, signal.SIGCONT)
                node.process.kill()
                node.process.wait(timeout=10)

    @staticmethod
    def _log(node: Node) -> str:
        for name in ("sentinel.log", "redis.log"):
            path = node.directory / name
            if path.exists():
                return path.read_text(errors="replace")[-800:]
        return "(no log)"
