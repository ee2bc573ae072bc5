"""Cells with real processes: one ``hookgate serve`` over two cells, c1 a Sentinel group of the
module's own (a primary, a replica, three sentinels) and c2 a plain ``redis-server``, and
``hookgate worker --cell X`` processes started by each test; a loopback receiver counts every
``webhook-id``. Placement and per-cell delivery, a move under load, paging across cells while
events arrive, the command line's cell handling, and c2's Redis killed with ``kill -9`` (the
in-process side is tests/test_cells.py).

The Redis groups and the gateway are the module's (a Sentinel group takes seconds to start);
workers are each test's own, killed at its end. Every business id is one test's own.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Receiver
from redis.asyncio import Redis
from redis_group import RedisGroup
from support import AUTH, TOKEN, hookgate_exe, ingest_batch, run_cli

from gateway.cli.redis_server import free_port, start_redis
from gateway.core.cells import rendezvous
from gateway.core.secretbox import SecretBox
from gateway.store import keys
from gateway.store.store import awaited

pytestmark = pytest.mark.e2e

CELLS = ("c1", "c2")
ARRIVAL_BOUND = 60.0  # the longest anything may take to arrive on this busy 2-core machine
MakeReceiver = Callable[..., Awaitable[Receiver]]
Spawn = Callable[..., subprocess.Popen[bytes]]


# ---- the module's processes ---------------------------------------------------------------


@dataclasses.dataclass
class Deployment:
    """The two cells' Redis and one gateway over both, shared by the module's tests."""

    root: Path
    group: RedisGroup
    c2_port: int
    c2: subprocess.Popen[bytes]
    env: dict[str, str]
    gateway: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.env['HOOKGATE_PORT']}"

    def redis(self, cell: str) -> Redis:
        """A client of the cell's primary (c1's is the node the sentinels name)."""
        port = self.group.primary_port() if cell == "c1" else self.c2_port
        return Redis(host="127.0.0.1", port=port, socket_connect_timeout=2, socket_timeout=5)

    def cli_env(self) -> dict[str, str]:
        """What an operator's shell holds: the gateway's URL and the admin token, nothing of
        the servers' configuration."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")}
        return {**clean, "HOOKGATE_URL": self.base, "HOOKGATE_ADMIN_TOKEN": TOKEN}

    def kill_c2(self) -> None:
        self.c2.kill()  # SIGKILL: the cell's only Redis is gone at once
        self.c2.wait(timeout=10)

    def restart_c2(self) -> None:
        """c2's Redis again, on its own port and AOF (no-op while it runs)."""
        if self.c2.poll() is not None:
            self.c2 = start_redis(self.root / "c2", self.c2_port)

    def gateway_log(self, chars: int = 3000) -> str:
        path = self.root / "gateway.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def cells_env(root: Path, c1_url: str, c2_port: int) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKGATE_")},
        "HOOKGATE_CELLS": f"c1={c1_url},c2=redis://127.0.0.1:{c2_port}/0",
        # No process here may use a single Redis: a port nothing listens on, so a stray use
        # fails loudly instead of reaching someone else's server.
        "HOOKGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "HOOKGATE_ADMIN_TOKEN": TOKEN,
        "HOOKGATE_SECRET_KEY": SecretBox.generate_key(),
        "HOOKGATE_PORT": str(free_port()),
        "HOOKGATE_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKGATE_HTTPS_ONLY": "false",
        "HOOKGATE_RETRY_SCHEDULE": "300ms,300ms,300ms",
        # Far above what the loopback receiver takes: an attempt timed out on a busy machine
        # would be sent again, and these tests count every webhook-id once.
        "HOOKGATE_DELIVERY_TIMEOUT": "10s",
        "HOOKGATE_WORKER_POLL_DELAY": "20ms",
        "HOOKGATE_SWEEP_INTERVAL": "1s",
        "HOOKGATE_REDIS_CHECK_INTERVAL": "1s",
        # c1's writes wait for its replica (WAIT 1): 100 ms, the default, is at times too
        # little for a replica starved of CPU on a busy 2-core machine (a 503, for a client to
        # retry); these tests are about cells, not about that bound.
        "HOOKGATE_REDIS_WAIT_TIMEOUT": "1s",
        "HOOKGATE_WORKER_HEARTBEAT": str(root / "worker.heartbeat"),
        "HOOKGATE_LOG_FORMAT": "json",
    }


