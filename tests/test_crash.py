"""Crash tests: real ``hookgate serve`` / ``hookgate worker`` / ``redis-server`` processes,
``kill -9`` at the worst moments, and a check that nothing acknowledged is lost.

Every test prints what it measured (recovery times, counts); run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import os
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from redis.asyncio import Redis
from support import AUTH, TOKEN, hookgate_exe, ingest_batch, wait_healthy

from gateway.cli.redis_server import free_port, start_redis
from gateway.store import keys, queue

pytestmark = pytest.mark.e2e

SECRET_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
DELIVERY_TIMEOUT = 2.0
# arq hands a dead worker's job to another worker once its in-progress key expires; the job
# timeout is the delivery timeout + 5 s.
ARQ_RECOVERY = queue.in_progress_timeout(DELIVERY_TIMEOUT + 5.0)
# Room for process start-up, polling and the remaining work on a busy 2-core machine.
SLACK = 10.0


# ---- processes ---------------------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    """hookgate processes over one Redis; every process logs to a file under ``logs``."""

    redis_url: str
    logs: Path
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['HOOKGATE_PORT']}"

    def spawn(self, command: str, name: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [hookgate_exe(), command],
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started.append(process)
        return process

    async def serve(self, name: str = "gateway") -> subprocess.Popen[bytes]:
        process = self.spawn("serve", name)
        await wait_healthy(self.base, process)
        return process

    def worker(self, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        return self.spawn("worker", name, **env)

    async def wait_started(self, *names: str, timeout: float = 20) -> None:
        """Until each named worker has logged that it polls the queue."""
        deadline = time.monotonic() + timeout
        for name in names:
            path = self.logs / f"{name}.log"
            while not (path.exists() and b"hookgate.worker.started" in path.read_bytes()):
                assert time.monotonic() < deadline, f"{name} did not start: {self.log_tail(name)}"
                await asyncio.sleep(0.05)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def hookgate_env(redis_url: str, **overrides: str) -> dict[str, str]:
    return {
        **os.environ,
        "HOOKGATE_REDIS_URL": redis_url,
        "HOOKGATE_ADMIN_TOKEN": TOKEN,
        "HOOKGATE_SECRET_KEY": SECRET_KEY,
        "HOOKGATE_PORT": str(free_port()),
        "HOOKGATE_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_HTTPS_ONLY": "false",
        "HOOKGATE_RETRY_SCHEDULE": "300ms,300ms,1s,1s,1s",
        "HOOKGATE_DELIVERY_TIMEOUT": f"{DELIVERY_TIMEOUT}s",
        "HOOKGATE_WORKER_POLL_DELAY": "20ms",
        "HOOKGATE_WORKER_CONCURRENCY": "100",
        # Some tests give an endpoint a cap above the worker's concurrency (300).
        "HOOKGATE_MAX_IN_FLIGHT": "300",
        "HOOKGATE_SWEEP_INTERVAL": "1s",
        "HOOKGATE_LOG_FORMAT": "json",
        **overrides,
    }


def kill9(process: subprocess.Popen[bytes]) -> None:
    process.kill()  # SIGKILL: no handler, no cleanup, like a machine losing the process
    process.wait(timeout=10)


@pytest.fixture
def cluster(redis_url: str, redis: Redis, tmp_path: Path) -> Iterator[Cluster]:
    """Processes over the suite's redis-server (flushed by the ``redis`` fixture)."""
    made = Cluster(redis_url, tmp_path, hookgate_env(redis_url))
    yield made
    made.stop_all()


# ---- the merchants' side -----------------------------------------------------------------


