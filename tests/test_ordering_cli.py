"""``hookgate ordering`` and the ordering options of ``hookgate endpoints`` and ``events send``
against a real ``hookgate serve`` and ``hookgate worker``: an ordered endpoint's key blocks
behind a head that failed for good, is listed, and goes on once the head is skipped; bad input
is one line and exit 2."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from arq.connections import ArqRedis
from conftest import Receiver
from support import AUTH, wait_healthy
from test_keys_cli import cli, ok, one_line_error

pytestmark = pytest.mark.e2e

Spawn = Callable[..., subprocess.Popen[bytes]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
UNKNOWN_EP = "ep_01JD0000000000000000000000"


@pytest.fixture
async def gateway(env: dict[str, str], spawn: Spawn, redis: ArqRedis) -> dict[str, str]:
    """A running gateway that retries twice, 10 ms apart (a head fails for good at once);
    returns the environment of the CLI and of a worker (started by the tests that deliver)."""
    fast = {**env, "HOOKGATE_RETRY_SCHEDULE": "10ms,10ms", "HOOKGATE_DELIVERY_TIMEOUT": "10s"}
    base = f"http://127.0.0.1:{fast['HOOKGATE_PORT']}"
    await wait_healthy(base, spawn("serve", fast))
    return {**fast, "HOOKGATE_URL": base}


class Switch:
    """A receiver's answer: 500 until it is switched on."""

    def __init__(self) -> None:
        self.working = False

    async def __call__(self, request: web.Request, n: int) -> web.StreamResponse:
        if self.working:
            return web.json_response({"ok": True})
        return web.json_response({"error": "down"}, status=500)


async def api(gateway: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, gateway["HOOKGATE_URL"] + path, json=body, headers=AUTH) as resp,
    ):
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def send(gateway: dict[str, str], key: str, n: int) -> tuple[str, str]:
    """An event of ``key`` through ``hookgate events send``; its id and its one delivery."""
    out = await ok(
        gateway,
        "events",
        "send",
        "--type",
        "payment.succeeded",
        "--business",
        "bus_o",
        "--data",
        json.dumps({"n": n}),
        "--ordering-key",
        key,
    )
    first, second = out.splitlines()
    return first.split()[0], second.strip()


