"""A bare aiohttp receiver on loopback that answers 204 and notes when each webhook arrived.

Run as ``python -m bench.receiver PORT [DELAY_SECONDS]``. ``POST /hook`` answers 204 (after
``DELAY_SECONDS`` when given, to hold deliveries in flight). Arrival times are
``time.monotonic()``, the system-wide ``CLOCK_MONOTONIC`` on Linux, so the suite compares them
with its own clock. ``GET /stats`` gives counts and the first/last arrival, ``GET /arrivals``
the first arrival of every ``webhook-id``, ``POST /reset`` forgets everything.

Webhooks from an ordered endpoint carry ``webhook-ordering-key`` and ``webhook-sequence``
(1, 2, 3 … per key): ``/stats`` counts them (``sequenced``) and counts as ``out_of_order``
every one that arrived before its predecessor of the same key. A repeat of one already seen
is a duplicate (at-least-once), not a fault.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiohttp import web


def receiver_app(delay: float = 0.0) -> web.Application:
    first: dict[str, float] = {}
    # per ordering key, the highest sequence number up to which every one has arrived
    contiguous: dict[str, int] = {}
    state = {"count": 0, "first": 0.0, "last": 0.0, "sequenced": 0, "out_of_order": 0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        state["count"] += 1
        if not state["first"]:
            state["first"] = now
        state["last"] = now
        first.setdefault(request.headers.get("webhook-id", ""), now)
        sequence = request.headers.get("webhook-sequence")
        if sequence is not None:
            state["sequenced"] += 1
            key = request.headers.get("webhook-ordering-key", "")
            seq, done = int(sequence), contiguous.get(key, 0)
            if seq == done + 1:
                contiguous[key] = seq
            elif seq > done + 1:
                state["out_of_order"] += 1
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**state, "unique": len(first), "keys": len(contiguous)})

    async def arrivals(request: web.Request) -> web.Response:
        return web.json_response(first)

    async def reset(request: web.Request) -> web.Response:
        first.clear()
        contiguous.clear()
        state.update(count=0, first=0.0, last=0.0, sequenced=0, out_of_order=0)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_get("/arrivals", arrivals)
    app.router.add_post("/reset", reset)
    return app


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    web.run_app(
        receiver_app(delay), host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024
    )


if __name__ == "__main__":
    main()