@dataclasses.dataclass
class Sink:
    """Loopback endpoints ``/{name}``; records each arrival's ``webhook-id`` and time."""

    url: str = ""
    behaviours: dict[str, Callable[[web.Request], Awaitable[None]]] = dataclasses.field(
        default_factory=dict
    )
    arrivals: dict[str, list[tuple[str, float]]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )
    inflight: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    max_inflight: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    # webhook-ids whose request is being answered right now
    open_ids: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def endpoint_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    def ids(self, name: str) -> collections.Counter[str]:
        return collections.Counter(i for i, _ in self.arrivals[name])

    def total(self, name: str) -> int:
        return len(self.arrivals[name])

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        webhook_id = request.headers.get("webhook-id", "")
        await request.read()
        self.arrivals[name].append((webhook_id, time.monotonic()))
        self.inflight[name] += 1
        self.open_ids[webhook_id] += 1
        self.max_inflight[name] = max(self.max_inflight[name], self.inflight[name])
        try:
            behaviour = self.behaviours.get(name)
            if behaviour is not None:
                await behaviour(request)
        finally:
            self.inflight[name] -= 1
            self.open_ids[webhook_id] -= 1
        return web.json_response({"ok": True})


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    made = Sink()
    app = web.Application()
    app.router.add_post("/{name}", made.handle)
    # handler_cancellation: a request whose sender hung up stops counting as in flight at once.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    made.url = f"http://127.0.0.1:{port}"
    yield made
    await runner.cleanup()


def sleeping(seconds: float) -> Callable[[web.Request], Awaitable[None]]:
    async def behave(request: web.Request) -> None:
        await asyncio.sleep(seconds)

    return behave


async def never_answer(request: web.Request) -> None:
    """Never answers: the sender times out and hangs up, which cancels this (or after 60 s)."""
    await asyncio.sleep(60)


# ---- the billing core's side -------------------------------------------------------------


async def create_endpoint(
    http: aiohttp.ClientSession, business: str, url: str, max_in_flight: int = 10
) -> str:
    body = {"business_id": business, "url": url, "max_in_flight": max_in_flight}
    async with http.post("/v1/endpoints", json=body) as resp:
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])


def event(business: str, n: int) -> dict[str, Any]:
    return {"business_id": business, "type": "payment.succeeded", "data": {"n": n}}


