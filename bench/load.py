"""Load generators: wrk for single events, an aiohttp client for batches and paced load."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping

import aiohttp

from bench.procs import BenchError

WRK_INSTALL = (
    "wrk is not installed, so the single-event ingest benchmark is skipped. Install it with "
    "`sudo apt-get update && sudo apt-get install -y wrk` (Debian/Ubuntu), `brew install wrk` "
    "(macOS), or build it from https://github.com/wg/wrk, then rerun `make bench`."
)


@dataclasses.dataclass(frozen=True)
class WrkResult:
    rps: float
    requests: int
    non_2xx: int
    socket_errors: int


def wrk(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    seconds: float,
    connections: int = 64,
    threads: int = 1,
) -> WrkResult:
    """``wrk`` POSTing ``body`` for ``seconds``; fails if any answer is not 2xx."""
    if b"]]" in body:
        raise ValueError("the body cannot be a Lua long string")
    lines = ['wrk.method = "POST"', f"wrk.body = [[{body.decode()}]]"]
    for name, value in {"Content-Type": "application/json", **headers}.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    fd, script = tempfile.mkstemp(suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "-s", script, url]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        os.unlink(script)
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if done.returncode != 0 or rps is None or total is None:
        raise BenchError(f"wrk failed ({done.returncode}): {out}{done.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result = WrkResult(
        rps=float(rps.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )
    if result.non_2xx:
        raise BenchError(f"{url}: {result.non_2xx} answers were not 2xx:\n{out}")
    return result


async def post_batches(
    url: str, body: bytes, headers: Mapping[str, str], *, batches: int, concurrency: int
) -> tuple[int, float]:
    """POSTs ``body`` ``batches`` times, ``concurrency`` at once; returns (accepted, seconds)."""
    accepted = 0
    left = batches
    hdrs = {"Content-Type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal accepted, left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=hdrs) as resp:
                    reply = await resp.json()
                    if resp.status != 202 or reply.get("rejected"):
                        raise BenchError(f"{url}: {resp.status} {str(reply)[:500]}")
                    accepted += int(reply["accepted"])

        started = time.monotonic()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return accepted, time.monotonic() - started


@dataclasses.dataclass
class Paced:
    """What a paced run sent: request id → when the answer (or the send, for ``sent``) came."""

    stamps: dict[str, float]
    offered: float
    achieved: float
    errors: int


async def paced(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    rate: float,
    seconds: float,
    direct: bool = False,
) -> Paced:
    """An open-loop load of ``rate`` requests/s for ``seconds``, each its own request.

    Against hookgate (``direct=False``) each stamp is when the ``202`` arrived, keyed by the
    event id it returned. With ``direct=True`` the requests go straight to a receiver, each with
    its own ``webhook-id``, stamped when sending started: the floor of one loopback POST.
    """
    total = max(1, int(rate * seconds))
    stamps: dict[str, float] = {}
    errors = 0
    hdrs = {"Content-Type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            nonlocal errors
            own = dict(hdrs)
            key = ""
            if direct:
                key = "evt_" + uuid.uuid4().hex
                own["webhook-id"] = key
                stamps[key] = time.monotonic()
            try:
                async with session.post(url, data=body, headers=own) as resp:
                    if direct:
                        await resp.read()
                        ok = resp.status < 300
                    else:
                        reply = await resp.json()
                        ok = resp.status == 202
                        if ok:
                            stamps[reply["id"]] = time.monotonic()
            except aiohttp.ClientError:
                ok = False
            if not ok:
                errors += 1
                stamps.pop(key, None)

        tasks: list[asyncio.Task[None]] = []
        started = time.monotonic()
        while len(tasks) < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            while len(tasks) < due:
                tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(0.001)
        sent_for = time.monotonic() - started
        await asyncio.gather(*tasks)
    return Paced(stamps, offered=rate, achieved=total / max(sent_for, 1e-9), errors=errors)


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by linear interpolation; ``values`` need not be sorted."""
    if not values:
        raise BenchError("no values")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)
