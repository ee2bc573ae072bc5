"""Configuration, read once from the environment at start-up into a frozen ``Settings``."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gateway.core.cells import DEFAULT_CELL, CellSpec, parse_cells
from gateway.core.durations import parse_duration
from gateway.core.errors import ConfigError
from gateway.core.listen import SESSION_TTL
from gateway.core.redisurl import RedisTarget, parse_redis_url
from gateway.core.secretbox import SecretBox
from gateway.core.targets import IPNetwork, TargetRules, parse_allowed_networks

T = TypeVar("T")

# Never echoed in an error, not even when wrong (a Redis URL can hold a password).
SECRET_VARIABLES = frozenset(
    {
        "HOOKGATE_ADMIN_TOKEN",
        "HOOKGATE_SECRET_KEY",
        "HOOKGATE_METRICS_TOKEN",
        "HOOKGATE_REDIS_URL",
        "HOOKGATE_CELLS",
    }
)
DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h,10h"
# The most attempts one endpoint may hold open, whatever HOOKGATE_MAX_IN_FLIGHT says (the API
# schema's bound on ``max_in_flight`` too).
IN_FLIGHT_CEILING = 1000
MB = 1024 * 1024
# HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT's floor: one batch body of the largest size (16 MB, the
# API's ``BATCH_BODY_LIMIT``), or no batch could ever be read.
MIN_BODY_BYTES_IN_FLIGHT = 16 * MB
_SIZE_RE = re.compile(r"([0-9]{1,15})\s*(|B|KB|MB|GB)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": MB, "GB": 1024 * MB}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything hookgate's processes are configured with; passed down, never global."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # HOOKGATE_CELLS: several Redis groups, businesses spread over them (``core/cells.py``);
    # empty: one cell, ``default``, on redis_url.
    cells: tuple[CellSpec, ...] = dataclasses.field(default=(), repr=False)
    # Replicas that must hold an acknowledged write before the client hears 202 (Redis WAIT);
    # None: 1 behind Sentinel, 0 for a single Redis.
    redis_wait_replicas: int | None = None
    redis_wait_timeout: float = 0.1
    # Start on a Redis without AOF (a throw-away setup), with a warning, instead of refusing.
    allow_non_durable_redis: bool = False
    # How often the gateway re-reads Redis's eviction policy and persistence.
    redis_check_interval: float = 30.0
    admin_token: str = dataclasses.field(default="", repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    # Delays before attempts 2, 3, …; attempt 1 runs at once.
    retry_schedule: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    delivery_timeout: float = 15.0
    allow_private_targets: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    https_only: bool = True
    # Encrypts endpoint signing secrets at rest (AES-GCM); several keys, newest first.
    secret_key: str = dataclasses.field(default="", repr=False)
    log_format: str = "json"
    rotation_grace: float = 86400.0
    retention: float = 30 * 86400.0
    # How long audit entries are kept: longer than deliveries, as an audit trail is read
    # after the fact (an investigation, a merchant's dispute).
    audit_retention: float = 90 * 86400.0
    idempotency_ttl: float = 86400.0
    worker_concurrency: int = 100
    # How often an idle worker polls the queue: 10 ms keeps the time from 202 to the first
    # attempt near 10 ms, for about 100 cheap Redis calls a second per idle worker.
    worker_poll_delay: float = 0.01
    sweep_interval: float = 30.0
    # An endpoint with no successful attempt for this long while attempts fail is disabled.
    disable_after: float = 5 * 86400.0
    # A listen session (``hookgate listen``) no client has been connected to for this long is
    # deleted, and its pending deliveries cancelled.
    listen_session_ttl: float = SESSION_TTL
    # Jitter fraction applied to every retry delay; tests set 0 for exact timing.
    retry_jitter: float = 0.2
    # How long a client may take to send one request (its headers, then its body) and how long
    # an idle keep-alive connection stays open: a slow or silent client is cut off after it.
    request_timeout: float = 30.0
    # When set, GET /metrics needs `Authorization: Bearer <this>` (Prometheus's
    # `authorization` setting); when empty, /metrics is open, for scrapers inside the network.
    metrics_token: str = dataclasses.field(default="", repr=False)
    # Where clients reach the gateway, e.g. https://hooks.example.com behind a TLS proxy:
    # portal links are built on it and, when it is https, portal cookies are Secure. Empty:
    # taken from each request as the gateway sees it.
    public_url: str = ""
    # A worker touches this file every few seconds while Redis answers it; `hookgate worker
    # --check` (a container health check) reads its age.
    worker_heartbeat: str = dataclasses.field(
        default_factory=lambda: os.path.join(tempfile.gettempdir(), "hookgate-worker.heartbeat")
    )
    # Fan-out bounds: endpoints one business may have (businesses already above it keep theirs
    # but cannot add more), deliveries one request may create (a batch's items past it are
    # refused), and attempts one endpoint may hold open (a larger stored max_in_flight, from
    # before the bound, is clamped by the worker).
    max_endpoints_per_business: int = 50
    max_deliveries_per_request: int = 10_000
    max_in_flight: int = 100
    # Bytes of large request bodies (over 256 KB: batches) read and handled at once; a request
    # the rest cannot cover is refused (503 busy) before its body is read.
    max_body_bytes_in_flight: int = 64 * MB

    @property
    def targets(self) -> TargetRules:
        return TargetRules(self.https_only, self.allow_private_targets, self.allowed_networks)

    @property
    def redis(self) -> RedisTarget:
        return parse_redis_url(self.redis_url)

    @property
    def cell_specs(self) -> tuple[CellSpec, ...]:
        """The cells, the first holding the directory: HOOKGATE_CELLS, or one ``default`` cell
        on HOOKGATE_REDIS_URL."""
        return self.cells or (CellSpec(DEFAULT_CELL, self.redis_url),)

    def for_cell(self, cell: CellSpec) -> Settings:
        """These settings with ``cell``'s Redis group as the one Redis (what one cell's store
        and workers run on: its WAIT count follows whether the group is behind Sentinel)."""
        return dataclasses.replace(self, redis_url=cell.url, cells=())

    @property
    def wait_replicas(self) -> int:
        """Replicas a write must reach before it is acknowledged to a client."""
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis.is_sentinel else 0

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1

    @property
    def job_timeout(self) -> float:
        """arq's job limit: just above one HTTP attempt, so a dead worker's job recovers fast."""
        return self.delivery_timeout + 5.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, require_token: bool = False, require_key: bool = False
    ) -> Settings:
        """Settings from ``HOOKGATE_*`` variables; a bad value raises ``ConfigError`` naming it."""
        values: dict[str, Any] = {}

        def read(name: str, field: str, parse: Callable[[str], Any], accepts: str) -> None:
            raw = env.get(name)
            if raw is None or raw == "":
                return
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                # Never echo a credential, not even a wrong one.
                shown = name if name in SECRET_VARIABLES else f"{name}={raw!r}"
                raise ConfigError(f"{shown} is invalid: expected {accepts} ({exc})") from None

        read(
            "HOOKGATE_REDIS_URL",
            "redis_url",
            _redis_url,
            "redis://, rediss://, unix:// or redis+sentinel://host:port[,host:port…]/master[/db]",
        )
        read(
            "HOOKGATE_CELLS",
            "cells",
            parse_cells,
            "name=url pairs separated by commas, e.g. c1=redis://h1:6379/0,c2=redis://h2:6379/0",
        )
        read("HOOKGATE_REDIS_WAIT_REPLICAS", "redis_wait_replicas", _replicas, "a number 0-16")
        read(
            "HOOKGATE_REDIS_WAIT_TIMEOUT",
            "redis_wait_timeout",
            _positive,
            "a duration such as 100ms",
        )
        read(
            "HOOKGATE_REDIS_CHECK_INTERVAL",
            "redis_check_interval",
            _positive,
            "a duration such as 30s",
        )
        read(
            "HOOKGATE_ALLOW_NON_DURABLE_REDIS",
            "allow_non_durable_redis",
            parse_bool,
            "true or false",
        )
        read("HOOKGATE_ADMIN_TOKEN", "admin_token", _token, "at least 16 visible characters")
        read("HOOKGATE_HOST", "host", _nonempty, "a host name or address")
        read("HOOKGATE_PORT", "port", _port, "a port number 1-65535")
        read(
            "HOOKGATE_RETRY_SCHEDULE",
            "retry_schedule",
            parse_schedule,
            "comma-separated durations such as 5s,5m,30m",
        )
        read("HOOKGATE_DELIVERY_TIMEOUT", "delivery_timeout", _positive, "a duration such as 15s")
        read("HOOKGATE_ALLOW_PRIVATE_TARGETS", "allow_private_targets", parse_bool, "true or false")
        read(
            "HOOKGATE_ALLOWED_NETWORKS",
            "allowed_networks",
            parse_allowed_networks,
            "comma-separated CIDRs such as 10.1.0.0/16",
        )
        read("HOOKGATE_HTTPS_ONLY", "https_only", parse_bool, "true or false")
        read("HOOKGATE_SECRET_KEY", "secret_key", _secret_key, "base64 of 32 random bytes")
        read("HOOKGATE_LOG_FORMAT", "log_format", _log_format, "json or console")
        read("HOOKGATE_ROTATION_GRACE", "rotation_grace", _non_negative, "a duration such as 24h")
        read("HOOKGATE_RETENTION", "retention", _positive, "a duration such as 30d")
        read("HOOKGATE_AUDIT_RETENTION", "audit_retention", _positive, "a duration such as 90d")
        read("HOOKGATE_WORKER_CONCURRENCY", "worker_concurrency", _count, "a whole number >= 1")
        read("HOOKGATE_WORKER_POLL_DELAY", "worker_poll_delay", _positive, "a duration like 50ms")
        read("HOOKGATE_SWEEP_INTERVAL", "sweep_interval", _positive, "a duration such as 30s")
        read(
            "HOOKGATE_DISABLE_AFTER",
            "disable_after",
            _non_negative,
            "a duration like 5d (0s: never)",
        )
        read(
            "HOOKGATE_LISTEN_SESSION_TTL",
            "listen_session_ttl",
            _positive,
            "a duration such as 24h",
        )
        read("HOOKGATE_WORKER_HEARTBEAT", "worker_heartbeat", _nonempty, "a file path")
        read(
            "HOOKGATE_PUBLIC_URL",
            "public_url",
            _public_url,
            "an origin like https://hooks.example.com",
        )
        read("HOOKGATE_METRICS_TOKEN", "metrics_token", _token, "at least 16 visible characters")
        read("HOOKGATE_REQUEST_TIMEOUT", "request_timeout", _positive, "a duration such as 30s")
        read(
            "HOOKGATE_MAX_ENDPOINTS_PER_BUSINESS",
            "max_endpoints_per_business",
            _whole(1, 10_000),
            "a whole number 1-10000",
        )
        read(
            "HOOKGATE_MAX_DELIVERIES_PER_REQUEST",
            "max_deliveries_per_request",
            _whole(1, 1_000_000),
            "a whole number 1-1000000",
        )
        read(
            "HOOKGATE_MAX_IN_FLIGHT",
            "max_in_flight",
            _whole(1, IN_FLIGHT_CEILING),
            f"a whole number 1-{IN_FLIGHT_CEILING}",
        )
        read(
            "HOOKGATE_MAX_BODY_BYTES_IN_FLIGHT",
            "max_body_bytes_in_flight",
            parse_body_budget,
            f"a size such as 64MB, at least {MIN_BODY_BYTES_IN_FLIGHT // MB}MB",
        )
        settings = cls(**values)
        if require_token and not settings.admin_token:
            raise ConfigError(
                "HOOKGATE_ADMIN_TOKEN is required: set at least 16 visible characters"
            )
        if require_key and not settings.secret_key:
            raise ConfigError(
                "HOOKGATE_SECRET_KEY is required: base64 of 32 random bytes, e.g. from "
                "`python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'`"
            )
        return settings


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5s,5m"`` → ``(5.0, 300.0)``; at least one step, each a duration."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError("empty step")
    if len(parts) > 50:
        raise ValueError("more than 50 steps")
    return tuple(parse_duration(p) for p in parts)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _redis_url(text: str) -> str:
    parse_redis_url(text)  # raises ValueError saying what is wrong, never echoing a password
    return text


def _int(text: str) -> int:
    """A whole number; the error says so in words, not in Python's ``int()`` message."""
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("not a whole number") from None