async def statuses(redis: Redis, delivery_ids: list[str]) -> collections.Counter[str]:
    async with redis.pipeline(transaction=False) as pipe:
        for delivery_id in delivery_ids:
            pipe.hget(keys.delivery(delivery_id), "status")
        got = await pipe.execute()
    return collections.Counter((s or b"missing").decode() for s in got)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float, what: str, interval: float = 0.1
) -> float:
    """Polls ``check`` until true; returns the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def all_succeeded(redis: Redis, delivery_ids: list[str]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await statuses(redis, delivery_ids))["succeeded"] == len(delivery_ids)

    return check


def report(title: str, **figures: Any) -> None:
    shown = ", ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\n[crash] {title}: {shown}")


# ---- 1. worker killed mid-delivery ---------------------------------------------------------


async def test_worker_killed_mid_delivery_loses_nothing(
    cluster: Cluster, sink: Sink, redis: Redis
) -> None:
    sink.behaviours["slow"] = sleeping(0.2)
    await cluster.serve()
    first = cluster.worker("worker-1")
    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        # A cap above the worker's concurrency: the test is about the worker, not the cap.
        await create_endpoint(http, "bus_w", sink.endpoint_url("slow"), max_in_flight=300)
        accepted = await ingest_batch(http, [event("bus_w", n) for n in range(500)])
    event_ids = {a["id"] for a in accepted}
    dlv_ids = [a["deliveries"][0] for a in accepted]

    await wait_until(lambda: _at_least(sink, "slow", 150), 30, "deliveries in flight", 0.01)
    in_flight = sum(1 for n in sink.open_ids.values() if n > 0)
    killed_at = time.monotonic()
    kill9(first)
    # Requests the dead worker wrote just before dying may still be in the sink's socket
    # buffers: let them land (no worker runs meanwhile) before taking the snapshot.
    await asyncio.sleep(0.5)
    arrived_before = sink.ids("slow")
    cluster.worker("worker-2")

    done_at = await wait_until(
        all_succeeded(redis, dlv_ids), ARQ_RECOVERY + SLACK + 20, "every delivery to succeed"
    )
    recovery = done_at - killed_at
    got = sink.ids("slow")
    missing = event_ids - set(got)
    duplicates = {i for i, n in got.items() if n > 1}
    report(
        "worker killed mid-delivery",
        events=len(event_ids),
        arrived_before_kill=len(arrived_before),
        in_flight_at_kill=in_flight,
        duplicates=len(duplicates),
        missing=len(missing),
        recovery_s=recovery,
        bound_s=ARQ_RECOVERY + SLACK,
    )
    assert not missing
    assert set(got) == event_ids
    # Only attempts the dead worker had started can arrive twice.
    assert duplicates <= set(arrived_before)
    assert len(duplicates) <= 100  # the dead worker's concurrency
    assert recovery <= ARQ_RECOVERY + SLACK


# ---- 2. two workers ------------------------------------------------------------------------


async def test_two_workers_deliver_everything_exactly_once_when_none_dies(
    cluster: Cluster, sink: Sink, redis: Redis
) -> None:
    sink.behaviours["slow"] = sleeping(0.2)
    # A generous timeout: with no crash, a duplicate could only come from a timed-out attempt.
    cluster.env["HOOKGATE_DELIVERY_TIMEOUT"] = "10s"
    await cluster.serve()
    cluster.worker("worker-a", HOOKGATE_WORKER_CONCURRENCY="50")
    cluster.worker("worker-b", HOOKGATE_WORKER_CONCURRENCY="50")
    await cluster.wait_started("worker-a", "worker-b")
    started = time.monotonic()
    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_2", sink.endpoint_url("slow"), max_in_flight=300)
        accepted = await ingest_batch(http, [event("bus_2", n) for n in range(500)])
    event_ids = {a["id"] for a in accepted}
    dlv_ids = [a["deliveries"][0] for a in accepted]
    done_at = await wait_until(all_succeeded(redis, dlv_ids), 60, "every delivery to succeed")
    got = sink.ids("slow")
    report(
        "two workers, no crash",
        events=len(event_ids),
        arrivals=sink.total("slow"),
        duplicates=sum(n - 1 for n in got.values()),
        seconds=done_at - started,
    )
    assert set(got) == event_ids
    assert max(got.values()) == 1  # exactly once: no crash, no duplicate
    assert sink.total("slow") == len(event_ids)


async def test_two_workers_one_killed_duplicates_only_what_it_held(
    cluster: Cluster, sink: Sink, redis: Redis
) -> None:
    sink.behaviours["slow"] = sleeping(0.2)
    await cluster.serve()
    victim = cluster.worker("worker-a", HOOKGATE_WORKER_CONCURRENCY="50")
    cluster.worker("worker-b", HOOKGATE_WORKER_CONCURRENCY="50")
    await cluster.wait_started("worker-a", "worker-b")  # both take a share of the load
    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_2k", sink.endpoint_url("slow"), max_in_flight=300)
        accepted = await ingest_batch(http, [event("bus_2k", n) for n in range(500)])
    event_ids = {a["id"] for a in accepted}
    dlv_ids = [a["deliveries"][0] for a in accepted]

    # Kill once both workers have attempts open at the sink: each holds at most 50, so more
    # than 50 open means the victim has some (killed between taking its jobs and sending
    # them, it would leave none to duplicate).
    async def both_sending() -> bool:
        return sink.total("slow") >= 150 and sink.inflight["slow"] > 60

    await wait_until(both_sending, 30, "both workers' deliveries in flight", 0.005)
    killed_at = time.monotonic()
    kill9(victim)
    await asyncio.sleep(0.5)
    # What the dead worker can have left half done: attempts that reached the sink and whose
    # delivery is still pending once it is gone (the survivor's own finish normally).
    arrived = set(sink.ids("slow"))
    async with redis.pipeline(transaction=False) as pipe:
        for dlv, evt in zip(dlv_ids, [a["id"] for a in accepted], strict=True):
            if evt in arrived:
                pipe.hget(keys.delivery(dlv), "status")
        pending_flags = await pipe.execute()
    arrived_pending = {
        evt
        for evt, status in zip(
            [a["id"] for a in accepted if a["id"] in arrived], pending_flags, strict=True
        )
        if status == b"pending"
    }

    done_at = await wait_until(
        all_succeeded(redis, dlv_ids), ARQ_RECOVERY + SLACK + 20, "every delivery to succeed"
    )
    got = sink.ids("slow")
    duplicates = {i for i, n in got.items() if n > 1}
    report(
        "two workers, one killed",
        events=len(event_ids),
        held_by_dead_worker_at_most=len(arrived_pending),
        duplicates=len(duplicates),
        missing=len(event_ids - set(got)),
        recovery_s=done_at - killed_at,
    )
    assert set(got) == event_ids
    assert duplicates  # the dead worker did hold attempts in flight
    assert duplicates <= arrived_pending
    assert len(duplicates) <= 50  # the dead worker's concurrency
    assert max(got.values()) <= 2
    assert done_at - killed_at <= ARQ_RECOVERY + SLACK


# ---- 3. gateway killed during ingest -------------------------------------------------------


async def test_gateway_killed_during_ingest_then_clients_resend_with_their_keys(
    cluster: Cluster, sink: Sink, redis: Redis
) -> None:
    gateway = await cluster.serve()
    cluster.worker()
    total, kill_after = 400, 150
    answers: dict[str, dict[str, Any]] = {}  # idempotency key → its first 202 view
    unanswered: list[str] = []
    body = {k: event("bus_g", int(k.split("-")[1])) for k in (f"key-{n}" for n in range(total))}
    killed = asyncio.Event()

    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_g", sink.endpoint_url("ok"), max_in_flight=50)

        async def client(mine: list[str]) -> None:
            for key in mine:
                try:
                    async with http.post(
                        "/v1/events", json=body[key], headers={"Idempotency-Key": key}
                    ) as resp:
                        assert resp.status == 202, await resp.text()
                        answers[key] = await resp.json()
                except aiohttp.ClientError:
                    unanswered.append(key)
                if len(answers) >= kill_after and not killed.is_set():
                    killed.set()
                    kill9(gateway)

        all_keys = list(body)
        await asyncio.gather(*(client(all_keys[i::16]) for i in range(16)))
        assert killed.is_set()
        lost_answers = len(unanswered)

        restarted_at = time.monotonic()
        await cluster.serve("gateway-2")
        restart_s = time.monotonic() - restarted_at
        replayed = 0
        for key in unanswered:
            async with http.post(
                "/v1/events", json=body[key], headers={"Idempotency-Key": key}
            ) as resp:
                assert resp.status == 202, await resp.text()
                view = await resp.json()
                replayed += view["duplicate"]
                answers[key] = view
        # A key answered before the crash, sent again, names the same event.
        for key in list(answers)[:20]:
            async with http.post(
                "/v1/events", json=body[key], headers={"Idempotency-Key": key}
            ) as resp:
                again = await resp.json()
            assert again["id"] == answers[key]["id"] and again["duplicate"] is True

    assert set(answers) == set(body)
    event_ids = {view["id"] for view in answers.values()}
    assert len(event_ids) == total  # one event per key, however often it was sent
    dlv_ids = [view["deliveries"][0] for view in answers.values()]
    await wait_until(all_succeeded(redis, dlv_ids), 60, "every delivery to succeed")
    got = sink.ids("ok")
    report(
        "gateway killed during ingest",
        keys=total,
        answered_before_kill=total - lost_answers,
        unanswered=lost_answers,
        unanswered_but_stored=replayed,
        gateway_restart_s=restart_s,
    )
    assert lost_answers > 0
    assert set(got) == event_ids
    assert max(got.values()) == 1  # no worker died: each key's event arrives exactly once


# ---- 4. Redis killed and restarted ---------------------------------------------------------


@dataclasses.dataclass
class OwnRedis:
    """A redis-server of the test's own with ``appendfsync always``, restartable in place."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start_redis(self.directory, self.port, fsync="always")

    def kill(self) -> None:
        assert self.process is not None
        kill9(self.process)


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[tuple[OwnRedis, Redis, Cluster]]:
    server = OwnRedis(tmp_path / "redis", free_port())
    server.start()
    client = Redis.from_url(server.url)
    cluster = Cluster(server.url, tmp_path, hookgate_env(server.url))
    yield server, client, cluster
    cluster.stop_all()
    await client.aclose()
    if server.process is not None and server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)


