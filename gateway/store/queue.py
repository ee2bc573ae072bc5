"""hookgate's side of arq: the only module that knows arq's key layout, job ids and job encoding.

hookgate writes arq jobs itself, from Lua, so that storing an event and queuing its first
attempts are one atomic step; the worker takes attempt jobs itself too
(``HookgateWorker.start_jobs``). Both therefore depend on arq's internals, pinned here to one
minor version and checked at start (``check_arq``). The Lua side of each contract is generated
from, or tested against, what this module says (``scripts.py``, ``tests/test_contracts.py``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import arq.constants
import arq.version

from gateway.core.errors import ConfigError

ARQ_VERSIONS = "0.28."  # what HookgateWorker's overrides of arq's Worker were written against

# arq's key layout, taken from arq itself so that a change there cannot go unseen here.
QUEUE: str = arq.constants.default_queue_name  # zset: job id → when it is due (ms)
JOB_KEY_PREFIX: str = arq.constants.job_key_prefix  # + job id: the encoded job
IN_PROGRESS_KEY_PREFIX: str = arq.constants.in_progress_key_prefix  # + job id: taken by a worker
RETRY_KEY_PREFIX: str = arq.constants.retry_key_prefix  # + job id: how many times it started
JOB_EXPIRY_MS: int = arq.constants.expires_extra_ms  # a job key outlives its due time by this

# The arq function of bulk replay batches: arq runs these jobs, and the worker registers it.
REPLAY_BATCH_FUNCTION = "replay_batch"
# The function named in attempt jobs. No arq function has this name, on purpose: the worker's
# take step (TAKE_AND_CLAIM) recognises attempt jobs by their id (``ATTEMPT_JOB_PREFIX``),
# claims them and runs the attempt itself, so arq's own runner never sees one. A plain arq
# worker would fail such a job as "function not found"; the name is there for arq's tools.
ATTEMPT_FUNCTION = "deliver"

ATTEMPT_JOB_PREFIX = "attempt:"
REPLAY_JOB_PREFIX = "replay:"
# attempt:{delivery}:{attempt}, with r{chain}: before the attempt for the nth replay chain and
# .{k} after it for the kth re-deferral (a busy endpoint, a rescue) of the same attempt.
_ATTEMPT_JOB_RE = re.compile(
    re.escape(ATTEMPT_JOB_PREFIX)
    + r"(?P<delivery>[^:]+):(?:r(?P<chain>[0-9]+):)?(?P<attempt>[0-9]+)(?:\.(?P<redefer>[0-9]+))?"
)
# What TAKE_AND_CLAIM tells attempt jobs apart by (lib/jobs.lua, delivery_of).
_ATTEMPT_DELIVERY_RE = re.compile(re.escape(ATTEMPT_JOB_PREFIX) + r"(dlv_[^:]+):")
_REPLAY_JOB_RE = re.compile(re.escape(REPLAY_JOB_PREFIX) + r"(?P<replay>[^:]+):(?P<batch>[0-9]+)")


@dataclasses.dataclass(frozen=True)
class AttemptJob:
    delivery_id: str
    attempt: int
    chain: int = 0
    redefer: int = 0


def attempt_job_id(delivery_id: str, attempt: int, chain: int = 0, redefer: int = 0) -> str:
    """The deterministic id of one attempt's job: enqueuing it twice is harmless (arq dedupes)."""
    name = f"{ATTEMPT_JOB_PREFIX}{delivery_id}:"
    if chain > 0:
        name += f"r{chain}:"
    name += str(attempt)
    if redefer > 0:
        name += f".{redefer}"
    return name


def parse_attempt_job_id(job_id: str) -> AttemptJob:
    match = _ATTEMPT_JOB_RE.fullmatch(job_id)
    if match is None:
        raise ValueError(f"not an attempt job id: {job_id!r}")
    return AttemptJob(
        delivery_id=match["delivery"],
        attempt=int(match["attempt"]),
        chain=int(match["chain"] or 0),
        redefer=int(match["redefer"] or 0),
    )


def delivery_of(job_id: str) -> str:
    """The delivery id inside an attempt job id; ValueError for any other job."""
    match = _ATTEMPT_DELIVERY_RE.match(job_id)
    if match is None:
        raise ValueError(f"not an attempt job id: {job_id!r}")
    return match[1]


def current_job_id(delivery_id: str, stored: str) -> str:
    """The full job id from what a delivery hash keeps in its ``job`` field: what follows
    ``attempt:{delivery_id}:``."""
    return f"{ATTEMPT_JOB_PREFIX}{delivery_id}:{stored}"


def replay_job_id(replay_id: str, batch: int) -> str:
    return f"{REPLAY_JOB_PREFIX}{replay_id}:{batch}"


def replay_batch_of(job_id: str) -> int:
    """The batch number inside a replay batch job id."""
    match = _REPLAY_JOB_RE.fullmatch(job_id)
    if match is None:
        raise ValueError(f"not a replay batch job id: {job_id!r}")
    return int(match["batch"])


def serialize_job(value: dict[str, Any]) -> bytes:
    """arq's job serializer for hookgate: JSON, never pickle (nothing in Redis is unpickled).
    The Lua scripts write the same JSON (``lib/jobs.lua``, ``arq_job``)."""
    return json.dumps(value, separators=(",", ":")).encode()


def deserialize_job(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("an arq job is a JSON object")
    return value


def in_progress_timeout(job_timeout: float) -> float:
    """Seconds a started job stays marked in progress (arq's ``in_progress_timeout_s`` when no
    function sets its own timeout): a dead worker's job runs again once the mark lapses."""
    return job_timeout + 10


def check_arq() -> None:
    """Refuses an arq whose internals hookgate was not written against."""
    version: str = arq.version.VERSION
    if not version.startswith(ARQ_VERSIONS):
        raise ConfigError(
            f"hookgate needs arq {ARQ_VERSIONS}x (its worker and Lua scripts rely on arq's "
            f"job and key layout); arq {version} is installed"
        )
