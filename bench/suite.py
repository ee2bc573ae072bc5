"""The benchmarks, run in order against one Redis and one gateway, each next to its baseline.

``python -m bench`` runs the full suite (about ten minutes on two cores) and writes
``docs/benchmarks.md``, ``docs/latency.png`` and ``bench/results.json``; ``--quick`` runs every
benchmark at a tiny size, writes nothing, and exits non-zero if any of them broke.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench import report
from bench.load import WRK_INSTALL, paced, percentile, post_batches, wrk
from bench.payloads import (
    BUSINESS_ID,
    EVENT,
    EVENT_BYTES,
    EVENT_SIZE,
    batch_bytes,
    event,
    spread_batch_bytes,
)
from bench.procs import AUTH, BenchError, Cluster, Proc, get_json, have, post_empty
from gateway.core.cells import rendezvous

ROOT = Path(__file__).resolve().parent.parent
NOWHERE = "http://127.0.0.1:9/hook"  # ingest-only runs: no worker ever calls it
MB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Sizes:
    wrk_seconds: float
    ingest_runs: int
    batches: int
    batch_runs: int
    deliveries: int
    delivery_runs: int
    latency_rate: float
    latency_seconds: float
    latency_runs: int
    sweep_rates: tuple[float, ...]
    sweep_seconds: float
    pending: int
    slow_receiver_delay: float
    rss_seconds: float
    ordering_keys: int
    ordering_per_key: int
    hot_key_events: int
    ordering_pending: int
    cell_runs: int  # the cells benchmark's single-event runs per gateway, alternating


FULL = Sizes(
    wrk_seconds=8,
    ingest_runs=3,
    batches=600,
    batch_runs=3,
    deliveries=20_000,
    delivery_runs=3,
    latency_rate=300,
    latency_seconds=10,
    latency_runs=3,
    sweep_rates=(100, 200, 450, 600, 1000),
    sweep_seconds=6,
    pending=100_000,
    slow_receiver_delay=2.0,
    rss_seconds=8,
    ordering_keys=1_000,
    ordering_per_key=10,
    hot_key_events=2_000,
    ordering_pending=10_000,
    cell_runs=5,
)
QUICK = Sizes(
    wrk_seconds=1,
    ingest_runs=1,
    batches=5,
    batch_runs=1,
    deliveries=300,
    delivery_runs=1,
    latency_rate=100,
    latency_seconds=1.5,
    latency_runs=1,
    sweep_rates=(200,),
    sweep_seconds=1,
    pending=2_000,
    slow_receiver_delay=0.5,
    rss_seconds=1,
    ordering_keys=50,
    ordering_per_key=4,
    hot_key_events=100,
    ordering_pending=500,
    cell_runs=1,
)


@dataclasses.dataclass
class Figure:
    """One line of the table: hookgate's figure next to its baseline from the same run."""

    bench: str
    metric: str
    unit: str
    value: float
    runs: list[float]
    baseline_name: str
    baseline: float | None
    baseline_runs: list[float]
    target: str
    met: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


@dataclasses.dataclass
class Context:
    cluster: Cluster
    sizes: Sizes
    quick: bool
    profile_dir: Path | None
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def log(message: str) -> None:
    print(f"  · {message}", flush=True)


# ---- profiling (optional, --profile DIR) -----------------------------------------------------