@dataclasses.dataclass
class Outage:
    accepted: dict[str, dict[str, Any]]
    refused: collections.Counter[str]
    down: float
    up: float
    first_202_after: float
    worker_exits: list[int | None]


async def burst_through_a_redis_restart(
    server: OwnRedis,
    redis: Redis,
    cluster: Cluster,
    sink: Sink,
    workers: list[subprocess.Popen[bytes]],
    *,
    restart_dead_workers: bool,
    total: int = 300,
    kill_after: int = 100,
) -> Outage:
    """Clients send ``total`` events with Idempotency-Keys, retrying each until it gets a 202;
    after ``kill_after`` 202s Redis is killed (-9) and restarted a second later on its data.
    With ``restart_dead_workers`` a worker that exits is started again, as a supervisor would.
    """
    accepted: dict[str, dict[str, Any]] = {}
    refused = collections.Counter[str]()
    marks: dict[str, float] = {}
    exits: list[int | None] = []
    seen_dead: list[subprocess.Popen[bytes]] = []
    down = asyncio.Event()
    finished = asyncio.Event()

    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_r", sink.endpoint_url("ok"), max_in_flight=50)
        # The worker must be up and polling when Redis dies (not still connecting).
        [warm] = await ingest_batch(http, [event("bus_r", -1)])
        await wait_until(all_succeeded(redis, warm["deliveries"]), 20, "the warm-up delivery")

        async def client(mine: list[int]) -> None:
            for n in mine:
                key = f"r-{n}"
                deadline = time.monotonic() + 30
                while key not in accepted:  # the client retries until it has a 202
                    assert time.monotonic() < deadline, f"{key} never accepted"
                    sent_at = time.monotonic()
                    try:
                        async with http.post(
                            "/v1/events", json=event("bus_r", n), headers={"Idempotency-Key": key}
                        ) as resp:
                            if resp.status == 202:
                                accepted[key] = await resp.json()
                                if sent_at > marks.get("down", math.inf):
                                    marks.setdefault("first_202_after", time.monotonic())
                            else:
                                assert resp.status == 503, await resp.text()
                                refused[str(resp.status)] += 1
                                await asyncio.sleep(0.05)
                    except aiohttp.ClientError as exc:
                        refused[type(exc).__name__] += 1
                        await asyncio.sleep(0.05)
                if len(accepted) >= kill_after and not down.is_set():
                    marks["down"] = time.monotonic()
                    server.kill()
                    down.set()

        async def restart() -> None:
            await down.wait()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            marks["up"] = time.monotonic()

        async def supervise() -> None:
            while not finished.is_set():
                for i, process in enumerate(workers):
                    if process.poll() is not None and process not in seen_dead:
                        seen_dead.append(process)
                        exits.append(process.returncode)
                        if restart_dead_workers:
                            workers[i] = cluster.worker(f"worker-restarted-{len(exits)}")
                await asyncio.sleep(0.1)

        restarter = asyncio.create_task(restart())
        supervisor = asyncio.create_task(supervise())
        try:
            await asyncio.gather(*(client(list(range(i, total, 10))) for i in range(10)))
            await restarter
            await asyncio.sleep(1.0)  # time for a worker that is going to die to do so
        finally:
            finished.set()
            await supervisor
    return Outage(accepted, refused, marks["down"], marks["up"], marks["first_202_after"], exits)