def _replicas(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 16:
        raise ValueError("out of range")
    return value


def _public_url(text: str) -> str:
    parts = urlsplit(text.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("only scheme, host and port")
    return f"{parts.scheme}://{parts.netloc}"


def _token(text: str) -> str:
    if len(text) < 16 or not text.isprintable() or " " in text:
        raise ValueError("too short or not printable")
    return text


def _secret_key(text: str) -> str:
    SecretBox.from_text(text)  # raises ValueError saying what is wrong, never echoing the key
    return text


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("empty")
    return text.strip()


def _port(text: str) -> int:
    port = _int(text)
    if not 1 <= port <= 65535:
        raise ValueError("out of range")
    return port


def _positive(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be more than zero")
    return value


def _non_negative(text: str) -> float:
    return parse_duration(text)


def _count(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _int(text)
        if not low <= value <= high:
            raise ValueError("out of range")
        return value

    return parse


def parse_size(text: str) -> int:
    """``"64MB"`` → 67108864: a whole number of bytes, or of ``KB``, ``MB`` or ``GB`` (1024-based,
    as the limits are written: a 256 KB event, a 16 MB batch)."""
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError("not a size")
    return int(match[1]) * _SIZE_UNITS[match[2].upper()]


def parse_body_budget(text: str) -> int:
    value = parse_size(text)
    if value < MIN_BODY_BYTES_IN_FLIGHT:
        raise ValueError("smaller than one batch")
    return value


def _log_format(text: str) -> str:
    if text not in ("json", "console"):
        raise ValueError("unknown format")
    return text
