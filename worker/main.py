"""Building and running the arq worker from hookgate's settings."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from arq import Worker
from arq.connections import ArqRedis
from arq.worker import func
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core.catalog import load_catalog
from gateway.core.cells import DEFAULT_CELL
from gateway.core.logs import error_fields
from gateway.core.model import Claim
from gateway.core.settings import Settings
from gateway.store import queue
from gateway.store.connection import check_at_start, connect
from gateway.store.listen import ListenRelay
from gateway.store.recovery import Recovery
from gateway.store.store import Store

from . import http
from .delivery import BUSY_DEFER_MS, Deps, attempt, make_finisher, replay_batch
from .heartbeat import heartbeat_forever

log = structlog.get_logger("hookgate.worker")

TRIM_INTERVAL = 3600.0  # seconds between trims of the delivery indices
# A worker with at most this many attempts open (counting the one whose outcome was just
# recorded) takes the jobs that outcome made due at once; a busier one leaves them to its polls.
IDLE_JOBS = 2
# How long after arq would hand a dead worker's job to another worker the sweeper waits
# before it decides the job is gone: room for that worker's poll to take it.
SWEEP_MARGIN = 5.0


async def sweep_forever(store: Store, settings: Settings, listen: ListenRelay) -> None:
    """Re-enqueue pending deliveries whose job vanished (a crash between steps, an expired job),
    and delete the listen sessions no client has been connected to for
    ``HOOKGATE_LISTEN_SESSION_TTL``.

    A delivery is looked at once its job is overdue by more than arq's recovery time for a
    dead worker, so a job that is merely slow or waiting for a crashed worker is left alone.
    """
    grace_ms = int((queue.in_progress_timeout(settings.job_timeout) + SWEEP_MARGIN) * 1000)
    next_trim = 0.0
    while True:
        try:
            rescued = await store.rescue_due(int(time.time() * 1000) - grace_ms)
            if rescued:
                log.warning("hookgate.sweeper.rescued", count=rescued)
            for endpoint_id in await listen.expire_sessions(settings.listen_session_ttl):
                log.info("hookgate.sweeper.listen_session_expired", endpoint_id=endpoint_id)
            if time.monotonic() >= next_trim:
                trimmed = await store.trim_indices()
                next_trim = time.monotonic() + TRIM_INTERVAL
                if trimmed:
                    log.info("hookgate.sweeper.trimmed", index_entries=trimmed)
        except RedisError as exc:
            log.warning("hookgate.sweeper.failed", **error_fields(exc))
        await asyncio.sleep(settings.sweep_interval)


class HookgateWorker(Worker):
    """arq's Worker, taking and claiming the jobs of one poll in a single atomic Redis step.

    arq starts each job with four sequential round trips and reads it in a fifth, and the
    attempt's claim was a sixth: with many short delivery jobs that was most of the worker's
    CPU. Here one script call per poll takes the due jobs and claims their attempts, attempts
    run straight from their claims, and concurrent attempts record their outcomes in one
    round trip (group commit). Other jobs (replay batches) and everything else (signals,
    health checks, shutdown) are arq's own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._backoff = 0.0
        self._backlog = False  # the last poll filled every free slot: more may be due
        self._room = asyncio.Event()  # set when a quarter of the slots are free
        self._taking: set[asyncio.Task[None]] = set()
        self._to_take: list[bytes] = []

    async def _poll_iteration(self) -> None:
        """arq's poll, surviving a Redis outage: arq lets the error end the process; here the
        worker waits (backing off to 5 s) and goes on once Redis answers again. Jobs it had
        started stay queued under arq's in-progress keys and run again when those expire."""
        try:
            await super()._poll_iteration()
            # Under a backlog, take more as soon as a quarter of the slots are free instead of
            # after the poll delay (for up to a second: arq's loop then comes round again).
            deadline = time.monotonic() + 1.0
            while self._backlog and self.allow_pick_jobs and time.monotonic() < deadline:
                if self.job_counter > self.max_jobs * 3 // 4:
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), self.poll_delay_s)
                await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            self._backoff = min(max(self._backoff * 2, 0.1), 5.0)
            log.warning(
                "hookgate.worker.redis_unavailable",
                **error_fields(exc),
                retry_in=self._backoff,
            )
            await asyncio.sleep(self._backoff)
        else:
            self._backoff = 0.0

    def take_now(self, job_id: str) -> None:
        """Takes a job a recorded outcome made due (an ordering key's next delivery) now,
        instead of at the next poll, while the worker is nearly idle (``IDLE_JOBS``): one hot
        key's deliveries then follow each other at the pace of the receiver, not of the poll
        (~600/s instead of ~100/s). A busier worker leaves them to its polls, which come round
        at once under load and take many jobs per step: taking each one apart cost a third of
        the throughput of many keys at once. The jobs of outcomes recorded together (one FINISH
        round trip) are taken together. If they cannot be (no free slot, shutting down, Redis
        unavailable), the poll takes them."""
        if not self.allow_pick_jobs or self.job_counter > IDLE_JOBS:
            return  # busy: its polls come round at once, and take many jobs per step
        self._to_take.append(job_id.encode())
        if len(self._to_take) == 1:
            task = asyncio.get_running_loop().create_task(self._take_soon())
            self._taking.add(task)
            task.add_done_callback(self._taking.discard)

    async def _take_soon(self) -> None:
        await asyncio.sleep(0)  # the other attempts recorded in the same round trip join in
        jobs, self._to_take = self._to_take, []
        free = self.max_jobs - self.job_counter
        if free > 0:
            with contextlib.suppress(RedisError, OSError):
                await self._start(jobs, free)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        free = self.max_jobs - self.job_counter
        if free <= 0 or not job_ids:
            return
        self._backlog = await self._start(job_ids, free) >= free

    async def _start(self, job_ids: list[bytes], free: int) -> int:
        """Takes up to ``free`` of ``job_ids`` in one step and runs them; returns how many."""
        deps: Deps = self.ctx["hookgate"]
        taken = await deps.store.take_and_claim(
            job_ids,
            wanted=free,
            in_progress_ms=int(self.in_progress_timeout_s * 1000),
            busy_defer_ms=BUSY_DEFER_MS // 2,
        )
        for job_id, what in taken:
            await self.sem.acquire()
            self.job_counter += 1
            if isinstance(what, Claim):
                run: Coroutine[Any, Any, Any] = self._attempt(deps, job_id, what)
            else:
                run = self.run_job(job_id, what)
            task = self.loop.create_task(run)
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task
        return len(taken)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self.job_counter <= self.max_jobs * 3 // 4:
            self._room.set()

    async def _attempt(self, deps: Deps, job_id: str, claim: Claim) -> None:
        """One claimed attempt. Whatever happens to it, its job stays queued until its outcome
        is recorded, so an attempt cut short (shutdown, a hung Redis call past arq's job
        timeout, a bug) runs again once its in-progress mark lapses."""
        delivery_id = queue.delivery_of(job_id)
        try:
            async with asyncio.timeout(self.job_timeout_s):
                outcome = await attempt(deps, delivery_id, job_id, claim)
        except asyncio.CancelledError:
            return  # shutdown: the job stays queued and runs again once its mark lapses
        except TimeoutError:
            log.warning("hookgate.worker.attempt_timed_out", job_id=job_id)
            return
        except Exception:  # never let one attempt stop the poll loop (it reads each result)
            log.exception("hookgate.worker.attempt_crashed", job_id=job_id)
            return
        if outcome is not None:
            self.jobs_complete += 1