def wait_serving(made: Deployment, timeout: float = 30) -> None:
    assert made.gateway is not None
    deadline = time.monotonic() + timeout
    while True:
        assert made.gateway.poll() is None, f"hookgate serve exited: {made.gateway_log()}"
        try:
            with urllib.request.urlopen(made.base + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, f"hookgate serve did not come up: {made.gateway_log()}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("cells-e2e")
    group = RedisGroup(root / "c1", replicas=1, sentinels=3)
    made: Deployment | None = None
    try:
        group.start()
        c2_port = free_port()
        made = Deployment(
            root, group, c2_port, start_redis(root / "c2", c2_port), env={}, gateway=None
        )
        made.env = cells_env(root, group.url, c2_port)
        with (root / "gateway.log").open("wb") as log:
            made.gateway = subprocess.Popen(
                [hookgate_exe(), "serve"], env=made.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_serving(made)
        yield made
    finally:
        if made is not None:
            for process in (made.gateway, made.c2):
                if process is not None and process.poll() is None:
                    process.kill()
                if process is not None:
                    process.wait(timeout=10)
        group.stop()


# ---- each test's workers ------------------------------------------------------------------


@dataclasses.dataclass
class Worker:
    cell: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def succeeded(self) -> list[str]:
        """The delivery ids this worker logged as delivered."""
        found = []
        for line in self.text().splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("event") == "hookgate.delivery.succeeded":
                    found.append(str(entry["delivery_id"]))
        return found


@dataclasses.dataclass
class Run:
    """One test's side: the module's deployment, and workers started through ``spawn``
    (logging to ``{tmp_path}/worker-{n}.log``), killed when the test ends."""

    deployment: Deployment
    spawn: Spawn
    logs: Path
    spawned: int = 0

    def worker(self, cell: str) -> Worker:
        log = self.logs / f"worker-{self.spawned}.log"
        process = self.spawn("worker", self.deployment.env, "--cell", cell)
        self.spawned += 1
        return Worker(cell, process, log)

    async def started(self, *workers: Worker, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        for worker in workers:
            while "hookgate.worker.started" not in worker.text():
                assert worker.process.poll() is None, f"worker exited: {worker.text()[-2000:]}"
                assert time.monotonic() < deadline, f"worker not started: {worker.text()[-2000:]}"
                await asyncio.sleep(0.05)


@pytest.fixture
def run(deployment: Deployment, spawn: Spawn, tmp_path: Path) -> Iterator[Run]:
    assert deployment.gateway is not None and deployment.gateway.poll() is None, (
        deployment.gateway_log()
    )
    yield Run(deployment, spawn, tmp_path)


@pytest.fixture
async def http(deployment: Deployment) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(deployment.base, headers=AUTH, timeout=timeout) as session:
        yield session


@pytest.fixture
async def stores(deployment: Deployment) -> AsyncIterator[dict[str, Redis]]:
    """A client of each cell's primary, to look at where data is."""
    clients = {cell: deployment.redis(cell) for cell in CELLS}
    yield clients
    for client in clients.values():
        await client.aclose()


# ---- helpers ------------------------------------------------------------------------------


def businesses_in(cell: str, n: int, prefix: str) -> list[str]:
    """``n`` business ids starting with ``prefix`` that rendezvous hashing places in ``cell``."""
    found: list[str] = []
    i = 0
    while len(found) < n:
        business = f"{prefix}_{i}"
        if rendezvous(business, CELLS) == cell:
            found.append(business)
        i += 1
    return found


def event(business: str, n: int) -> dict[str, Any]:
    return {"business_id": business, "type": "payment.succeeded", "data": {"n": n}}


async def create_endpoint(http: aiohttp.ClientSession, business: str, url: str) -> dict[str, Any]:
    body = {"business_id": business, "url": url, "max_in_flight": 100}
    async with http.post("/v1/endpoints", json=body) as resp:
        assert resp.status == 201, await resp.text()
        return dict(await resp.json())


async def send(http: aiohttp.ClientSession, business: str, n: int) -> dict[str, Any]:
    async with http.post("/v1/events", json=event(business, n)) as resp:
        assert resp.status == 202, await resp.text()
        return dict(await resp.json())


def arrived(receiver: Receiver) -> collections.Counter[str]:
    return collections.Counter(r.headers["webhook-id"] for r in receiver.requests)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        await asyncio.sleep(0.05)


async def until_arrived(receiver: Receiver, wanted: set[str], timeout: float) -> None:
    """Until every event of ``wanted`` reached the receiver."""
    deadline = time.monotonic() + timeout
    while missing := wanted - set(arrived(receiver)):
        assert time.monotonic() < deadline, (
            f"{len(missing)} of {len(wanted)} events not delivered within {timeout:g} s"
        )
        await asyncio.sleep(0.05)


async def statuses(http: aiohttp.ClientSession, params: dict[str, str]) -> dict[str, str]:
    """Every listed delivery's status, by id, paging through ``GET /v1/deliveries``."""
    found: dict[str, str] = {}
    cursor = None
    for _ in range(1000):
        query = {**params, "limit": "200", **({"cursor": cursor} if cursor else {})}
        async with http.get("/v1/deliveries", params=query) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        found.update({d["id"]: d["status"] for d in page["data"]})
        cursor = page["next_cursor"]
        if not cursor:
            return found
    raise AssertionError("a listing that never ends")


@dataclasses.dataclass
class Sender:
    """Posts events one after another until stopped (or ``limit`` sent), round robin over
    ``businesses``; records each 202's view with when its request started and ended, and
    anything but a 202."""

    http: aiohttp.ClientSession
    businesses: list[str]
    limit: int = 3000
    sent: list[tuple[float, float, dict[str, Any]]] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)
    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    progressed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    finished: bool = False

    async def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set() and n < self.limit:
                business = self.businesses[n % len(self.businesses)]
                started = time.monotonic()
                async with self.http.post("/v1/events", json=event(business, 10_000 + n)) as resp:
                    if resp.status == 202:
                        self.sent.append((started, time.monotonic(), await resp.json()))
                    else:
                        self.refused.append(f"{resp.status} {await resp.text()}")
                self.progressed.set()
                n += 1
        finally:
            self.finished = True
            self.progressed.set()

    async def until_more(self, count: int, timeout: float = 30) -> None:
        """Until ``count`` more events than now are accepted (none refused meanwhile)."""
        wanted = len(self.sent) + count
        async with asyncio.timeout(timeout):
            while len(self.sent) < wanted:
                assert not self.refused, self.refused[:3]
                assert not self.finished, "the sender stopped"
                self.progressed.clear()
                await self.progressed.wait()

    def ids(self) -> list[str]:
        return [str(view["id"]) for _, _, view in self.sent]


@contextlib.asynccontextmanager
async def sending(sender: Sender) -> AsyncIterator[Sender]:
    task = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        sender.stop.set()
        async with asyncio.timeout(30):
            await task


# ---- 1. placement, and each cell's worker delivers its own --------------------------------


async def test_each_business_lives_in_one_cell_and_its_worker_alone_delivers_it(
    run: Run,
    http: aiohttp.ClientSession,
    stores: dict[str, Redis],
    receiver: MakeReceiver,
) -> None:
    r = await receiver()
    businesses = [f"place_{i}" for i in range(20)]
    placed = {b: rendezvous(b, CELLS) for b in businesses}
    assert set(placed.values()) == set(CELLS)  # both cells are used
    made: dict[str, list[str]] = {cell: [] for cell in CELLS}  # cell → delivery ids
    events: dict[str, str] = {}  # event id → cell
    endpoints: dict[str, str] = {}  # endpoint id → cell
    for business in businesses:
        cell = placed[business]
        endpoint = await create_endpoint(http, business, r.url)
        assert endpoint["id"].endswith("." + cell), (business, endpoint["id"])
        endpoints[endpoint["id"]] = cell
        for n in range(2):
            view = await send(http, business, n)
            assert view["id"].endswith("." + cell), (business, view["id"])
            assert view["deliveries"] and all(d.endswith("." + cell) for d in view["deliveries"])
            events[view["id"]] = cell
            made[cell] += view["deliveries"]
        async with http.get(f"/v1/businesses/{business}/cell") as resp:
            assert await resp.json() == {
                "business_id": business,
                "cell": cell,
                "previous_cells": [],
                "pinned": True,
                "pending_in_previous_cells": {},
            }
    # each event's body and each endpoint are in its business's cell's Redis, and only there
    for event_id, cell in events.items():
        holders = [c for c in CELLS if await stores[c].exists(keys.event_body(event_id))]
        assert holders == [cell], event_id
    for endpoint_id, cell in endpoints.items():
        holders = [c for c in CELLS if await stores[c].exists(keys.endpoint(endpoint_id))]
        assert holders == [cell], endpoint_id

    # only c2's worker: exactly c2's events arrive, c1's wait in c1
    c2_events = {e for e, c in events.items() if c == "c2"}
    second = run.worker("c2")
    await until_arrived(r, c2_events, ARRIVAL_BOUND)
    got = await statuses(http, {})
    assert set(arrived(r)) == c2_events
    assert {got[d] for d in made["c1"]} == {"pending"}, {got[d] for d in made["c1"]}

    # then c1's: the rest arrive; every event once
    first = run.worker("c1")
    await until_arrived(r, set(events), ARRIVAL_BOUND)

    async def all_recorded() -> bool:
        now = await statuses(http, {})
        return all(now[d] == "succeeded" for cell in CELLS for d in made[cell])

    await until(all_recorded, "every delivery recorded as succeeded", 30)
    assert arrived(r) == collections.Counter({e: 1 for e in events})

    # each worker logged the deliveries of its own cell, every one of them, and no other
    async def logged() -> bool:
        return set(first.succeeded()) >= set(made["c1"]) and set(second.succeeded()) >= set(
            made["c2"]
        )

    await until(logged, "each worker to log its deliveries", 10)
    for worker in (first, second):
        mine = worker.succeeded()
        assert all(d.endswith("." + worker.cell) for d in mine), (worker.cell, mine[:5])


# ---- 3. a move with 300 deliveries pending, while events keep arriving ---------------------


async def test_a_move_under_load_delivers_every_event_once_and_new_ones_land_in_the_new_cell(
    run: Run,
    http: aiohttp.ClientSession,
    stores: dict[str, Redis],
    receiver: MakeReceiver,
) -> None:
    deployment = run.deployment
    r = await receiver()
    [business] = businesses_in("c1", 1, "move")
    endpoint = await create_endpoint(http, business, r.url)
    assert endpoint["id"].endswith(".c1")
    # c2's worker runs throughout; c1's starts only after the move, so the backlog is pending
    # in c1 when the move happens
    run.worker("c2")
    backlog = await ingest_batch(http, [event(business, n) for n in range(300)], size=100)
    assert all(view["id"].endswith(".c1") for view in backlog)
    async with sending(Sender(http, [business])) as sender:
        await sender.until_more(20)
        move_started = time.monotonic()
        moved = await asyncio.to_thread(
            run_cli, "cells", "move", business, "c2", "--json", env=deployment.cli_env()
        )
        move_done = time.monotonic()
        assert moved.returncode == 0, moved.stderr
        await sender.until_more(20)
    assert not sender.refused, sender.refused[:3]
    view = json.loads(moved.stdout)
    assert {k: v for k, v in view.items() if k != "pending_in_previous_cell"} == {
        "business_id": business,
        "cell": "c2",
        "previous_cells": ["c1"],
        "moved": True,
        "from_cell": "c1",
        "endpoints": 1,
    }
    assert view["pending_in_previous_cell"] >= 300 + 20
    # before the move: c1; after it: c2 (while it ran, either)
    before = [v for started, ended, v in sender.sent if ended < move_started]
    after = [v for started, ended, v in sender.sent if started > move_done]
    assert len(before) >= 20 and len(after) >= 20
    assert all(v["id"].endswith(".c1") for v in before), [v["id"] for v in before][:3]
    assert all(v["id"].endswith(".c2") for v in after), [v["id"] for v in after][:3]
    assert all(v["id"].endswith((".c1", ".c2")) for _, _, v in sender.sent)
    for v in after:
        assert await stores["c2"].exists(keys.event_body(v["id"]))
        assert not await stores["c1"].exists(keys.event_body(v["id"]))
    # c2's worker delivers the events that landed in c2, and none of c1's: they wait for c1's
    in_c2 = {i for i in sender.ids() if i.endswith(".c2")}
    await until_arrived(r, in_c2, ARRIVAL_BOUND)
    assert set(arrived(r)) == in_c2
    # start it: everything arrives, once
    expected = {str(v["id"]) for v in backlog} | set(sender.ids())
    assert len(expected) == len(backlog) + len(sender.sent)
    run.worker("c1")
    await until_arrived(r, expected, ARRIVAL_BOUND)

    async def all_recorded() -> bool:
        found = await statuses(http, {"business_id": business})
        return len(found) == len(expected) and set(found.values()) == {"succeeded"}

    await until(all_recorded, "every delivery listed as succeeded, from both cells", 30)
    assert arrived(r) == collections.Counter({e: 1 for e in expected})
    for cell in CELLS:
        assert await awaited(stores[cell].scard(keys.endpoint_pending(endpoint["id"]))) == 0


# ---- 4. paging across cells while events arrive -------------------------------------------


async def indexed(store: Redis) -> set[str]:
    """Every delivery id in a cell's index of all deliveries."""
    return {m.decode().split(":", 1)[1] for m in await store.zrange(keys.INDEX_ALL, 0, -1)}


async def test_paging_across_cells_while_events_arrive_neither_skips_nor_repeats(
    run: Run,
    http: aiohttp.ClientSession,
    stores: dict[str, Redis],
    receiver: MakeReceiver,
) -> None:
    r = await receiver()  # no worker: the deliveries stay pending, listed all along
    ones, twos = businesses_in("c1", 2, "page"), businesses_in("c2", 2, "page")
    for business in [*ones, *twos]:
        await create_endpoint(http, business, r.url)
    mixed = [event([*ones, *twos][n % 4], n) for n in range(60)]
    made = await ingest_batch(http, mixed, size=100)  # one batch's items go to both cells
    assert {v["id"].rsplit(".", 1)[1] for v in made} == set(CELLS)
    async with sending(Sender(http, [ones[0], twos[0]])) as sender:
        await sender.until_more(2)
        # what exists now, read from both cells' Redis: every one must be listed
        existing = await indexed(stores["c1"]) | await indexed(stores["c2"])
        assert {d for v in made for d in v["deliveries"]} <= existing
        seen: list[tuple[str, str]] = []
        cursor = None
        for _ in range(1000):
            query = {"limit": "9", **({"cursor": cursor} if cursor else {})}
            async with http.get("/v1/deliveries", params=query) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            assert len(page["data"]) <= 9
            seen += [(d["created_at"], d["id"]) for d in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
            await sender.until_more(1)  # new deliveries in between every two pages
        else:
            raise AssertionError("paging never ended")
    assert not sender.refused, sender.refused[:3]
    ids = [d for _, d in seen]
    assert len(ids) == len(set(ids)), [d for d, n in collections.Counter(ids).items() if n > 1]
    assert existing <= set(ids), f"skipped: {sorted(existing - set(ids))[:5]}"
    assert seen == sorted(seen, reverse=True)  # newest first, across both cells and all pages
    assert {d.rsplit(".", 1)[1] for d in ids} == set(CELLS)
    assert len(sender.sent) >= len(seen) // 9  # events did arrive all along


# ---- 5. the command line ------------------------------------------------------------------


def hookgate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env, timeout=30)


async def test_bad_cell_configuration_exits_2_naming_the_problem(deployment: Deployment) -> None:
    # a port of its own: a process that wrongly started would not fail on the gateway's port
    base = {**deployment.env, "HOOKGATE_PORT": str(free_port())}
    good = f"redis://127.0.0.1:{deployment.c2_port}/0"
    bad = {
        f"c1={good},c1={good}": "cell 'c1' is listed twice",
        f"c1={good},c2=http://127.0.0.1:{deployment.c2_port}/0": "cell 'c2': unknown scheme",
        "c1=redis://:hunter2-secret@127.0.0.1:99999/0": "cell 'c1': not a valid URL",
        f"C1={good}": "cell name 'C1' must be",
    }
    cases = [
        (command, {**base, "HOOKGATE_CELLS": cells}, says)
        for cells, says in bad.items()
        for command in (("serve",), ("worker", "--cell", "c1"))
    ]
    cases += [
        (("worker", "--cell", "nope"), base, "--cell 'nope' is not a configured cell"),
        (("worker",), base, "HOOKGATE_CELLS lists 2 cells (c1, c2): name one with --cell"),
    ]
    done = await asyncio.gather(
        *(asyncio.to_thread(hookgate, *command, env=env) for command, env, _ in cases)
    )
    for (command, env, says), result in zip(cases, done, strict=True):
        where = (command, env["HOOKGATE_CELLS"].replace(deployment.group.url, "…"))
        assert result.returncode == 2, (where, result.stderr)
        assert says in result.stderr, (where, result.stderr)
        assert result.stderr.startswith("hookgate: "), (where, result.stderr)
        assert "hunter2-secret" not in result.stderr + result.stdout, where
        if command == ("worker", "--cell", "nope"):
            assert "the cells are c1, c2" in result.stderr


async def test_cells_ls_where_and_move_from_the_command_line(
    run: Run, http: aiohttp.ClientSession, receiver: MakeReceiver
) -> None:
    env = run.deployment.cli_env()
    r = await receiver()
    [business] = businesses_in("c2", 1, "cli")
    [unpinned] = businesses_in("c1", 1, "cli-none")
    await create_endpoint(http, business, r.url)

    listed = await asyncio.to_thread(hookgate, "cells", "ls", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(c["name"], c["first"], c["ready"]) for c in json.loads(listed.stdout)["data"]] == [
        ("c1", True, True),
        ("c2", False, True),
    ]
    table = await asyncio.to_thread(hookgate, "cells", "ls", env=env)
    rows = [line.split() for line in table.stdout.splitlines()]
    assert table.returncode == 0 and ["c1", "yes", "ready"] in rows and ["c2", "ready"] in rows

    where = await asyncio.to_thread(hookgate, "cells", "where", business, env=env)
    assert where.returncode == 0, where.stderr
    assert where.stdout == f"{business} lives in cell c2 (pinned in the directory)\n"
    where = await asyncio.to_thread(hookgate, "cells", "where", unpinned, env=env)
    assert where.stdout == f"{unpinned} lives in cell c1 (placed by hashing its id)\n"

    moved = await asyncio.to_thread(hookgate, "cells", "move", business, "c1", env=env)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.splitlines() == [
        f"moved {business} from cell c2 to cell c1: 1 endpoint copied, new events go to c1",
        "0 deliveries still to finish in cell c2 (its workers deliver them)",
    ]
    where = await asyncio.to_thread(hookgate, "cells", "where", business, "--json", env=env)
    assert json.loads(where.stdout) == {
        "business_id": business,
        "cell": "c1",
        "previous_cells": ["c2"],
        "pinned": True,
        "pending_in_previous_cells": {"c2": 0},
    }
    where = await asyncio.to_thread(hookgate, "cells", "where", business, env=env)
    assert where.stdout.splitlines() == [
        f"{business} lives in cell c1 (pinned in the directory)",
        "before: c2 (0 deliveries to finish)",
    ]
    assert (await send(http, business, 1))["id"].endswith(".c1")
    again = await asyncio.to_thread(hookgate, "cells", "move", business, "c1", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{business} already lives in cell c1: nothing moved\n"

    nowhere = await asyncio.to_thread(hookgate, "cells", "move", business, "nope", env=env)
    assert nowhere.returncode == 2, nowhere.stderr
    assert "'nope'" in nowhere.stderr and "c1, c2" in nowhere.stderr, nowhere.stderr
    where = await asyncio.to_thread(hookgate, "cells", "where", business, "--json", env=env)
    assert json.loads(where.stdout)["cell"] == "c1"  # the refused move changed nothing


# ---- 2. one cell's Redis killed -----------------------------------------------------------


async def test_a_dead_cell_refuses_only_its_own_businesses(
    run: Run, http: aiohttp.ClientSession, receiver: MakeReceiver
) -> None:
    deployment = run.deployment
    r = await receiver()
    ones, twos = businesses_in("c1", 4, "outage"), businesses_in("c2", 4, "outage")
    for business in [*ones, *twos]:
        await create_endpoint(http, business, r.url)
    workers = [run.worker("c1"), run.worker("c2")]
    await run.started(*workers)
    accepted: list[str] = []
    try:
        deployment.kill_c2()
        for n in range(3):
            for business in ones:
                view = await send(http, business, n)
                assert view["id"].endswith(".c1")
                accepted.append(view["id"])
            for business in twos:
                async with http.post("/v1/events", json=event(business, n)) as resp:
                    assert resp.status == 503, await resp.text()
                    assert resp.headers.get("Retry-After")
                    error = (await resp.json())["error"]
                assert error["code"] == "cell_unavailable", error
                assert error["details"] == {"cell": "c2"}, error
        # the directory is in c1: where a c2 business lives still answers
        async with http.get(f"/v1/businesses/{twos[0]}/cell") as resp:
            assert resp.status == 200 and (await resp.json())["cell"] == "c2"
        async with http.get("/readyz") as resp:
            assert resp.status == 200, await resp.text()
            ready = await resp.json()
        assert ready["status"] == "degraded", ready
        states = {c["name"]: c for c in ready["cells"]}
        assert (states["c1"]["first"], states["c1"]["ready"], states["c1"]["reason"]) == (
            True,
            True,
            None,
        )
        assert (states["c2"]["first"], states["c2"]["ready"]) == (False, False)
        assert states["c2"]["reason"], ready
        async with http.get("/metrics") as resp:
            assert resp.status == 200
            metrics = (await resp.text()).splitlines()
        assert 'hookgate_cell_up{cell="c2"} 0' in metrics
        assert 'hookgate_cell_up{cell="c1"} 1' in metrics
        # c1's businesses are delivered while c2 is down
        await until_arrived(r, set(accepted), ARRIVAL_BOUND)
        assert arrived(r) == collections.Counter({e: 1 for e in accepted})
        assert deployment.c2.poll() is not None  # and it was down all along
    finally:
        deployment.restart_c2()
    # c2 back (its AOF kept its endpoints): its businesses are served and delivered again

    async def c2_serves() -> bool:
        async with http.post("/v1/events", json=event(twos[0], 99)) as resp:
            if resp.status == 503:
                return False
            assert resp.status == 202, await resp.text()
            accepted.append((await resp.json())["id"])
            return True

    await until(c2_serves, "c2's business accepted after c2's Redis restarted", 30)
    assert accepted[-1].endswith(".c2")
    await until_arrived(r, set(accepted), ARRIVAL_BOUND)
    assert arrived(r) == collections.Counter({e: 1 for e in accepted})
    async with http.get("/readyz") as resp:
        assert (await resp.json())["status"] == "ready"
