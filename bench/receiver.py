"""A bare aiohttp receiver on loopback that answers 204 and notes when each webhook arrived.

Run as ``python -m bench.receiver PORT [DELAY_SECONDS]``. ``POST /hook`` answers 204 (after
``DELAY_SECONDS`` when given, to hold deliveries in flight). Arrival times are
``time.monotonic()``, the system-wide ``CLOCK_MONOTONIC`` on Linux, so the suite compares them
with its own clock. ``GET /stats`` gives counts and the first/last arrival, ``GET /arrivals``
the first arrival of every ``webhook-id``, ``POST /reset`` forgets everything.
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiohttp import web


def receiver_app(delay: float = 0.0) -> web.Application:
    first: dict[str, float] = {}
    state = {"count": 0, "first": 0.0, "last": 0.0}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        state["count"] += 1
        if not state["first"]:
            state["first"] = now
        state["last"] = now
        first.setdefault(request.headers.get("webhook-id", ""), now)
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**state, "unique": len(first)})

    async def arrivals(request: web.Request) -> web.Response:
        return web.json_response(first)

    async def reset(request: web.Request) -> web.Response:
        first.clear()
        state.update(count=0, first=0.0, last=0.0)
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
