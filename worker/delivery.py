"""One delivery attempt, from its claim to its recorded outcome, and the replay-batch task.

The worker claims attempts while it takes their jobs (``HookgateWorker.start_jobs``) and runs
``attempt`` for each. It catches everything: a failed attempt is recorded and rescheduled by
hookgate itself. An outcome that cannot be recorded (Redis unreachable) leaves the job queued
under its in-progress mark, so the attempt runs again once the mark lapses: a duplicate,
never a lost delivery.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog
from arq import Retry
from redis.exceptions import RedisError

from gateway.core.listen import is_listen_url
from gateway.core.logs import error_fields
from gateway.core.model import Claim, Finished
from gateway.core.targets import TargetRules
from gateway.store import queue
from gateway.store.groupcommit import GroupCommit
from gateway.store.listen import Attempt, ListenRelay, UnreadableOutcome
from gateway.store.metrics import latency_bucket
from gateway.store.recovery import Recovery
from gateway.store.store import Store

from . import http, retry, signing

log = structlog.get_logger("hookgate.delivery")

# When an endpoint's in-flight cap is full, the attempt waits about this long (ms).
BUSY_DEFER_MS = 1000
FINISH_TRIES = 5
FINISH_GROUP = 128  # attempts' outcomes recorded in one script call (~30 µs of Redis each)


class _Unsendable(Exception):
    """This attempt cannot be sent; it is recorded as a failure and retried on the schedule."""


@dataclasses.dataclass
class Deps:
    store: Store
    recovery: Recovery
    session: aiohttp.ClientSession
    schedule: tuple[float, ...]
    jitter: float
    timeout: float
    rules: TargetRules
    # Concurrent attempts' FINISH scripts share one round trip.
    finisher: GroupCommit[Finished, str]
    # Attempts of listen sessions go through it instead of HTTP.
    listen: ListenRelay
    # Takes a job that a recorded outcome made due (the worker's ``take_now``); by default
    # nothing: the next poll takes it.
    take_now: Callable[[str], None] = lambda job_id: None


def make_finisher(store: Store) -> GroupCommit[Finished, str]:
    return GroupCommit(store.finish_many, FINISH_GROUP)


async def attempt(deps: Deps, delivery_id: str, job_id: str, claim: Claim) -> str | None:
    """Makes a claimed attempt and records what comes next; returns the outcome.

    None when the outcome could not be recorded (Redis unreachable through every try): the
    job is then still queued, and runs again once its in-progress mark lapses.
    """
    about = {
        "delivery_id": delivery_id,
        "job_id": job_id,
        "event_id": claim.event_id,
        "endpoint_id": claim.endpoint_id,
        "attempt": claim.attempt,
    }
    timestamp = int(time.time())
    try:
        if claim.secret_error is not None:
            raise _Unsendable(claim.secret_error)
        headers = signing.build_headers(
            msg_id=claim.event_id,
            timestamp=timestamp,
            body=claim.body,
            secrets=claim.secrets,
            custom=claim.headers,
            ordering=(claim.ordering_key, claim.sequence) if claim.sequence else None,
        )
        if is_listen_url(claim.url):
            result = await _relay(deps, delivery_id, job_id, claim, headers)
        else:
            result = await http.post(
                deps.session, claim.url, claim.body, headers, limit_s=deps.timeout, rules=deps.rules
            )
    except asyncio.CancelledError:
        raise  # shutdown: the job runs again; the endpoint slot's lease runs out
    except _Unsendable as exc:
        result = http.AttemptResult(None, 0.0, str(exc))
    except Exception as exc:  # a bug must cost an attempt, never the delivery
        log.exception("hookgate.delivery.internal_error", **about)
        result = http.AttemptResult(None, 0.0, f"internal error: {type(exc).__name__}")

    decision = retry.decide(
        status=result.status,
        attempt=claim.attempt,
        schedule=deps.schedule,
        jitter=deps.jitter,
        unit=random.random(),
        retry_after=retry.parse_retry_after(result.retry_after, time.time()),
    )
    now = time.time()
    done = Finished(
        delivery_id=delivery_id,
        job_id=job_id,
        record={
            "attempt": claim.attempt,
            "replay": claim.chain,
            "at": timestamp,
            "status_code": result.status,
            "latency_ms": round(result.latency * 1000, 2),
            "error": result.error,
            "response_body": result.response_body,
            "outcome": decision.outcome,
        },
        outcome=decision.outcome,
        next_at_ms=int((now + decision.delay) * 1000),
        latency_bucket=latency_bucket(result.latency),
        latency_s=result.latency,
    )
    for i in range(FINISH_TRIES):
        try:
            state, *made_due = (await deps.finisher.submit(done)).split(" ")
            break
        except RedisError as exc:
            log.warning(
                "hookgate.delivery.record_failed",
                **about,
                **error_fields(exc),
                try_=i + 1,
            )
            await asyncio.sleep(0.2 * 2**i)
    else:
        return None
    for next_job in made_due:  # an ordering key's next delivery: taken now, not at its poll
        deps.take_now(next_job)
    # A failed attempt is a warning whatever happens next; ``recorded`` says only whether the
    # attempt was written (a stale or vanished delivery is not), never how the attempt went.
    log.log(
        logging.INFO if decision.outcome == "succeeded" else logging.WARNING,
        f"hookgate.delivery.{decision.outcome}",
        **about,
        status_code=result.status,
        latency_ms=done.record["latency_ms"],
        error=http.error_kind(result.error),
        next_in_s=round(decision.delay, 3) if decision.outcome == "retry" else None,
        recorded=state == "ok",
        not_recorded=None if state == "ok" else state,
    )
    return decision.outcome


async def _relay(
    deps: Deps, delivery_id: str, job_id: str, claim: Claim, headers: dict[str, str]
) -> http.AttemptResult:
    """An attempt of a listen session: handed to the gateway holding the session's WebSocket,
    which has its client forward it to the developer's receiver and gives back what came of it
    (``gateway/store/listen.py``). An outcome that does not come back within the delivery
    timeout is a timeout, as for an HTTP endpoint that never answers.

    The client's error text is recorded with the attempt, behind ``listen:`` so a log line,
    which says only an error's kind (``http.error_kind``), never quotes what a client sent."""
    started = time.monotonic()
    attempt = Attempt(
        job_id=job_id,
        delivery_id=delivery_id,
        event_id=claim.event_id,
        event_type=claim.event_type,
        attempt=claim.attempt,
        headers=headers,
        body=claim.body,
        timeout=deps.timeout,
    )
    try:
        outcome = await deps.listen.forward(claim.endpoint_id, attempt)
    except UnreadableOutcome:
        return http.AttemptResult(None, time.monotonic() - started, "listen: unreadable outcome")
    except RedisError as exc:  # by kind only: a Redis error can quote what it was sent
        log.warning(
            "hookgate.delivery.listen_relay_failed",
            delivery_id=delivery_id,
            endpoint_id=claim.endpoint_id,
            **error_fields(exc),
        )
        return http.AttemptResult(None, time.monotonic() - started, "listen: store unavailable")
    if outcome is None:
        return http.AttemptResult(
            None,
            time.monotonic() - started,
            f"timeout after {deps.timeout:g}s: no outcome from hookgate listen",
        )
    latency = outcome.latency_ms / 1000
    if outcome.status is None:
        return http.AttemptResult(None, latency, f"listen: {outcome.error or 'no answer'}")
    ok = 200 <= outcome.status < 300
    return http.AttemptResult(
        status=outcome.status,
        latency=latency,
        error=None if ok else f"HTTP {outcome.status}",
        response_body=outcome.body,
    )


async def replay_batch(ctx: dict[str, Any], replay_id: str) -> str:
    """Re-enqueues the next batch of a bulk replay; the batch script queues the one after."""
    deps: Deps = ctx["hookgate"]
    job_id: str = ctx["job_id"]
    batch = queue.replay_batch_of(job_id)
    try:
        state = await deps.recovery.run_replay_batch(replay_id, batch)
    except RedisError as exc:
        log.warning("hookgate.replay.batch_failed", replay_id=replay_id, **error_fields(exc))
        raise Retry(defer=1) from exc
    log.info("hookgate.replay.batch", replay_id=replay_id, batch=batch, state=state)
    return state