async def test_redis_killed_and_restarted_loses_no_acknowledged_event(
    own_redis: tuple[OwnRedis, Redis, Cluster], sink: Sink
) -> None:
    server, redis, cluster = own_redis
    gateway = await cluster.serve()
    workers = [cluster.worker()]
    outage = await burst_through_a_redis_restart(
        server, redis, cluster, sink, workers, restart_dead_workers=True
    )
    dlv_ids = [view["deliveries"][0] for view in outage.accepted.values()]
    done_at = await wait_until(all_succeeded(redis, dlv_ids), 40, "every delivery to succeed")
    event_ids = {view["id"] for view in outage.accepted.values()}
    report(
        "redis killed and restarted (appendfsync always)",
        accepted=len(outage.accepted),
        refused_during_outage=dict(outage.refused),
        outage_s=outage.up - outage.down,
        unavailable_to_clients_s=outage.first_202_after - outage.down,
        all_delivered_after_restart_s=done_at - outage.up,
        worker_exits=outage.worker_exits,
    )
    assert len(outage.accepted) == 300
    assert set(sink.ids("ok")) >= event_ids  # every 202 is delivered
    assert gateway.poll() is None  # the gateway answered 503 meanwhile and recovered


async def test_the_worker_rides_out_a_redis_restart(
    own_redis: tuple[OwnRedis, Redis, Cluster], sink: Sink
) -> None:
    server, redis, cluster = own_redis
    await cluster.serve()
    workers = [cluster.worker()]
    outage = await burst_through_a_redis_restart(
        server, redis, cluster, sink, workers, restart_dead_workers=False, total=150, kill_after=50
    )
    report("worker through a redis restart", worker_exits=outage.worker_exits)
    assert outage.worker_exits == [], cluster.log_tail("worker", 600)
    dlv_ids = [view["deliveries"][0] for view in outage.accepted.values()]
    await wait_until(all_succeeded(redis, dlv_ids), 30, "every delivery to succeed")