def build_worker(
    settings: Settings, redis: Redis, *, handle_signals: bool = False, cell: str = DEFAULT_CELL
) -> Worker:
    """An arq Worker delivering hookgate's queue in one cell, with JSON jobs (never pickle)."""
    queue.check_arq()
    store = Store(redis, settings, load_catalog(), cell=cell)
    listen = ListenRelay(store)
    tasks: list[asyncio.Task[None]] = []

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["hookgate"] = Deps(
            store=store,
            recovery=Recovery(store),
            session=http.make_session(settings.worker_concurrency, settings.targets),
            schedule=settings.retry_schedule,
            jitter=settings.retry_jitter,
            timeout=settings.delivery_timeout,
            rules=settings.targets,
            finisher=make_finisher(store),
            take_now=worker.take_now,
            listen=listen,
        )
        tasks.append(asyncio.create_task(sweep_forever(store, settings, listen)))
        tasks.append(asyncio.create_task(heartbeat_forever(redis, settings.worker_heartbeat)))
        log.info("hookgate.worker.started", concurrency=settings.worker_concurrency, cell=cell)

    async def shutdown(ctx: dict[str, Any]) -> None:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(OSError):
            os.unlink(settings.worker_heartbeat)  # a stopped worker is not a healthy one
        deps: Deps | None = ctx.get("hookgate")
        if deps is not None:
            await deps.session.close()
        log.info("hookgate.worker.stopped")

    worker = HookgateWorker(
        functions=[
            func(replay_batch, name=queue.REPLAY_BATCH_FUNCTION, max_tries=20),
        ],
        queue_name=queue.QUEUE,
        redis_pool=redis,
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=handle_signals,
        job_serializer=queue.serialize_job,
        job_deserializer=queue.deserialize_job,
        max_jobs=settings.worker_concurrency,
        # Jobs running here or on other workers stay at the head of the queue until they end:
        # read well past them, or a few slow attempts hide every due job behind them.
        queue_read_limit=settings.worker_concurrency * 4,
        job_timeout=settings.job_timeout,
        poll_delay=settings.worker_poll_delay,
        keep_result=0,
        # On SIGTERM: stop taking jobs, let attempts in flight finish, then stop.
        job_completion_wait=int(settings.delivery_timeout) + 1,
        health_check_interval=60,
        log_results=False,
    )
    return worker


async def stop_worker(worker: Worker, task: asyncio.Task[None]) -> None:
    """Waits for a stopping worker and closes it.

    A job task cancelled before its function started ends as CancelledError; its job is still
    on the queue (arq runs it again once the in-progress key expires), so that is not an error.
    """
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for job_task in list(worker.tasks.values()):
        with contextlib.suppress(asyncio.CancelledError):
            await job_task
    worker.tasks.clear()
    await worker.close()


async def run_worker(settings: Settings, cell: str = DEFAULT_CELL) -> None:
    """Runs a worker of ``cell`` (whose Redis group ``settings`` names) until SIGINT/SIGTERM;
    in-flight attempts finish or are left to arq. Refuses (``ConfigError``) a Redis that could
    silently drop data."""
    redis = connect(settings.redis, ArqRedis)
    try:
        await check_at_start(redis, allow_non_durable=settings.allow_non_durable_redis)
    except BaseException:
        await redis.aclose()
        raise
    worker = build_worker(settings, redis, cell=cell)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.handle_sig_wait_for_completion, sig)
    await stop_worker(worker, asyncio.create_task(worker.async_run()))