def start_profile(ctx: Context, proc: Proc, name: str, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling ``proc`` for ``seconds``; collapsed stacks land in the profile dir."""
    assert ctx.profile_dir is not None
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = ctx.profile_dir / f"{name}.txt"
    args = [exe, "record", "-p", str(proc.pid), "-d", str(int(seconds)), "-r", "200"]
    return subprocess.Popen(
        [*args, "-f", "raw", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def record_calls(ctx: Context, label: str, before: dict[str, int], count: int) -> None:
    """Redis commands per unit of work since ``before`` (scripts' inner commands included)."""
    after = ctx.cluster.command_calls()
    per = {k: (v - before.get(k, 0)) / count for k, v in after.items()}
    ctx.extras.setdefault("redis_calls", {})[label] = {
        k: round(v, 3) for k, v in sorted(per.items()) if v >= 0.005
    }


# ---- 1. single-event ingest --------------------------------------------------------------------


def bench_ingest(ctx: Context) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    if not have("wrk"):
        print(WRK_INSTALL, flush=True)
        ctx.extras["wrk_missing"] = True
        return []
    _, parse_url = cluster.start_baseline("parse_only")
    _, durable_url = cluster.start_baseline("naive_durable")
    events = cluster.gateway_url + "/v1/events"
    # hookgate twice: with the bootstrap admin token, and with an API key of the billing core's
    # scope (events:write), which the gateway checks against its short cache of key records.
    targets = {
        "parse_only": (parse_url, {}),
        "naive_durable": (durable_url, {}),
        "hookgate": (events, AUTH),
        "hookgate_key": (events, {}),
    }
    rps: dict[str, list[float]] = {name: [] for name in targets}
    for i in range(sizes.ingest_runs):
        for name, (url, headers) in targets.items():
            cluster.reset()
            profiler = None
            if name.startswith("hookgate"):
                cluster.add_endpoint(NOWHERE)
                if name == "hookgate_key":
                    key = cluster.create_api_key(["events:write"])
                    headers = {"Authorization": f"Bearer {key}"}
                if ctx.profile_dir and i == 0 and name == "hookgate":
                    assert cluster.gateway is not None
                    profiler = start_profile(ctx, cluster.gateway, "gateway-ingest", 6)
            calls = cluster.command_calls()
            result = wrk(url, EVENT_BYTES, headers, seconds=sizes.wrk_seconds)
            if profiler:
                profiler.wait(60)
            if name.startswith("hookgate"):
                stored = cluster.counter("events_ingested")
                if stored < result.requests:
                    raise BenchError(f"wrk saw {result.requests} answers, {stored} stored")
                if i == 0:
                    label = "single ingest" if name == "hookgate" else "single ingest, API key"
                    record_calls(ctx, f"{label}, per event", calls, stored)
            rps[name].append(result.rps)
            log(f"run {i + 1}: {name} {result.rps:,.0f} req/s ({result.socket_errors} errors)")
    value, parse, durable = (median(rps[n]) for n in ("hookgate", "parse_only", "naive_durable"))
    keyed = median(rps["hookgate_key"])
    common = {"bench": "single-event ingest", "unit": "req/s", "value": value}
    return [
        Figure(
            **common,
            metric="1 KB events, 64 connections",
            runs=rps["hookgate"],
            baseline_name="parse_only",
            baseline=parse,
            baseline_runs=rps["parse_only"],
            target="≥ 0.6 x parse_only",
            met=value >= 0.6 * parse,
        ),
        Figure(
            **common,
            metric="1 KB events, 64 connections",
            runs=rps["hookgate"],
            baseline_name="naive_durable",
            baseline=durable,
            baseline_runs=rps["naive_durable"],
            target="> 1 x naive_durable",
            met=value > durable,
        ),
        Figure(
            bench="single-event ingest",
            metric="1 KB events, 64 connections, API key (events:write)",
            unit="req/s",
            value=keyed,
            runs=rps["hookgate_key"],
            baseline_name="admin token",
            baseline=value,
            baseline_runs=rps["hookgate"],
            target="≥ 0.95 x admin token",
            met=keyed >= 0.95 * value,
        ),
    ]


# ---- 2. batch ingest -------------------------------------------------------------------------


def bench_batch(ctx: Context) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    _, naive_url = cluster.start_baseline("naive_batch")
    body = batch_bytes(100)
    hook_url = cluster.gateway_url + "/v1/events/batch"
    rates: dict[str, list[float]] = {"naive_batch": [], "hookgate": []}
    for i in range(sizes.batch_runs):
        for name, url, headers in (("naive_batch", naive_url, {}), ("hookgate", hook_url, AUTH)):
            cluster.reset()
            if name == "hookgate":
                cluster.add_endpoint(NOWHERE)
            profiler = None
            if name == "hookgate" and ctx.profile_dir and i == 0:
                assert cluster.gateway is not None
                profiler = start_profile(ctx, cluster.gateway, "gateway-batch", 3)
            run = post_batches(url, body, headers, batches=sizes.batches, concurrency=8)
            accepted, seconds = asyncio.run(run)
            if profiler:
                profiler.wait(60)
            if name == "hookgate" and cluster.counter("events_ingested") != accepted:
                raise BenchError("the batch answers and the stored count differ")
            rates[name].append(accepted / seconds)
            log(f"run {i + 1}: {name} {accepted / seconds:,.0f} events/s")
    value = median(rates["hookgate"])
    return [
        Figure(
            bench="batch ingest",
            metric="100-event batches, 8 connections",
            unit="events/s",
            value=value,
            runs=rates["hookgate"],
            baseline_name="naive_batch",
            baseline=median(rates["naive_batch"]),
            baseline_runs=rates["naive_batch"],
            target="≥ 20,000 events/s",
            met=value >= 20_000,
        )
    ]


# ---- 2b. replicated ingest: a 202 that waits for a replica (WAIT 1) -------------------------


def bench_replicated(ctx: Context) -> list[Figure]:
    """Single-event and batch ingest through two gateways on the same Redis and its one local
    replica: one answers after ``WAIT 1``, the other without it (the baseline). Same
    topology, same machine, runs interleaved: the ratio is what waiting for a replica costs."""
    cluster = ctx.cluster
    cluster.start_replica()
    try:
        return _replicated_figures(ctx)
    finally:
        cluster.stop_replica()


def _replicated_figures(ctx: Context) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    # A 1 s WAIT timeout, not the default 100 ms: on a shared 2-core machine the replica (its
    # AOF included) can fall more than 100 ms behind eight concurrent 100-event batches, and
    # the gateway then rightly answers 503; this measures what waiting costs, not refusals.
    waiting = cluster.start_extra_gateway(
        "gateway-wait-1", HOOKGATE_REDIS_WAIT_REPLICAS="1", HOOKGATE_REDIS_WAIT_TIMEOUT="1s"
    )
    plain = cluster.start_extra_gateway("gateway-wait-0", HOOKGATE_REDIS_WAIT_REPLICAS="0")
    gateways = {"WAIT 0": plain, "WAIT 1": waiting}
    figures: list[Figure] = []
    if have("wrk"):
        rps: dict[str, list[float]] = {name: [] for name in gateways}
        for i in range(sizes.ingest_runs):
            for name, base in gateways.items():
                cluster.reset()
                cluster.add_endpoint(NOWHERE)
                result = wrk(base + "/v1/events", EVENT_BYTES, AUTH, seconds=sizes.wrk_seconds)
                rps[name].append(result.rps)
                log(f"run {i + 1}: single, {name}: {result.rps:,.0f} req/s")
        figures.append(
            Figure(
                bench="replicated ingest",
                metric="single 1 KB events, 64 connections, one local replica",
                unit="req/s",
                value=median(rps["WAIT 1"]),
                runs=rps["WAIT 1"],
                baseline_name="WAIT 0",
                baseline=median(rps["WAIT 0"]),
                baseline_runs=rps["WAIT 0"],
                target="(reported)",
                met=None,
            )
        )
    else:
        print(WRK_INSTALL, flush=True)
    body = batch_bytes(100)
    rates: dict[str, list[float]] = {name: [] for name in gateways}
    for i in range(sizes.batch_runs):
        for name, base in gateways.items():
            cluster.reset()
            cluster.add_endpoint(NOWHERE)
            run = post_batches(
                base + "/v1/events/batch", body, AUTH, batches=sizes.batches, concurrency=8
            )
            accepted, seconds = asyncio.run(run)
            rates[name].append(accepted / seconds)
            log(f"run {i + 1}: batch, {name}: {accepted / seconds:,.0f} events/s")
    value, baseline = median(rates["WAIT 1"]), median(rates["WAIT 0"])
    figures.append(
        Figure(
            bench="replicated ingest",
            metric="100-event batches, 8 connections, one local replica",
            unit="events/s",
            value=value,
            runs=rates["WAIT 1"],
            baseline_name="WAIT 0",
            baseline=baseline,
            baseline_runs=rates["WAIT 0"],
            target="≥ 0.8 x WAIT 0",
            met=value >= 0.8 * baseline,
        )
    )
    return figures


# ---- 2c. cells: two Redis groups beside one ----------------------------------------------------

CELLS = ("c1", "c2")
CELL_BUSINESSES = 20  # each with an endpoint, so each is pinned in the directory


def cell_businesses(cells: tuple[str, ...], each: int) -> dict[str, list[str]]:
    """``each`` business ids per cell that rendezvous hashing places there (where the directory
    pins them at their first endpoint): the same even spread in every run."""
    found: dict[str, list[str]] = {cell: [] for cell in cells}
    n = 0
    while any(len(ids) < each for ids in found.values()):
        business = f"bus_{n:05d}"
        home = found[rendezvous(business, cells)]
        if len(home) < each:
            home.append(business)
        n += 1
    return found


def bench_cells(ctx: Context) -> list[Figure]:
    """Batch ingest into a gateway over two cells (two redis-servers, businesses spread over
    both) against the same into a gateway over one; and what routing costs: single events
    into the two-cell gateway, all of them for a business of its first cell, against the
    one-cell gateway. Same processes, runs alternating, in the same run."""
    cluster = ctx.cluster
    started = len(cluster.procs)
    second = cluster.start_cell_server("redis-c2")
    try:
        return _cells_figures(ctx, second)
    finally:
        for proc in cluster.procs[started:]:  # the gateways, before the Redis they use
            proc.stop(timeout=10)
        cluster.stop_cell_servers()


def _cells_figures(ctx: Context, second: str) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    c2 = cluster.cell_servers[-1][1]
    first = f"redis://127.0.0.1:{cluster.redis_port}/0"
    placed = cell_businesses(CELLS, CELL_BUSINESSES // len(CELLS))
    businesses = [b for turn in zip(*placed.values(), strict=True) for b in turn]
    gateways = {
        "one cell": cluster.start_extra_gateway("gateway-one-cell"),
        "two cells": cluster.start_extra_gateway(
            "gateway-two-cells", HOOKGATE_CELLS=f"c1={first},c2={second}"
        ),
    }

    def prepare(base: str) -> None:
        """Both Redis emptied, then an endpoint for every business (which pins it)."""
        cluster.reset()
        for business in businesses:
            body = {"business_id": business, "url": NOWHERE, "max_in_flight": 100}
            cluster.request("POST", "/v1/endpoints", body, base=base)

    def stored() -> tuple[int, int]:
        return cluster.counter("events_ingested"), cluster.counter("events_ingested", c2)

    def alternating(i: int) -> list[str]:
        return list(gateways) if i % 2 == 0 else list(reversed(gateways))

    prepare(gateways["two cells"])
    for cell, ids in placed.items():
        for business in ids:
            where = cluster.request(
                "GET", f"/v1/businesses/{business}/cell", None, gateways["two cells"]
            )
            if where["cell"] != cell or not where["pinned"]:
                raise BenchError(f"{business} placed {where}, wanted pinned in {cell}")

    body = spread_batch_bytes(businesses, 100)
    rates: dict[str, list[float]] = {name: [] for name in gateways}
    for i in range(sizes.batch_runs):
        for name in alternating(i):
            base = gateways[name]
            prepare(base)
            run = post_batches(
                base + "/v1/events/batch", body, AUTH, batches=sizes.batches, concurrency=8
            )
            accepted, seconds = asyncio.run(run)
            in_c1, in_c2 = stored()
            if in_c1 + in_c2 != accepted:
                raise BenchError(f"{accepted} accepted, {in_c1} + {in_c2} stored")
            if name == "two cells" and min(in_c1, in_c2) < 0.4 * accepted:
                raise BenchError(f"not spread over both cells: {in_c1} and {in_c2} events")
            rates[name].append(accepted / seconds)
            log(
                f"run {i + 1}: batch, {name}: {accepted / seconds:,.0f} events/s "
                f"({in_c1:,} + {in_c2:,} events)"
            )
    value, baseline = median(rates["two cells"]), median(rates["one cell"])
    figures = [
        Figure(
            bench="cells",
            metric=(
                f"100-event batches, 8 connections, {len(businesses)} businesses "
                "over 2 cells (2 redis-servers)"
            ),
            unit="events/s",
            value=value,
            runs=rates["two cells"],
            baseline_name="one cell",
            baseline=baseline,
            baseline_runs=rates["one cell"],
            target="report (2 cores: gateway and both Redis share them)",
            met=None,
            note="the same batches into one gateway over one redis-server, runs alternating",
        )
    ]

    if not have("wrk"):
        print(WRK_INSTALL, flush=True)
        return figures
    # single events, all of one business of the first cell: what routing costs (placement
    # lookup, grouping by cell), with the second cell's Redis idle
    single = json.dumps(event(business_id=placed[CELLS[0]][0])).encode()
    rps: dict[str, list[float]] = {name: [] for name in gateways}
    for i in range(sizes.cell_runs):
        for name in alternating(i):
            base = gateways[name]
            prepare(base)
            result = wrk(base + "/v1/events", single, AUTH, seconds=sizes.wrk_seconds)
            in_c1, in_c2 = stored()
            if in_c1 < result.requests or in_c2:
                raise BenchError(f"wrk saw {result.requests} answers; {in_c1} + {in_c2} stored")
            rps[name].append(result.rps)
            log(f"run {i + 1}: single, {name}: {result.rps:,.0f} req/s")
    value, baseline = median(rps["two cells"]), median(rps["one cell"])
    paired = list(zip(rps["two cells"], rps["one cell"], strict=True))
    figures.append(
        Figure(
            bench="cells",
            metric="single 1 KB events, 64 connections, 2 cells, all in the first",
            unit="req/s",
            value=value,
            runs=rps["two cells"],
            baseline_name="one cell",
            baseline=baseline,
            baseline_runs=rps["one cell"],
            target="≥ 0.95 x one cell",
            met=value >= 0.95 * baseline,
            note=(
                "the cost of routing: the same Redis does the work in both; each round's own "
                "ratio (its two runs back to back): "
                + ", ".join(f"{t / o:.2f}" for t, o in paired)
                + f"; their median {median([t / o for t, o in paired]):.2f}"
            ),
        )
    )
    return figures


# ---- 3. delivery throughput --------------------------------------------------------------------


def wait_received(receiver: str, count: int, timeout: float, worker: Proc | None = None) -> Any:
    """Receiver stats once ``count`` distinct webhooks arrived; BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        stats = get_json(receiver + "/stats")
        if stats["unique"] >= count:
            return stats
        if worker is not None:
            worker.check()
        if time.monotonic() > deadline:
            tail = "" if worker is None else f"; worker log:\n{worker.tail(1500)}"
            raise BenchError(
                f"{stats['unique']} of {count} webhooks arrived in {timeout:g} s{tail}"
            )
        time.sleep(0.1)


def arrival_rate(stats: Any) -> float:
    return float((stats["count"] - 1) / max(stats["last"] - stats["first"], 1e-9))


def queue_deliveries(cluster: Cluster, count: int) -> None:
    """``count`` events for the one endpoint through the batch API, the worker not running."""
    url = cluster.gateway_url + "/v1/events/batch"
    accepted, _ = asyncio.run(
        post_batches(url, batch_bytes(100), AUTH, batches=count // 100, concurrency=4)
    )
    if accepted != count or cluster.pending() != count:
        raise BenchError(f"queued {cluster.pending()} deliveries, wanted {count}")


def bench_delivery(ctx: Context) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    n = sizes.deliveries
    _, receiver = cluster.start_receiver()
    rates: dict[str, list[float]] = {"deliver": [], "hookgate": []}
    for i in range(sizes.delivery_runs):
        post_empty(receiver + "/reset")
        client = [sys.executable, "-m", "bench.baselines", "deliver", receiver + "/hook"]
        done = subprocess.run(
            [*client, str(n), "100"], capture_output=True, text=True, timeout=300, cwd=ROOT
        )
        if done.returncode != 0 or done.stdout.strip() != str(n):
            raise BenchError(f"the deliver baseline failed: {done.stdout}{done.stderr[-2000:]}")
        rates["deliver"].append(arrival_rate(wait_received(receiver, n, 30)))

        cluster.reset()
        cluster.add_endpoint(receiver + "/hook", max_in_flight=100)
        before = cluster.used_memory()
        queue_deliveries(cluster, n)
        post_empty(receiver + "/reset")
        calls = cluster.command_calls()
        worker = cluster.start_worker()
        profiler = None
        if ctx.profile_dir and i == 0:
            profiler = start_profile(ctx, worker, "worker-delivery", 8)
        stats = wait_received(receiver, n, 60 + n / 50, worker)
        rates["hookgate"].append(arrival_rate(stats))
        deadline = time.monotonic() + 60
        while cluster.counter("deliveries_succeeded") < n:
            worker.check()
            if time.monotonic() > deadline:
                raise BenchError("deliveries arrived but were not all recorded as succeeded")
            time.sleep(0.1)
        if profiler:
            profiler.wait(60)
        if i == 0:
            ctx.extras["delivered_bytes"] = (cluster.used_memory() - before) / n
            record_calls(ctx, "delivery, per attempt", calls, n)
        worker.stop()
        if stats["count"] != n:
            log(f"{stats['count'] - n} duplicate arrivals (at-least-once)")
        base_rate, rate = rates["deliver"][-1], rates["hookgate"][-1]
        log(f"run {i + 1}: deliver {base_rate:,.0f}/s, hookgate {rate:,.0f}/s")
    value = median(rates["hookgate"])
    base = median(rates["deliver"])
    return [
        Figure(
            bench="delivery throughput",
            metric=f"{n:,} queued, one worker, loopback 204 receiver",
            unit="deliveries/s",
            value=value,
            runs=rates["hookgate"],
            baseline_name="deliver",
            baseline=base,
            baseline_runs=rates["deliver"],
            target="≥ 0.5 x deliver",
            met=value >= 0.5 * base,
        )
    ]


# ---- 3b. ordered delivery per key --------------------------------------------------------------


def ordering_batches(keys: list[str], per_key: int, size: int = 100) -> list[bytes]:
    """``per_key`` 1 KB events of each key, keys interleaved (key k's event j at position
    j * len(keys) + k), as batch bodies of ``size`` events."""
    items = [{**EVENT, "ordering_key": key} for _ in range(per_key) for key in keys]
    return [
        json.dumps({"events": items[i : i + size]}).encode() for i in range(0, len(items), size)
    ]


async def post_bodies(url: str, bodies: list[bytes], concurrency: int = 4) -> int:
    """POSTs each batch body once, ``concurrency`` at once; returns how many events were
    accepted."""
    accepted = 0
    todo = iter(bodies)
    hdrs = {"Content-Type": "application/json", **AUTH}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal accepted
            for body in todo:
                async with session.post(url, data=body, headers=hdrs) as resp:
                    reply = await resp.json()
                    if resp.status != 202 or reply.get("rejected"):
                        raise BenchError(f"{url}: {resp.status} {str(reply)[:500]}")
                    accepted += int(reply["accepted"])

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return accepted


def add_endpoint(cluster: Cluster, url: str, *, ordered: bool) -> str:
    reply = cluster.request(
        "POST",
        "/v1/endpoints",
        {"business_id": BUSINESS_ID, "url": url, "max_in_flight": 100, "ordered": ordered},
    )
    return str(reply["id"])


def queue_keyed(cluster: Cluster, bodies: list[bytes], count: int, *, due: int) -> None:
    """The events of ``bodies`` through the batch API, the worker not running; checks that
    ``count`` were stored and ``due`` deliveries have a job (on an ordered endpoint, one per
    key: the others wait behind their key's head)."""
    accepted = asyncio.run(post_bodies(cluster.gateway_url + "/v1/events/batch", bodies))
    stored, jobs = cluster.counter("events_ingested"), cluster.pending()
    if accepted != count or stored != count or jobs != due:
        raise BenchError(
            f"{accepted} accepted, {stored} stored, {jobs} due; wanted {count}, {count}, {due}"
        )


def deliver_queued(cluster: Cluster, receiver: str, count: int, timeout: float) -> Any:
    """Starts one worker on the queued deliveries; the receiver's stats once ``count`` arrived
    and were recorded as succeeded, the worker stopped again."""
    post_empty(receiver + "/reset")
    worker = cluster.start_worker()
    stats = wait_received(receiver, count, timeout, worker)
    deadline = time.monotonic() + 60
    while cluster.counter("deliveries_succeeded") < count:
        worker.check()
        if time.monotonic() > deadline:
            raise BenchError("deliveries arrived but were not all recorded as succeeded")
        time.sleep(0.05)
    worker.stop()
    if stats["count"] != count:
        log(f"{stats['count'] - count} duplicate arrivals (at-least-once)")
    return stats


def check_order(stats: Any, count: int, keys: int, *, ordered: bool) -> None:
    """BenchError unless every delivery of an ordered endpoint came with its key and sequence
    number and none arrived before its predecessor (and none of an unordered one did)."""
    if stats["out_of_order"]:
        raise BenchError(f"{stats['out_of_order']} deliveries arrived before their predecessor")
    want = (count, keys) if ordered else (0, 0)
    if (min(stats["sequenced"], count), stats["keys"]) != want:
        raise BenchError(
            f"{stats['sequenced']} arrivals of {stats['keys']} keys carried a sequence number; "
            f"wanted {want[0]} of {want[1]}"
        )


def bench_ordering(ctx: Context) -> list[Figure]:
    """Ordered delivery per key: many keys against the same load through an unordered
    endpoint; one hot key against the ceiling of one request in flight; Redis bytes per
    pending event, ordered against unordered."""
    cluster, sizes = ctx.cluster, ctx.sizes
    _, receiver = cluster.start_receiver()
    hook = receiver + "/hook"
    k, per_key, hot = sizes.ordering_keys, sizes.ordering_per_key, sizes.hot_key_events
    keys = [f"key-{i:04d}" for i in range(k)]
    n = k * per_key
    bodies = ordering_batches(keys, per_key)

    keyed: dict[str, list[float]] = {"unordered": [], "ordered": []}
    for i in range(sizes.delivery_runs):
        for name in keyed:
            ordered = name == "ordered"
            cluster.reset()
            add_endpoint(cluster, hook, ordered=ordered)
            queue_keyed(cluster, bodies, n, due=k if ordered else n)
            calls = cluster.command_calls()
            stats = deliver_queued(cluster, receiver, n, 60 + n / 50)
            check_order(stats, n, k, ordered=ordered)
            if ordered and i == 0:
                record_calls(ctx, "ordered delivery, per attempt", calls, n)
            keyed[name].append(arrival_rate(stats))
        log(
            f"run {i + 1}: {k:,} keys x {per_key}: unordered {keyed['unordered'][-1]:,.0f}/s, "
            f"ordered {keyed['ordered'][-1]:,.0f}/s"
        )

    hot_bodies = ordering_batches(["hot"], hot)
    single: dict[str, list[float]] = {"one in flight": [], "hookgate": []}
    for i in range(sizes.delivery_runs):
        post_empty(receiver + "/reset")
        client = [sys.executable, "-m", "bench.baselines", "deliver", hook, str(hot), "1", "hot"]
        done = subprocess.run(client, capture_output=True, text=True, timeout=300, cwd=ROOT)
        if done.returncode != 0 or done.stdout.strip() != str(hot):
            raise BenchError(f"the deliver baseline failed: {done.stdout}{done.stderr[-2000:]}")
        stats = wait_received(receiver, hot, 30)
        check_order(stats, hot, 1, ordered=True)
        single["one in flight"].append(arrival_rate(stats))

        cluster.reset()
        add_endpoint(cluster, hook, ordered=True)
        queue_keyed(cluster, hot_bodies, hot, due=1)
        stats = deliver_queued(cluster, receiver, hot, 60 + hot / 10)
        check_order(stats, hot, 1, ordered=True)
        single["hookgate"].append(arrival_rate(stats))
        log(
            f"run {i + 1}: one key x {hot:,}: hookgate {single['hookgate'][-1]:,.0f}/s, "
            f"one in flight {single['one in flight'][-1]:,.0f}/s"
        )

    m = k * max(1, sizes.ordering_pending // k)
    pending_bodies = ordering_batches(keys, m // k)
    per_event: dict[str, float] = {}
    for name in ("unordered", "ordered"):
        ordered = name == "ordered"
        cluster.reset()
        add_endpoint(cluster, hook, ordered=ordered)
        before = cluster.used_memory()
        queue_keyed(cluster, pending_bodies, m, due=k if ordered else m)
        per_event[name] = (cluster.used_memory() - before) / m
        log(f"{m:,} events pending, {name}: {per_event[name]:,.0f} bytes each in Redis")

    value, base = median(keyed["ordered"]), median(keyed["unordered"])
    return [
        Figure(
            bench="ordering",
            metric=f"{k:,} keys x {per_key} events, key-interleaved, one worker",
            unit="deliveries/s",
            value=value,
            runs=keyed["ordered"],
            baseline_name="unordered",
            baseline=base,
            baseline_runs=keyed["unordered"],
            target="≥ 0.8 x unordered",
            met=value >= 0.8 * base,
        ),
        Figure(
            bench="ordering",
            metric=f"one hot key, {hot:,} events, one worker",
            unit="events/s",
            value=median(single["hookgate"]),
            runs=single["hookgate"],
            baseline_name="one in flight",
            baseline=median(single["one in flight"]),
            baseline_runs=single["one in flight"],
            target="report (one in flight is the floor of ordering)",
            met=None,
            note="baseline: a bare client POSTing to the same receiver one request at a time",
        ),
        Figure(
            bench="ordering",
            metric=f"Redis bytes per pending 1 KB event, {m:,} events over {k:,} keys",
            unit="bytes/event",
            value=per_event["ordered"],
            runs=[per_event["ordered"]],
            baseline_name="unordered",
            baseline=per_event["unordered"],
            baseline_runs=[per_event["unordered"]],
            target="report",
            met=None,
            note="used_memory delta, worker stopped: one job per key, the rest waiting",
        ),
    ]


# ---- 4. latency --------------------------------------------------------------------------------


def latency_run(
    cluster: Cluster, receiver: str, rate: float, seconds: float, *, direct: bool
) -> dict[str, float]:
    """One paced run; latencies (ms) from the 202 (or, direct, the send) to the first arrival."""
    post_empty(receiver + "/reset")
    url = receiver + "/hook" if direct else cluster.gateway_url + "/v1/events"
    sent = asyncio.run(
        paced(url, EVENT_BYTES, {} if direct else AUTH, rate=rate, seconds=seconds, direct=direct)
    )
    if sent.errors > 0.01 * rate * seconds:
        raise BenchError(f"{sent.errors} requests failed at {rate:g}/s")
    wait_received(receiver, len(sent.stamps), 60 + rate * seconds / 100)
    arrivals = get_json(receiver + "/arrivals")
    missing = [k for k in sent.stamps if k not in arrivals]
    if missing:
        raise BenchError(f"{len(missing)} events never reached the receiver")
    ms = [(arrivals[k] - t) * 1000 for k, t in sent.stamps.items()]
    return {
        "offered": rate,
        "achieved": sent.achieved,
        "events": len(ms),
        "errors": sent.errors,
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def bench_latency(ctx: Context) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    _, receiver = cluster.start_receiver()
    cluster.reset()
    cluster.add_endpoint(receiver + "/hook", max_in_flight=100)
    worker = cluster.start_worker()
    rate = sizes.latency_rate
    floor: list[dict[str, float]] = []
    runs: list[dict[str, float]] = []
    for i in range(sizes.latency_runs):
        floor.append(latency_run(cluster, receiver, rate, sizes.latency_seconds, direct=True))
        runs.append(latency_run(cluster, receiver, rate, sizes.latency_seconds, direct=False))
        worker.check()
        r = runs[-1]
        log(
            f"run {i + 1}: {rate:g}/s p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms "
            f"(floor p50 {floor[-1]['p50']:.2f} ms p99 {floor[-1]['p99']:.2f} ms)"
        )
    sweep = [{k: median([r[k] for r in runs]) for k in runs[0]}]
    for other in sizes.sweep_rates:
        sweep.append(latency_run(cluster, receiver, other, sizes.sweep_seconds, direct=False))
        s = sweep[-1]
        log(f"sweep {other:g}/s: p50 {s['p50']:.1f} ms p99 {s['p99']:.1f} ms")
    worker.stop()
    ctx.extras["sweep"] = sorted(sweep, key=lambda s: s["offered"])
    figures = []
    for p, limit in (("p50", 30.0), ("p99", 150.0)):
        value = median([r[p] for r in runs])
        figures.append(
            Figure(
                bench="latency",
                metric=f"{p}, {rate:g} events/s, 202 → first attempt arrives",
                unit="ms",
                value=value,
                runs=[r[p] for r in runs],
                baseline_name="direct POST",
                baseline=median([r[p] for r in floor]),
                baseline_runs=[r[p] for r in floor],
                target=f"≤ {limit:g} ms",
                met=value <= limit,
            )
        )
    return figures


# ---- 5. memory ---------------------------------------------------------------------------------


def rss_samples(proc: Proc, seconds: float, every: float = 0.25) -> list[int]:
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proc.check()
        samples.append(proc.rss())
        time.sleep(every)
    return samples


def bench_memory(ctx: Context) -> list[Figure]:
    cluster, sizes = ctx.cluster, ctx.sizes
    n = sizes.pending
    _, receiver = cluster.start_receiver(delay=sizes.slow_receiver_delay)
    cluster.reset()
    cluster.add_endpoint(receiver + "/hook", max_in_flight=100)
    worker = cluster.start_worker()
    time.sleep(1 if ctx.quick else 3)
    idle = max(rss_samples(worker, 1))
    worker.stop()

    before = cluster.used_memory()
    queue_deliveries(cluster, n)
    pending_bytes = (cluster.used_memory() - before) / n
    log(f"{n:,} events stored: {pending_bytes:,.0f} bytes each in Redis")

    worker = cluster.start_worker()
    wait_received(receiver, 1, 30, worker)
    time.sleep(1 if ctx.quick else 3)
    samples = rss_samples(worker, sizes.rss_seconds)
    still = cluster.pending()
    worker.stop()
    if still < (0.5 if ctx.quick else 0.9) * n:
        raise BenchError(f"only {still} of {n} deliveries were still pending while measuring")
    peak = max(samples)
    log(f"worker RSS idle {idle / MB:.1f} MB, with {still:,} pending {peak / MB:.1f} MB")
    figures = [
        Figure(
            bench="memory",
            metric=f"worker RSS, {n:,} deliveries pending, 100 in flight",
            unit="MB",
            value=peak / MB,
            runs=[s / MB for s in samples],
            baseline_name="idle worker",
            baseline=idle / MB,
            baseline_runs=[idle / MB],
            target="≤ 200 MB",
            met=peak <= 200 * MB,
            note=f"peak of {len(samples)} samples; {still:,} still pending at the end",
        ),
        Figure(
            bench="memory",
            metric="Redis bytes per 1 KB event, delivery pending",
            unit="bytes",
            value=pending_bytes,
            runs=[pending_bytes],
            baseline_name="event body",
            baseline=EVENT_SIZE,
            baseline_runs=[EVENT_SIZE],
            target="≤ 3 KB",
            met=pending_bytes <= 3072,
            note=f"used_memory delta over {n:,} events, 1 endpoint each",
        ),
    ]
    delivered = ctx.extras.get("delivered_bytes")
    if delivered is not None:
        figures.append(
            Figure(
                bench="memory",
                metric="Redis bytes per 1 KB event, delivered (attempt log kept)",
                unit="bytes",
                value=delivered,
                runs=[delivered],
                baseline_name="event body",
                baseline=EVENT_SIZE,
                baseline_runs=[EVENT_SIZE],
                target="≤ 3 KB",
                met=delivered <= 3072,
                note="used_memory delta in the delivery benchmark, after every success",
            )
        )
    return figures


# ---- 6. verifier (bench/bench_verifier.py, maintained with the verifier) ----------------------


def bench_verifier(ctx: Context) -> list[Figure]:
    script = Path(__file__).with_name("bench_verifier.py")
    if not script.exists():
        print("bench/bench_verifier.py is not there yet; skipping the verifier benchmark")
        ctx.extras["verifier_lines"] = []
        return []
    args = [sys.executable, "-m", "bench.bench_verifier"]
    if ctx.quick and "--number" in script.read_text():
        args += ["--repeats", "1", "--number", "500"]
    done = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, timeout=60 if ctx.quick else 300
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    for line in lines:
        print(f"    {line}")
    if done.returncode != 0:
        raise BenchError(f"bench_verifier exited with {done.returncode}:\n{done.stderr[-2000:]}")
    ctx.extras["verifier_lines"] = lines
    return verifier_figures(lines)


def verifier_figures(lines: list[str]) -> list[Figure]:
    """The ``hookgate_verifier`` rows of bench_verifier's tables, against their ``floor`` row."""
    figures: list[Figure] = []
    section = ""
    floor: float | None = None
    for line in lines:
        row = re.match(r"\s+(floor|hookgate_verifier)\s+([\d.]+)\s", line)
        if not line.startswith(" ") and "(" in line:
            section, floor = line.split("(")[0].strip(), None
        elif row and row.group(1) == "floor":
            floor = float(row.group(2))
        elif row and floor:
            value = float(row.group(2))
            figures.append(
                Figure(
                    bench="verifier",
                    metric=f"verify, {section}",
                    unit="µs",
                    value=value,
                    runs=[value],
                    baseline_name="floor",
                    baseline=floor,
                    baseline_runs=[floor],
                    target="≤ 1.2 x floor",
                    met=value <= 1.2 * floor,
                )
            )
    return figures


BENCHMARKS: dict[str, Callable[[Context], list[Figure]]] = {
    "ingest": bench_ingest,
    "batch": bench_batch,
    "cells": bench_cells,
    "delivery": bench_delivery,
    "ordering": bench_ordering,
    "latency": bench_latency,
    "memory": bench_memory,
    "verifier": bench_verifier,
    # last: the replica it attaches leaves a replication backlog in the primary's memory
    "replicated": bench_replicated,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, writes nothing")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not write docs/ or results"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="py-spy the gateway under ingest and the worker under delivery (implies --no-write)",
    )
    parser.add_argument(
        "--worker-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="extra HOOKGATE_* setting for the worker, e.g. HOOKGATE_WORKER_POLL_DELAY=5ms",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, AOF)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    figures: list[Figure] = []
    broken: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="hookgate-bench-"))
    ctx: Context | None = None
    try:
        with Cluster(workdir) as cluster:
            try:
                cluster.start_gateway()
            except BenchError as exc:
                print(f"!! could not start hookgate serve: {exc}", file=sys.stderr)
                return 1
            cluster.worker_env = dict(item.split("=", 1) for item in args.worker_env)
            ctx = Context(cluster, sizes, args.quick, args.profile)
            for name in names:
                print(f"== {name}", flush=True)
                t0 = time.monotonic()
                try:
                    got = BENCHMARKS[name](ctx)
                except Exception as exc:
                    broken.append(name)
                    print(f"!! {name} broke: {exc}", flush=True)
                    traceback.print_exc(limit=-3)
                    got = []
                finally:
                    for proc in [p for p in cluster.procs if p is not cluster.gateway]:
                        proc.stop(timeout=10)
                    cluster.procs = [p for p in cluster.procs if p is cluster.gateway]
                for figure in got:
                    print("   " + report.line(figure), flush=True)
                figures += got
                print(f"   ({time.monotonic() - t0:.0f} s)", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work dir kept: {workdir}")
    elapsed = time.monotonic() - started
    assert ctx is not None
    print()
    print(report.table(figures))
    if ctx.extras.get("redis_calls"):
        calls = report.calls_table(ctx.extras["redis_calls"])
        print(f"\nRedis commands per unit of work:\n{calls}")
    print(f"\n{len(figures)} figures in {elapsed:.0f} s; broken: {', '.join(broken) or 'none'}")
    if not (args.quick or args.no_write or args.profile or broken or args.only):
        report.write(ROOT, figures, ctx.extras, sizes, elapsed, ctx.cluster.worker_env)
        print("wrote docs/benchmarks.md, docs/latency.png and bench/results.json")
    return 1 if broken else 0
