"""``hookgate listen``: real ``hookgate serve`` / ``worker`` / ``listen`` processes over the
test Redis, forwarding to an aiohttp receiver on loopback; the API of listen sessions and their
expiry in process.

The process tests print what they measured; run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from hookgate_verifier import Verifier
from redis.asyncio import Redis
from support import AUTH, hookgate_exe, run_cli, wait_healthy
from test_crash import Cluster, hookgate_env, kill9, wait_until

from gateway.cli.redis_server import free_port
from gateway.core import listen
from gateway.core.settings import Settings
from gateway.store import keys

Client = TestClient[Any, Any]
BUSINESS = "bus_listen"
DELIVERY_TIMEOUT = 3.0


def listen_report(title: str, **figures: Any) -> None:
    shown = ", ".join(
        f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
    )
    print(f"\n[listen] {title}: {shown}")


# ---- processes ---------------------------------------------------------------------------


@dataclasses.dataclass
class Listener:
    """A ``hookgate listen`` process; its stdout and stderr go to files."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    async def wait_for(self, text: str, timeout: float = 20, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.stdout().count(text) < count:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"listen exited {self.process.returncode}: {self.stdout()} {self.stderr()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"listen never printed {text!r}: {self.stdout()}")
            await asyncio.sleep(0.05)

    def secret(self) -> str:
        for line in self.stdout().splitlines():
            if line.startswith("secret "):
                return line.split()[1]
        raise AssertionError(f"no secret printed: {self.stdout()}")

    def session_id(self) -> str:
        first = self.stdout().splitlines()[0]  # session   NAME (ep_…, new)
        return first.split("(")[1].split(",")[0]

    def wait(self, timeout: float = 15) -> int:
        return self.process.wait(timeout=timeout)


@dataclasses.dataclass
class Setup:
    """A gateway and a worker over the test Redis, and ``hookgate listen`` processes."""

    cluster: Cluster
    started: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)

    @property
    def base(self) -> str:
        return self.cluster.base

    def listen(self, forward_to: str, *args: str, base: str | None = None) -> Listener:
        n = len(self.started)
        out, err = self.cluster.logs / f"listen-{n}.out", self.cluster.logs / f"listen-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [hookgate_exe(), "listen", "--forward-to", forward_to, *args],
                env={**self.cluster.env, "HOOKGATE_URL": base or self.base},
                stdout=stdout,
                stderr=stderr,
            )
        self.started.append(process)
        return Listener(process, out, err)

    async def start(self, *, worker: bool = True) -> None:
        await self.cluster.serve()
        if worker:
            self.cluster.worker()
            await self.cluster.wait_started("worker")


@pytest.fixture
def setup(redis_url: str, redis: Redis, tmp_path: Path) -> Iterator[Setup]:
    env = hookgate_env(
        redis_url,
        HOOKGATE_DELIVERY_TIMEOUT=f"{DELIVERY_TIMEOUT}s",
        HOOKGATE_RETRY_SCHEDULE="300ms,300ms,1s,1s,1s",
        HOOKGATE_BUSINESS=BUSINESS,
        # an idle HTTP connection is closed after this; a listen connection is not
        HOOKGATE_REQUEST_TIMEOUT="1s",
    )
    made = Setup(Cluster(redis_url, tmp_path, env))
    yield made
    for process in made.started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
    made.cluster.stop_all()


