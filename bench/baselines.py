"""Bare ceilings for this machine, measured in the same run as hookgate (after ``limit.py``).

  parse_only     an aiohttp handler that parses a 1 KB JSON event and answers 202
  naive_durable  the same plus one Redis MULTI (HSET + LPUSH) per request
  naive_batch    a 100-event batch parsed, then one MULTI with an HSET + LPUSH per event
  deliver        a bare aiohttp client POSTing 1 KB HMAC-signed bodies to the bench receiver;
                 with IN_FLIGHT 1 and an ORDERING_KEY, one at a time, each with the
                 ``webhook-ordering-key`` and ``webhook-sequence`` headers an ordered endpoint's
                 deliveries carry: the ceiling of one key's deliveries, one in flight

Servers: ``python -m bench.baselines serve ROLE PORT REDIS_PORT``.
Client:  ``python -m bench.baselines deliver URL COUNT IN_FLIGHT [ORDERING_KEY]`` (prints the
count that got a 2xx).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from aiohttp import ClientSession, TCPConnector, web

from bench.payloads import EVENT_BYTES

SERVER_ROLES = ("parse_only", "naive_durable", "naive_batch")


def ingest_app(role: str, redis_port: int) -> web.Application:
    r = aioredis.Redis(port=redis_port)

    async def single(request: web.Request) -> web.Response:
        ev = await request.json()
        eid = "evt_" + uuid.uuid4().hex
        if role == "naive_durable":
            async with r.pipeline(transaction=True) as p:
                p.hset("limit:ev:" + eid, mapping={"type": ev["type"], "body": json.dumps(ev)})
                p.lpush("limit:q", eid)
                await p.execute()
        return web.json_response({"id": eid}, status=202)

    async def batch(request: web.Request) -> web.Response:
        events = (await request.json())["events"]
        ids = ["evt_" + uuid.uuid4().hex for _ in events]
        async with r.pipeline(transaction=True) as p:
            for eid, ev in zip(ids, events, strict=True):
                p.hset("limit:ev:" + eid, mapping={"type": ev["type"], "body": json.dumps(ev)})
                p.lpush("limit:q", eid)
            await p.execute()
        return web.json_response({"accepted": len(ids), "ids": ids}, status=202)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/e", batch if role == "naive_batch" else single)
    return app


async def deliver(url: str, count: int, in_flight: int, ordering_key: str = "") -> int:
    """POSTs ``count`` signed 1 KB bodies with ``in_flight`` at once; returns how many got 2xx.

    With an ``ordering_key`` each also carries that key and its sequence number (1, 2, 3 … in
    the order sent), as a delivery from an ordered endpoint does."""
    key = os.urandom(24)
    left = count
    ok = 0
    async with ClientSession(connector=TCPConnector(limit=in_flight)) as session:

        async def one() -> None:
            nonlocal left, ok
            while left > 0:
                left -= 1
                sequence = count - left
                mid = "msg_" + uuid.uuid4().hex
                ts = str(int(time.time()))
                signed = f"{mid}.{ts}.".encode() + EVENT_BYTES
                mac = hmac.new(key, signed, hashlib.sha256).digest()
                headers = {
                    "webhook-id": mid,
                    "webhook-timestamp": ts,
                    "webhook-signature": "v1," + base64.b64encode(mac).decode(),
                    "content-type": "application/json",
                }
                if ordering_key:
                    headers["webhook-ordering-key"] = ordering_key
                    headers["webhook-sequence"] = str(sequence)
                async with session.post(url, data=EVENT_BYTES, headers=headers) as resp:
                    await resp.read()
                    ok += 200 <= resp.status < 300

        await asyncio.gather(*(one() for _ in range(in_flight)))
    return ok


def main(argv: list[str]) -> None:
    if argv[0] == "serve" and argv[1] in SERVER_ROLES:
        app: Any = ingest_app(argv[1], int(argv[3]))
        web.run_app(app, host="127.0.0.1", port=int(argv[2]), access_log=None, print=None)
    elif argv[0] == "deliver":
        key = argv[4] if len(argv) > 4 else ""
        print(asyncio.run(deliver(argv[1], int(argv[2]), int(argv[3]), key)), flush=True)
    else:
        sys.exit(f"usage: see {__doc__}")


if __name__ == "__main__":
    main(sys.argv[1:])
