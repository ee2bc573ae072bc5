"""One HTTP attempt: POST, never follow redirects, read at most a few KB of the answer."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping

import aiohttp
from yarl import URL

from gateway.core.targets import TargetRules, check_url

from . import ssrf

RESPONSE_BODY_LIMIT = 4096
BLOCKED = "blocked_destination"


@dataclasses.dataclass(frozen=True)
class AttemptResult:
    status: int | None
    latency: float  # seconds
    error: str | None = None
    response_body: str = ""
    retry_after: str | None = None


def make_session(concurrency: int, rules: TargetRules) -> aiohttp.ClientSession:
    """The worker's one client session: pooled connections, no proxies from the environment,
    and (unless private targets are allowed) the SSRF guard on every address it connects to."""
    connector = ssrf.make_guarded_connector(
        rules.allowed_networks,
        rules.allow_private,
        limit=concurrency,
        limit_per_host=0,
        ttl_dns_cache=60,
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def url_host(url: str) -> str:
    return URL(url).raw_host or url


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    buf = bytearray()
    while len(buf) < RESPONSE_BODY_LIMIT:
        chunk = await response.content.read(RESPONSE_BODY_LIMIT - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def error_kind(error: str | None) -> str | None:
    """What a log line may say of an attempt's error: its kind (``HTTP 503``, ``timeout``,
    ``connection failed``, ``blocked``, an exception class), never the text after it, which
    can name the endpoint's host or quote what the client library read from the receiver.
    The attempt record keeps the whole text for the endpoint's owner."""
    if error is None or error.startswith("HTTP "):
        return error
    if error.startswith("timeout after "):
        return "timeout"
    return error.split(":", 1)[0][:64]


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    limit_s: float,
    rules: TargetRules,
) -> AttemptResult:
    """POST ``body``; every failure comes back as an ``AttemptResult``, never raised."""
    started = time.monotonic()
    if not rules.allow_private:
        # aiohttp connects to IP literals without asking the resolver: judge them here too.
        reason = check_url(url, rules.allowed_networks)
        if reason is not None:
            return AttemptResult(None, 0.0, f"{BLOCKED}: {url_host(url)} is {reason}")
    try:
        async with asyncio.timeout(limit_s):
            async with session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                raw = await _read_capped(response)
                return AttemptResult(
                    status=response.status,
                    latency=time.monotonic() - started,
                    response_body=raw.decode("utf-8", "replace"),
                    retry_after=response.headers.get("Retry-After"),
                    error=None if 200 <= response.status < 300 else f"HTTP {response.status}",
                )
    except TimeoutError:
        return AttemptResult(None, time.monotonic() - started, f"timeout after {limit_s:g}s")
    except aiohttp.ClientConnectorError as exc:
        blocked = ssrf.find_blocked(exc)
        if blocked is not None:
            return AttemptResult(None, time.monotonic() - started, f"{BLOCKED}: {blocked}")
        return AttemptResult(None, time.monotonic() - started, f"connection failed: {exc.os_error}")
    except aiohttp.ClientError as exc:
        return AttemptResult(None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
    except (OSError, ValueError) as exc:
        return AttemptResult(None, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