@dataclasses.dataclass
class Got:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclasses.dataclass
class Receiver:
    """A developer's receiver on loopback: records every request, answers 200 (after
    ``delay`` seconds for the event ids in ``slow``)."""

    url: str = ""
    got: list[Got] = dataclasses.field(default_factory=list)
    slow: dict[str, float] = dataclasses.field(default_factory=dict)
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.got.append(Got(dict(request.headers), body, time.monotonic()))
        await asyncio.sleep(self.slow.get(request.headers.get("webhook-id", ""), 0))
        return web.json_response({"received": True})

    async def start(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/webhooks", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/webhooks"

    def ids(self) -> list[str]:
        return [g.headers["webhook-id"] for g in self.got]

    async def wait_for(self, count: int, timeout: float = 30) -> None:
        await wait_until(lambda: _at_least(self, count), timeout, f"{count} arrivals", 0.02)


async def _at_least(receiver: Receiver, count: int) -> bool:
    return len(receiver.got) >= count


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def start(port: int | None = None) -> Receiver:
        receiver = Receiver()
        await receiver.start(port or free_port())
        made.append(receiver)
        return receiver

    yield start
    for receiver in made:
        if receiver.runner is not None:
            await receiver.runner.cleanup()


# ---- the billing core's side and the API ---------------------------------------------------


async def send_events(base: str, count: int, event_type: str = "payment.succeeded") -> list[str]:
    """Sends ``count`` events one after the other (their order is their ingest order)."""
    ids = []
    async with aiohttp.ClientSession(base, headers=AUTH) as http:
        for n in range(count):
            body = {"business_id": BUSINESS, "type": event_type, "data": {"n": n}}
            async with http.post("/v1/events", json=body) as resp:
                assert resp.status == 202, await resp.text()
                ids.append((await resp.json())["id"])
    return ids


async def get(base: str, path: str) -> Any:
    async with aiohttp.ClientSession(base, headers=AUTH) as http, http.get(path) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def session_delivery(base: str, event_id: str, endpoint_id: str) -> dict[str, Any]:
    event = await get(base, f"/v1/events/{event_id}")
    [delivery] = [d for d in event["deliveries"] if d["endpoint_id"] == endpoint_id]
    return await get(base, f"/v1/deliveries/{delivery['id']}")  # type: ignore[no-any-return]


# ---- forwarding ----------------------------------------------------------------------------


async def test_deliveries_reach_the_receiver_signed_in_order_and_recorded(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    await setup.start()
    receiver = await receivers()
    listener = setup.listen(receiver.url, "--session", "laptop", "--events", "payment.*")
    await listener.wait_for("Ready: forwarding to " + receiver.url)
    secret = listener.secret()
    session_id = listener.session_id()
    assert secret.startswith("whsec_")
    await asyncio.sleep(2.5)  # idle past HOOKGATE_REQUEST_TIMEOUT: the connection stays

    sent = await send_events(setup.base, 5)
    await send_events(setup.base, 2, "subscription.renewed")  # not subscribed to
    await receiver.wait_for(5)
    await asyncio.sleep(0.5)  # room for anything that should not come
    assert receiver.ids() == sent  # each once, in order, and nothing else
    verifier = Verifier(secret)
    for got, event_id in zip(receiver.got, sent, strict=True):
        event = verifier.verify(got.body, got.headers)
        assert event["type"] == "payment.succeeded" and event["business_id"] == BUSINESS
        assert got.headers["webhook-id"] == event_id
        assert "webhook-ordering-key" not in got.headers  # the session's own key is not sent

    for event_id in sent:
        delivery = await session_delivery(setup.base, event_id, session_id)
        assert delivery["status"] == "succeeded"
        [attempt] = delivery["attempts"]
        assert attempt["status_code"] == 200
        assert json.loads(attempt["response_body"]) == {"received": True}
        assert attempt["error"] is None and attempt["latency_ms"] > 0
        await wait_until(_printed(listener, event_id), 5, "the delivery's line")
    line = next(x for x in listener.stdout().splitlines() if sent[0] in x)
    assert "payment.succeeded" in line and "→ 200" in line

    endpoints = (await get(setup.base, f"/v1/endpoints?business_id={BUSINESS}"))["data"]
    [session] = endpoints
    assert (session["id"], session["kind"], session["url"]) == (
        session_id,
        "listen",
        "listen://laptop",
    )
    assert session["event_types"] == ["payment.*"] and session["session"] == "laptop"

    printed = run_cli(
        "listen", "--session", "laptop", "--print-secret", env=_cli_env(setup, setup.base)
    )
    assert (printed.returncode, printed.stdout, printed.stderr) == (0, secret + "\n", "")

    assert "connection lost" not in listener.stdout()
    listener.process.send_signal(signal.SIGINT)  # Ctrl-C
    assert listener.wait() == 0
    assert listener.stderr() == ""


def _printed(listener: Listener, event_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return event_id in listener.stdout()

    return check


def _cli_env(setup: Setup, base: str, **extra: str) -> dict[str, str]:
    return {**setup.cluster.env, "HOOKGATE_URL": base, **extra}


# ---- reconnects: nothing dropped -----------------------------------------------------------


async def _offline(redis: Redis, session_id: str) -> bool:
    return not await redis.exists(keys.listen_online(session_id))


async def test_a_killed_listen_loses_nothing_sent_while_it_was_gone(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]], redis: Redis
) -> None:
    await setup.start()
    receiver = await receivers()
    first = setup.listen(receiver.url, "--session", "laptop")
    await first.wait_for("Ready")
    session_id = first.session_id()
    before = await send_events(setup.base, 3)
    await receiver.wait_for(3)

    kill9(first.process)
    await wait_until(lambda: _offline(redis, session_id), 10, "the gateway to see it gone")
    sent = await send_events(setup.base, 20)
    await asyncio.sleep(2.0)  # a second or two of re-deferred attempts
    assert len(receiver.got) == 3
    waiting = [await session_delivery(setup.base, e, session_id) for e in sent]
    assert {d["status"] for d in waiting} == {"pending"}
    assert [d["attempt_count"] for d in waiting] == [0] * 20  # no attempt spent
    assert waiting[0]["reason"] == "session_offline"
    assert {d["reason"] for d in waiting[1:]} == {"waiting"}  # behind the first, in order

    second = setup.listen(receiver.url, "--session", "laptop")
    await second.wait_for("Ready")
    reconnected = time.monotonic()
    await receiver.wait_for(23)
    drained = time.monotonic() - reconnected
    await asyncio.sleep(0.5)
    after = receiver.ids()[3:]
    listen_report(
        "listen killed, 20 events sent meanwhile",
        sent_while_disconnected=len(sent),
        delivered_after_reconnect=len(after),
        missing=len(set(sent) - set(after)),
        duplicates=len(after) - len(set(after)),
        in_order=after == sent,
        drain_s=drained,
    )
    assert receiver.ids()[:3] == before
    assert after == sent  # all of them, once each, in the order they were sent
    verifier = Verifier(second.secret())
    assert second.secret() == first.secret()  # the same session, resumed
    assert "resumed" in second.stdout().splitlines()[0]
    for got in receiver.got:
        verifier.verify(got.body, got.headers)
    for event_id in sent:
        delivery = await session_delivery(setup.base, event_id, session_id)
        assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 1


async def test_a_listen_killed_mid_forward_gets_that_delivery_again_then_the_rest(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]], redis: Redis
) -> None:
    await setup.start()
    receiver = await receivers()
    first = setup.listen(receiver.url, "--session", "laptop")
    await first.wait_for("Ready")
    session_id = first.session_id()
    [held] = await send_events(setup.base, 1)
    receiver.slow[held] = 30.0  # the receiver holds it: the kill comes mid-forward
    await receiver.wait_for(1)
    sent = await send_events(setup.base, 10)
    kill9(first.process)
    receiver.slow.clear()
    await wait_until(lambda: _offline(redis, session_id), 10, "the gateway to see it gone")

    second = setup.listen(receiver.url, "--session", "laptop")
    await second.wait_for("Ready")
    # the held attempt's outcome never comes: it times out, and is retried
    await receiver.wait_for(12, timeout=DELIVERY_TIMEOUT + 30)
    await asyncio.sleep(0.5)
    ids = receiver.ids()
    held_delivery = await session_delivery(setup.base, held, session_id)
    *timed_out, last = held_delivery["attempts"]
    listen_report(
        "listen killed mid-forward, 10 events behind it",
        arrivals=len(ids),
        held_arrivals=ids.count(held),
        held_attempts=len(held_delivery["attempts"]),
        rest_in_order=ids[2:] == sent,
    )
    assert ids == [held, held, *sent]  # the held one again (at least once), then the rest
    # Sent again by the new connection while the worker still waited for its outcome (the same
    # attempt), or, had the new one come later, after that attempt timed out.
    assert len(timed_out) <= 1
    for attempt in timed_out:
        assert attempt["status_code"] is None and attempt["outcome"] == "retry"
        assert attempt["error"].startswith(f"timeout after {DELIVERY_TIMEOUT:g}s")
    assert last["status_code"] == 200 and held_delivery["status"] == "succeeded"