async def ordered_endpoint(gateway: dict[str, str], url: str, *options: str) -> str:
    out = await ok(gateway, "endpoints", "create", url, "--business", "bus_o", *options)
    endpoint_id: str = out.split()[0]
    return endpoint_id


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_blocked_key_is_listed_skipped_and_goes_on(
    gateway: dict[str, str], spawn: Spawn, receiver: MakeReceiver
) -> None:
    switch = Switch()
    target = await receiver(switch)
    endpoint_id = await ordered_endpoint(
        gateway, target.url, "--ordered", "--on-exhausted", "block"
    )
    shown = json.loads(await ok(gateway, "endpoints", "show", endpoint_id))
    assert (shown["ordered"], shown["on_exhausted"]) == (True, "block")
    assert shown["health"]["blocked_keys"] == 0
    [row] = (await ok(gateway, "endpoints", "ls", "--business", "bus_o")).splitlines()[1:]
    assert row.startswith(endpoint_id) and "yes, block" in row
    assert (await ok(gateway, "ordering", "ls", endpoint_id)).strip() == "no blocked keys"

    # A key with a slash, a space and a letter beyond ASCII: it travels percent-encoded.
    key, other = "sub/1 ä", "sub_2"
    sent = [await send(gateway, key, n) for n in range(3)]
    lone = await send(gateway, other, 3)
    spawn("worker", gateway)

    async def both_blocked() -> bool:
        page = await api(gateway, "GET", f"/v1/endpoints/{endpoint_id}/ordering/blocked")
        return len(page["data"]) == 2

    await until(both_blocked)
    heads = {sent[0][1], lone[1]}
    table = (await ok(gateway, "ordering", "ls", endpoint_id)).splitlines()
    assert re.split(r"\s{2,}", table[0]) == [
        "KEY",
        "HEAD DELIVERY",
        "BLOCKED SINCE (UTC)",
        "WAITING",
    ]
    rows = {line.split()[-4]: line for line in table[1:]}  # key, head, date, time, waiting
    assert len(table) == 3 and set(rows) == heads, table
    assert rows[sent[0][1]].startswith(key + " ") and rows[sent[0][1]].endswith(" 2")
    assert rows[lone[1]].startswith(other + " ") and rows[lone[1]].endswith(" 0")
    for d in (sent[1][1], sent[2][1]):  # waiting: pending, no attempt, no time set
        view = await api(gateway, "GET", f"/v1/deliveries/{d}")
        assert (view["status"], view["reason"], view["next_attempt_at"]) == (
            "pending",
            "waiting",
            None,
        )
        assert view["attempt_count"] == 0 and view["ordering_key"] == key
    assert len(target.requests) == 6  # three attempts of each head, nothing of the others
    shown = json.loads(await ok(gateway, "endpoints", "show", endpoint_id))
    assert shown["health"]["blocked_keys"] == 2

    # Pages of one, and every page at once as JSON.
    first = (await ok(gateway, "ordering", "ls", endpoint_id, "--limit", "1")).splitlines()
    assert len(first) == 3 and first[2].startswith("more: --cursor ")
    cursor = first[2].split()[-1]
    second = (
        await ok(gateway, "ordering", "ls", endpoint_id, "--limit", "1", "--cursor", cursor)
    ).splitlines()
    assert len(second) == 2
    assert {tuple(first[1].split()), tuple(second[1].split())} == {
        tuple(r.split()) for r in table[1:]
    }
    listed = json.loads(await ok(gateway, "ordering", "ls", endpoint_id, "--json"))
    assert listed["next_cursor"] is None
    assert {(b["key"], b["head_delivery_id"], b["waiting"]) for b in listed["data"]} == {
        (key, sent[0][1], 2),
        (other, lone[1], 0),
    }

    # The receiver is fixed; skipping the head lets the key's next events go, in order.
    switch.working = True
    said = (await ok(gateway, "ordering", "skip", endpoint_id, key)).splitlines()
    assert said[0].startswith(f"skipped {sent[0][1]}, the head of key {key!r}")
    assert said[1].split() == ["next", sent[1][1], "goes", "now"]

    async def delivered() -> bool:
        views = [await api(gateway, "GET", f"/v1/deliveries/{d}") for _, d in sent[1:]]
        return all(v["status"] == "succeeded" for v in views)

    await until(delivered)
    arrived = [r.headers["webhook-id"] for r in target.requests[6:]]
    assert arrived == [sent[1][0], sent[2][0]]
    head = await api(gateway, "GET", f"/v1/deliveries/{sent[0][1]}")
    assert head["status"] == "failed" and head["sequence"] == 1

    said = (await ok(gateway, "ordering", "skip", endpoint_id, other)).splitlines()
    assert said[1] == "next    none: no delivery of this key waits"
    assert (await ok(gateway, "ordering", "ls", endpoint_id)).strip() == "no blocked keys"
    # Nothing holds the key any more: 404, one line.
    gone = one_line_error(await cli(gateway, "ordering", "skip", endpoint_id, other))
    assert "no delivery holds ordering key" in gone and "(not_found)" in gone

    # The skipped head stays replayable.
    replayed = await cli(gateway, "replay", sent[0][1])
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


async def test_a_pending_head_is_skipped_and_a_dot_key_reaches_the_gateway(
    gateway: dict[str, str],
) -> None:
    """No worker: the key's head stays pending. ``..`` would be a dot segment in a path."""
    endpoint_id = await ordered_endpoint(gateway, "http://127.0.0.1:9/hook", "--ordered")
    head = await send(gateway, "..", 0)
    waiting = await send(gateway, "..", 1)
    said = (await ok(gateway, "ordering", "skip", endpoint_id, "..")).splitlines()
    assert said[0].startswith(f"skipped {head[1]}, the head of key '..'")
    assert said[1].split() == ["next", waiting[1], "goes", "now"]
    skipped = await api(gateway, "GET", f"/v1/deliveries/{head[1]}")
    assert (skipped["status"], skipped["reason"]) == ("failed", "skipped")
    going = await api(gateway, "GET", f"/v1/deliveries/{waiting[1]}")
    assert going["status"] == "pending" and going["next_attempt_at"] is not None
    assert (going["ordering_key"], going["sequence"]) == ("..", 2)
    # Not blocked: pending heads are not listed.
    assert (await ok(gateway, "ordering", "ls", endpoint_id)).strip() == "no blocked keys"


async def test_an_open_attempt_of_the_head_is_not_skipped(
    gateway: dict[str, str], spawn: Spawn, receiver: MakeReceiver
) -> None:
    release = asyncio.Event()

    async def hold(request: web.Request, n: int) -> web.StreamResponse:
        await release.wait()
        return web.json_response({"ok": True})

    target = await receiver(hold)
    endpoint_id = await ordered_endpoint(gateway, target.url, "--ordered")
    head = await send(gateway, "sub_9", 0)
    later = await send(gateway, "sub_9", 1)
    spawn("worker", gateway)
    try:
        await target.wait_for(1, timeout=20)
        refused = one_line_error(await cli(gateway, "ordering", "skip", endpoint_id, "sub_9"))
        assert "(attempt_in_flight)" in refused and head[1] in refused
    finally:
        release.set()

    async def both_delivered() -> bool:
        views = [await api(gateway, "GET", f"/v1/deliveries/{d}") for d in (head[1], later[1])]
        return all(v["status"] == "succeeded" for v in views)

    await until(both_delivered)
    assert [r.headers["webhook-id"] for r in target.requests] == [head[0], later[0]]