# ---- 5. a dead endpoint beside healthy ones ------------------------------------------------


async def test_a_dead_endpoint_does_not_hold_back_healthy_ones(
    cluster: Cluster, sink: Sink, redis: Redis
) -> None:
    sink.behaviours["dead"] = never_answer
    cluster.env["HOOKGATE_DELIVERY_TIMEOUT"] = "5s"
    await cluster.serve()
    cluster.worker()
    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_dead", sink.endpoint_url("dead"))  # default cap 10
        for h in range(9):
            await create_endpoint(http, f"bus_ok{h}", sink.endpoint_url(f"ok{h}"))
        events = [event("bus_dead", n) for n in range(200)]
        events += [event(f"bus_ok{h}", n) for n in range(50) for h in range(9)]
        sent_at = time.monotonic()
        accepted = await ingest_batch(http, events)
    dead = [a["deliveries"][0] for a in accepted if a["business_id"] == "bus_dead"]
    healthy = [a["deliveries"][0] for a in accepted if a["business_id"] != "bus_dead"]

    healthy_done = await wait_until(all_succeeded(redis, healthy), 30, "healthy deliveries", 0.05)

    async def dead_attempts() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for delivery_id in dead:
                pipe.llen(keys.delivery_attempts(delivery_id))
            return sum(await pipe.execute())

    recorded_when_healthy_done = await dead_attempts()
    first_timeout = await wait_until(
        lambda: _positive(dead_attempts()), 30, "the dead endpoint's first timeouts", 0.05
    )
    dead_max_before_timeouts = sink.max_inflight["dead"]
    await asyncio.sleep(1.5)  # its retries, and deferred deliveries taking the freed slots
    report(
        "dead endpoint beside nine healthy ones",
        healthy_deliveries=len(healthy),
        healthy_all_done_s=healthy_done - sent_at,
        dead_first_timeouts_s=first_timeout - sent_at,
        dead_attempts_recorded_when_healthy_done=recorded_when_healthy_done,
        dead_max_concurrent_before_timeouts=dead_max_before_timeouts,
        dead_max_concurrent_until_6_5s=sink.max_inflight["dead"],
    )
    assert recorded_when_healthy_done == 0  # no dead attempt had timed out yet
    assert healthy_done < first_timeout
    # Its in-flight cap holds while it hangs, and when the timed-out slots are handed on.
    assert dead_max_before_timeouts == 10
    assert sink.max_inflight["dead"] <= 10
    assert sum(sink.total(f"ok{h}") for h in range(9)) == len(healthy)


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