async def test_a_session_disabled_while_listening_ends_listen_saying_how_to_enable_it(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    await setup.start(worker=False)
    receiver = await receivers()
    listener = setup.listen(receiver.url, "--session", "laptop")
    await listener.wait_for("Ready")
    session_id = listener.session_id()
    async with (
        aiohttp.ClientSession(setup.base, headers=AUTH) as http,
        http.post(f"/v1/endpoints/{session_id}/disable") as resp,
    ):
        assert resp.status == 200
    assert listener.wait() == 1
    [line] = listener.stderr().splitlines()
    assert line.startswith(f"hookgate: listen session laptop ({session_id}) was disabled")
    assert line.endswith(f"enable it with hookgate endpoints enable {session_id}")
    env = _cli_env(setup, setup.base)
    again = run_cli("listen", "--forward-to", receiver.url, "--session", "laptop", env=env)
    _one_line_exit_2(again, "is disabled", f"hookgate endpoints enable {session_id}")


async def test_a_newer_listen_of_the_session_replaces_the_older_one(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    await setup.start(worker=False)
    receiver = await receivers()
    first = setup.listen(receiver.url, "--session", "laptop")
    await first.wait_for("Ready")
    second = setup.listen(receiver.url, "--session", "laptop")
    await second.wait_for("Ready")
    assert first.wait() == 1
    [line] = first.stderr().splitlines()
    assert (
        line == "hookgate: another hookgate listen took listen session laptop over; this one stops"
    )
    assert second.process.poll() is None


# ---- two gateways ----------------------------------------------------------------------------


async def test_deliveries_reach_a_listen_on_another_gateway_and_again_after_it_restarts(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    await setup.start()
    port = free_port()
    other = setup.cluster.spawn("serve", "gateway-b", HOOKGATE_PORT=str(port))
    base_b = f"http://127.0.0.1:{port}"
    await wait_healthy(base_b, other)
    receiver = await receivers()
    listener = setup.listen(receiver.url, "--session", "laptop", base=base_b)
    await listener.wait_for("Ready")

    sent = await send_events(setup.base, 10)  # to the first gateway
    await receiver.wait_for(10)
    assert receiver.ids() == sent
    assert b"hookgate.listen.connected" in (setup.cluster.logs / "gateway-b.log").read_bytes()
    assert b"hookgate.listen.connected" not in (setup.cluster.logs / "gateway.log").read_bytes()

    # its gateway stops (closing the WebSocket) and comes back; events come meanwhile
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=20) == 0
    stopped = await send_events(setup.base, 5)
    await asyncio.sleep(1.0)
    assert len(receiver.got) == 10
    again = setup.cluster.spawn("serve", "gateway-b", HOOKGATE_PORT=str(port))
    await wait_healthy(base_b, again)
    await listener.wait_for("Reconnected")
    await receiver.wait_for(15)
    await asyncio.sleep(0.5)
    assert receiver.ids() == [*sent, *stopped]
    assert "connection lost" in listener.stdout()
    verifier = Verifier(listener.secret())
    for got in receiver.got:
        verifier.verify(got.body, got.headers)
    listen_report(
        "listen on another gateway, which restarts",
        sent_before=len(sent),
        sent_while_its_gateway_was_down=len(stopped),
        delivered=len(receiver.got),
    )


# ---- a receiver that is not there yet ------------------------------------------------------


async def test_a_refused_forward_is_a_failed_attempt_retried_until_the_receiver_is_up(
    setup: Setup, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    setup.cluster.env["HOOKGATE_RETRY_SCHEDULE"] = ",".join(["700ms"] * 40)
    await setup.start()
    port = free_port()
    listener = setup.listen(f"http://127.0.0.1:{port}/webhooks", "--session", "laptop")
    await listener.wait_for("Ready")
    session_id = listener.session_id()
    [event_id] = await send_events(setup.base, 1)

    async def failed_twice() -> bool:
        delivery = await session_delivery(setup.base, event_id, session_id)
        return len(delivery["attempts"]) >= 2

    await wait_until(failed_twice, 20, "two refused attempts")
    delivery = await session_delivery(setup.base, event_id, session_id)
    assert delivery["status"] == "pending"
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None and attempt["outcome"] == "retry"
        assert attempt["error"] == f"listen: connection refused at 127.0.0.1:{port}"
    assert f"→ error: connection refused at 127.0.0.1:{port}" in listener.stdout()

    receiver = await receivers(port)
    await receiver.wait_for(1)
    assert receiver.ids() == [event_id]
    Verifier(listener.secret()).verify(receiver.got[0].body, receiver.got[0].headers)

    async def succeeded() -> bool:
        delivery = await session_delivery(setup.base, event_id, session_id)
        return bool(delivery["status"] == "succeeded")

    await wait_until(succeeded, 10, "the delivery to succeed")
    delivery = await session_delivery(setup.base, event_id, session_id)
    assert delivery["attempts"][-1]["status_code"] == 200
    listen_report("refused forward", attempts_before_success=len(delivery["attempts"]) - 1)


# ---- bad input -------------------------------------------------------------------------------


def _one_line_exit_2(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("hookgate: ")
    for text in expected:
        assert text in line, line
    return line


async def test_bad_arguments_an_unreachable_gateway_and_a_wrong_token_exit_2(
    setup: Setup,
) -> None:
    await setup.start(worker=False)
    env = _cli_env(setup, setup.base)

    def listen_cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return run_cli("listen", *args, env={**env, **extra})

    for target in ("localhost:3000", "ftp://h/x", "http://", "http://h:99999/x", "/webhooks"):
        _one_line_exit_2(listen_cli("--forward-to", target), "--forward-to")
    _one_line_exit_2(listen_cli(), "--forward-to is required")
    ok = "http://127.0.0.1:9/webhooks"
    _one_line_exit_2(listen_cli("--forward-to", ok, "--session", "a b"), "--session")
    _one_line_exit_2(listen_cli("--forward-to", ok, "--events", "payment"), "--events")
    _one_line_exit_2(listen_cli("--forward-to", ok, "--events", "nope.never"), "unknown event type")
    nowhere = f"http://127.0.0.1:{free_port()}"
    _one_line_exit_2(
        listen_cli("--forward-to", ok, HOOKGATE_URL=nowhere), f"cannot reach {nowhere}"
    )
    _one_line_exit_2(
        listen_cli("--forward-to", ok, HOOKGATE_ADMIN_TOKEN="wrong-token-0123456789"),
        "answered 401",
    )
    # nothing was opened by any of them
    assert (await get(setup.base, "/v1/endpoints"))["data"] == []


# ---- the API of listen sessions, in process ------------------------------------------------


async def put_session(api: Client, name: str, body: Any, headers: Any = None) -> Any:
    return await api.put(f"/v1/listen-sessions/{name}", json=body, headers=headers or AUTH)


async def _error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    return error


async def test_opening_a_session_twice_resumes_it_and_follows_its_subscription(
    api: Client,
) -> None:
    resp = await put_session(api, "laptop", {"business_id": BUSINESS})
    assert resp.status == 201
    made = await resp.json()
    assert (made["kind"], made["url"], made["created"]) == ("listen", "listen://laptop", True)
    assert made["ordered"] and made["max_in_flight"] == 1 and made["on_exhausted"] == "skip"
    assert made["event_types"] is None and made["secret"].startswith("whsec_")
    resp = await put_session(api, "laptop", {"business_id": BUSINESS, "event_types": ["credit.*"]})
    assert resp.status == 200
    again = await resp.json()
    assert (again["id"], again["secret"], again["created"]) == (made["id"], made["secret"], False)
    assert again["event_types"] == ["credit.*"]
    # another business's session of the same name is another session
    other = await (await put_session(api, "laptop", {"business_id": "bus_other"})).json()
    assert other["id"] != made["id"] and other["secret"] != made["secret"]
    listed = await (await api.get("/v1/endpoints", headers=AUTH)).json()
    assert {e["kind"] for e in listed["data"]} == {"listen"}
    resp = await api.post(
        "/v1/endpoints", json={"business_id": BUSINESS, "url": "http://127.0.0.1:9/"}, headers=AUTH
    )
    http = await resp.json()
    assert (http["kind"], http["session"], http["last_connected_at"]) == ("http", None, None)


async def test_the_session_routes_refuse_bad_input_with_a_json_reason(api: Client) -> None:
    body = {"business_id": BUSINESS}
    for name in ("-laptop", "a" * 65, "a%20b", "caf%C3%A9"):
        error = await _error(await put_session(api, name, body), 422)
        assert error["details"] == {"field": "name"}, name
    error = await _error(await put_session(api, "laptop", {}), 422)
    assert error["details"] == {"field": "business_id"}
    error = await _error(await put_session(api, "laptop", {**body, "event_types": []}), 422)
    assert error["details"] == {"field": "event_types"}
    error = await _error(await put_session(api, "laptop", {**body, "event_types": ["no.pe"]}), 422)
    assert error["code"] == "unknown_event_type"
    error = await _error(await put_session(api, "laptop", {**body, "url": "http://x/"}), 422)
    assert error["details"] == {"field": "url"}
    resp = await api.put("/v1/listen-sessions/laptop", data=b"{nope", headers=AUTH)
    assert (await _error(resp, 400))["code"] == "invalid_json"
    key = await (
        await api.post(
            "/v1/api-keys",
            json={"name": "dev", "scopes": ["endpoints:write"], "business_id": "bus_mine"},
            headers=AUTH,
        )
    ).json()
    as_key = {"Authorization": f"Bearer {key['key']}"}
    error = await _error(await put_session(api, "laptop", body, as_key), 403)
    assert error["details"] == {"field": "business_id"}
    assert (await api.get("/v1/endpoints", headers=AUTH)).status == 200
    assert (await (await api.get("/v1/endpoints", headers=AUTH)).json())["data"] == []

    session = await (await put_session(api, "laptop", body)).json()
    plain = await (
        await api.post("/v1/endpoints", json={**body, "url": "http://127.0.0.1:9/"}, headers=AUTH)
    ).json()
    path = f"/v1/endpoints/{session['id']}/listen"
    error = await _error(await api.get(path, headers=AUTH), 426)
    assert error["code"] == "upgrade_required"
    assert (await _error(await api.get(path), 401))["code"] == "unauthorized"
    error = await _error(await api.get(f"/v1/endpoints/{plain['id']}/listen", headers=AUTH), 409)
    assert error["code"] == "not_a_listen_session"
    unknown = f"/v1/endpoints/ep_{'0' * 26}/listen"
    assert (await _error(await api.get(unknown, headers=AUTH), 404))["code"] == "not_found"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.ws_connect(unknown, headers=AUTH)
    assert refused.value.status == 404
    # what a listen session keeps as it is
    for change in ({"url": "http://127.0.0.1:9/"}, {"ordered": False}, {"max_in_flight": 5}):
        resp = await api.patch(f"/v1/endpoints/{session['id']}", json=change, headers=AUTH)
        error = await _error(resp, 422)
        assert error["code"] == "listen_session" and error["details"] == {
            "field": next(iter(change))
        }
    resp = await api.patch(
        f"/v1/endpoints/{session['id']}", json={"event_types": ["refund.*"]}, headers=AUTH
    )
    assert resp.status == 200


async def _ws(api: Client, session_id: str) -> aiohttp.ClientWebSocketResponse:
    return await api.ws_connect(f"/v1/endpoints/{session_id}/listen", headers=AUTH)


async def test_attempts_wait_unspent_while_no_client_is_connected_and_expired_sessions_go(
    api: Client,
    redis: ArqRedis,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
) -> None:
    short = dataclasses.replace(settings, listen_session_ttl=1.5, delivery_timeout=2.0)
    await start_worker(short)
    idle = await (await put_session(api, "idle", {"business_id": BUSINESS})).json()
    held = await (await put_session(api, "held", {"business_id": "bus_held"})).json()
    ws = await _ws(api, held["id"])
    ready = json.loads((await ws.receive()).data)
    assert ready == {"type": "ready", "session": "held", "endpoint_id": held["id"]}
    event = {"business_id": BUSINESS, "type": "payment.succeeded", "data": {}}
    accepted = await (await api.post("/v1/events", json=event, headers=AUTH)).json()
    [delivery_id] = accepted["deliveries"]

    async def redeferred() -> bool:
        return int(await redis.hget(keys.delivery(delivery_id), "redefers") or 0) >= 1

    await wait_until(redeferred, 10, "the attempt to be re-deferred")
    view = await (await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)).json()
    assert (view["status"], view["attempt_count"], view["reason"]) == (
        "pending",
        0,
        "session_offline",
    )

    async def gone() -> bool:
        return (await api.get(f"/v1/endpoints/{idle['id']}", headers=AUTH)).status == 404

    await wait_until(gone, 10, "the idle session to expire")
    view = await (await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)).json()
    assert (view["status"], view["reason"], view["attempt_count"]) == (
        "cancelled",
        "session_expired",
        0,
    )
    assert await redis.hget(keys.business_listen_sessions(BUSINESS), "idle") is None
    assert not await redis.zscore(keys.LISTEN_SESSIONS, idle["id"])
    # the connected one outlives its time to live, and is resumed, not made again
    await asyncio.sleep(1.0)
    assert (await api.get(f"/v1/endpoints/{held['id']}", headers=AUTH)).status == 200
    again = await put_session(api, "held", {"business_id": "bus_held"})
    assert again.status == 200 and (await again.json())["id"] == held["id"]
    await ws.close()


async def test_a_delivery_and_its_outcome_cross_the_websocket(
    api: Client,
    redis: ArqRedis,
    settings: Settings,
    start_worker: Callable[[Settings], Awaitable[None]],
) -> None:
    await start_worker(settings)
    session = await (await put_session(api, "laptop", {"business_id": BUSINESS})).json()
    ws = await _ws(api, session["id"])
    assert json.loads((await ws.receive()).data)["type"] == "ready"
    event = {"business_id": BUSINESS, "type": "payment.succeeded", "data": {"n": 1}}
    accepted = await (await api.post("/v1/events", json=event, headers=AUTH)).json()
    [delivery_id] = accepted["deliveries"]
    message = json.loads((await ws.receive(timeout=10)).data)
    assert message["type"] == "delivery"
    assert (message["delivery_id"], message["event_id"], message["attempt"]) == (
        delivery_id,
        accepted["id"],
        1,
    )
    assert 0 < message["timeout"] < settings.delivery_timeout
    Verifier(session["secret"]).verify(message["body"].encode(), message["headers"])
    # garbage and outcomes of attempts never sent are dropped, and logged by kind only
    await ws.send_str("{not json")
    await ws.send_str(
        json.dumps({"type": "outcome", "job_id": "attempt:x:1", "status": 200, "latency_ms": 1})
    )
    await ws.send_str(
        json.dumps({"type": "outcome", "job_id": message["job_id"], "status": 999, "latency_ms": 1})
    )
    outcome = {
        "type": "outcome",
        "job_id": message["job_id"],
        "status": 503,
        "latency_ms": 12.5,
        "body": "busy",
        "error": None,
    }
    await ws.send_str(json.dumps(outcome))

    async def recorded() -> bool:
        view = await (await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)).json()
        return bool(view["attempts"])

    await wait_until(recorded, 10, "the attempt to be recorded")
    view = await (await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)).json()
    [attempt] = view["attempts"]
    assert (attempt["status_code"], attempt["latency_ms"], attempt["response_body"]) == (
        503,
        12.5,
        "busy",
    )
    assert (attempt["error"], attempt["outcome"]) == ("HTTP 503", "retry")
    retry = json.loads((await ws.receive(timeout=10)).data)
    assert (retry["delivery_id"], retry["attempt"]) == (delivery_id, 2)
    await ws.close()


def test_the_default_session_is_one_per_user_and_business() -> None:
    assert listen.default_session("bus_demo", "alice") == "alice-bus_demo"
    assert listen.default_session("bus:x/1", "Ann Lee") == "Ann-Lee-bus-x-1"
    assert listen.valid_name(listen.default_session("b" * 128, "u" * 40))
    assert listen.valid_name(listen.default_session("...", "---"))
    assert not listen.valid_name("-x") and not listen.valid_name("a" * 65)
    assert os.sep not in listen.default_session("a/b", "c")