async def test_endpoints_update_switches_ordering(gateway: dict[str, str]) -> None:
    endpoint_id = await ordered_endpoint(gateway, "http://127.0.0.1:9/hook")
    shown = json.loads(await ok(gateway, "endpoints", "show", endpoint_id))
    assert (shown["ordered"], shown["on_exhausted"]) == (False, "block")
    row = (await ok(gateway, "endpoints", "ls")).splitlines()[1]
    assert row.split()[4] == "no"
    said = await ok(gateway, "endpoints", "update", endpoint_id, "--ordered")
    assert said.strip() == f"{endpoint_id} ordered per key (on exhausted: block)"
    said = await ok(gateway, "endpoints", "update", endpoint_id, "--on-exhausted", "skip")
    assert said.strip() == f"{endpoint_id} ordered per key (on exhausted: skip)"
    assert "yes, skip" in (await ok(gateway, "endpoints", "ls")).splitlines()[1]
    said = await ok(gateway, "endpoints", "update", endpoint_id, "--unordered")
    assert said.strip() == f"{endpoint_id} unordered (when ordered, on exhausted: skip)"
    shown = json.loads(await ok(gateway, "endpoints", "show", endpoint_id))
    assert (shown["ordered"], shown["on_exhausted"]) == (False, "skip")


CREATE = ["endpoints", "create", "http://127.0.0.1:9/x", "--business", "bus_o"]
SEND = ["events", "send", "--type", "payment.succeeded", "--business", "bus_o"]
BAD = [
    (["ordering", "ls", "nope"], "'nope' is not an endpoint id"),
    (["ordering", "ls", "ep_x/../../v1"], "is not an endpoint id"),
    (["ordering", "ls", UNKNOWN_EP], "no endpoint"),
    (["ordering", "ls", "{ep}", "--limit", "0"], "--limit: must be a whole number from 1 to 500"),
    (["ordering", "ls", "{ep}", "--limit", "501"], "--limit: must be a whole number"),
    (["ordering", "ls", "{ep}", "--limit", "many"], "--limit: must be a whole number"),
    (["ordering", "ls", "{ep}", "--cursor", "abc"], "--cursor goes with --limit"),
    (["ordering", "ls", "{ep}", "--limit", "5", "--cursor", "garbage"], "cursor"),
    (["ordering", "skip", "nope", "sub_1"], "'nope' is not an endpoint id"),
    (["ordering", "skip", "{ep}", ""], "KEY: must not be empty"),
    (["ordering", "skip", "{ep}", "k" * 201], "KEY: must be a string of 1-200 printable"),
    (["ordering", "skip", "{ep}", "tab\there"], "KEY: must be a string of 1-200 printable"),
    # bytes that are not UTF-8 on the command line
    (["ordering", "skip", "{ep}", "sub_\udcff"], "KEY: must be UTF-8 text"),
    (["ordering", "skip", UNKNOWN_EP, "sub_1"], "no endpoint"),
    (["ordering", "skip", "{ep}", "sub_never"], "no delivery holds ordering key 'sub_never'"),
    (["endpoints", "update", "{ep}"], "nothing to change"),
    (["endpoints", "update", "nope", "--ordered"], "'nope' is not an endpoint id"),
    (["endpoints", "update", UNKNOWN_EP, "--ordered"], "no endpoint"),
    (["endpoints", "update", "{ep}", "--on-exhausted", "drop"], "--on-exhausted: must be"),
    ([*CREATE, "--ordered", "--on-exhausted", ""], "--on-exhausted: must be block or skip"),
    ([*SEND, "--ordering-key", ""], "ordering_key: must be a string of 1-200 printable"),
    ([*SEND, "--ordering-key", "a\nb"], "ordering_key: must be"),
]


async def test_bad_input_is_one_line_and_exit_2(gateway: dict[str, str]) -> None:
    """Every case against one gateway (one ``hookgate serve`` start, not one per case)."""
    endpoint_id = await ordered_endpoint(gateway, "http://127.0.0.1:9/hook", "--ordered")
    for args, said in BAD:
        given = [a.replace("{ep}", endpoint_id) for a in args]
        line = one_line_error(await cli(gateway, *given))
        assert said in line, (given, line)
    shown = json.loads(await ok(gateway, "endpoints", "show", endpoint_id))
    assert (shown["ordered"], shown["on_exhausted"]) == (True, "block")  # unchanged
    assert len((await api(gateway, "GET", "/v1/endpoints"))["data"]) == 1
    assert (await api(gateway, "GET", "/v1/deliveries"))["data"] == []  # no event accepted