# ---- 6. a pending delivery whose job vanished ------------------------------------------------


async def test_sweeper_revives_a_delivery_whose_job_arq_gave_up(
    cluster: Cluster, sink: Sink, redis: Redis
) -> None:
    """kill -9 a worker mid-attempt, then make its job vanish as arq's finish_failed_job would
    (or an expired or evicted key): drop the job key, its in-progress marker and its queue
    entry. The delivery is left ``pending`` with no job; the sweeper must revive it."""
    reached = asyncio.Event()
    release = asyncio.Event()

    async def hold_first(request: web.Request) -> None:
        if not reached.is_set():
            reached.set()
            await asyncio.wait_for(release.wait(), 60)

    sink.behaviours["held"] = hold_first
    timeout = 1.0
    cluster.env["HOOKGATE_DELIVERY_TIMEOUT"] = f"{timeout}s"
    await cluster.serve()
    victim = cluster.worker("worker-1")
    async with aiohttp.ClientSession(cluster.base, headers=AUTH) as http:
        await create_endpoint(http, "bus_s", sink.endpoint_url("held"))
        [accepted] = await ingest_batch(http, [event("bus_s", 1)])
    delivery_id = accepted["deliveries"][0]
    async with asyncio.timeout(15):
        await reached.wait()
    kill9(victim)
    release.set()

    stored = (await redis.hget(keys.delivery(delivery_id), "job") or b"").decode()
    assert stored, "the delivery has a current job"
    job = queue.current_job_id(delivery_id, stored)
    # what arq's finish_failed_job removes:
    removed = await redis.delete(
        queue.JOB_KEY_PREFIX + job, queue.IN_PROGRESS_KEY_PREFIX + job, queue.RETRY_KEY_PREFIX + job
    )
    await redis.zrem(queue.QUEUE, job)
    assert removed >= 2  # the job and its in-progress marker existed: a real mid-attempt state
    due_ms = int(float(await redis.zscore(keys.DUE, delivery_id) or 0))
    assert due_ms, "the delivery is still pending"
    cluster.worker("worker-2")

    done_at = await wait_until(
        all_succeeded(redis, [delivery_id]), timeout + 20 + SLACK + 10, "the sweeper's rescue"
    )
    overdue_s = time.time() - due_ms / 1000 - (time.monotonic() - done_at)
    attempts = sink.total("held")
    report(
        "sweeper revives a delivery whose arq job vanished",
        sweeper_grace_s=timeout + 20,
        delivered_after_due_s=overdue_s,
        arrivals=attempts,
    )
    assert attempts == 2  # the one cut short by the crash, then the rescued one
    assert timeout + 20 <= overdue_s <= timeout + 20 + SLACK


async def _at_least_async(sink: Sink, name: str, count: int) -> bool:
    return sink.total(name) >= count


def _at_least(sink: Sink, name: str, count: int) -> Awaitable[bool]:
    return _at_least_async(sink, name, count)
