"""Real ``hookgate serve`` and ``hookgate worker`` processes, end to end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from arq.connections import ArqRedis
from standardwebhooks import Webhook, WebhookVerificationError
from support import AUTH, run_cli, wait_healthy

from gateway.cli.redis_server import free_port
from worker.heartbeat import check_heartbeat

pytestmark = pytest.mark.e2e

EVENT = {"business_id": "bus_e2e", "type": "subscription.on_hold", "data": {"sub": "sub_1"}}


@pytest.fixture
async def verifying_receiver() -> AsyncIterator[dict[str, Any]]:
    """A merchant endpoint that checks each signature and fails the first two attempts."""
    state: dict[str, Any] = {"secret": None, "attempts": {}, "verified": [], "url": ""}

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            Webhook(state["secret"]).verify(body, dict(request.headers))
        except WebhookVerificationError:
            return web.Response(status=401)
        msg_id = request.headers["webhook-id"]
        n = state["attempts"][msg_id] = state["attempts"].get(msg_id, 0) + 1
        if n <= 2:
            return web.Response(status=503, text="not yet")
        state["verified"].append(msg_id)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    state["url"] = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


async def test_events_arrive_verified_on_their_third_attempt(
    env: dict[str, str],
    spawn: Callable[..., subprocess.Popen[bytes]],
    redis: ArqRedis,
    verifying_receiver: dict[str, Any],
) -> None:
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    gateway = spawn("serve", env)
    worker = spawn("worker", env)
    await wait_healthy(base, gateway)
    async with aiohttp.ClientSession(base, headers=AUTH) as http:
        async with http.post(
            "/v1/endpoints", json={"business_id": "bus_e2e", "url": verifying_receiver["url"]}
        ) as resp:
            assert resp.status == 201
            verifying_receiver["secret"] = (await resp.json())["secret"]
        accepted = []
        for i in range(5):
            async with http.post("/v1/events", json={**EVENT, "data": {"n": i}}) as resp:
                assert resp.status == 202
                accepted.append(await resp.json())
        async with asyncio.timeout(20):
            while len(verifying_receiver["verified"]) < 5:
                await asyncio.sleep(0.1)
        assert sorted(verifying_receiver["verified"]) == sorted(a["id"] for a in accepted)
        assert set(verifying_receiver["attempts"].values()) == {3}
        for a in accepted:
            async with http.get(f"/v1/deliveries/{a['deliveries'][0]}") as resp:
                d = await resp.json()
            assert d["status"] == "succeeded"
            assert [x["status_code"] for x in d["attempts"]] == [503, 503, 204]
    # both stop cleanly on SIGTERM
    for process in (gateway, worker):
        process.send_signal(signal.SIGTERM)
    assert gateway.wait(timeout=15) == 0
    assert worker.wait(timeout=15) == 0


async def test_sigterm_lets_the_attempt_in_flight_finish(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> None:
    arrived = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await asyncio.sleep(1.5)
        return web.Response(status=200, text="done slowly")

    app = web.Application()
    app.router.add_post("/hook", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    gateway = spawn("serve", env)
    worker = spawn("worker", env)
    try:
        await wait_healthy(base, gateway)
        async with aiohttp.ClientSession(base, headers=AUTH) as http:
            url = f"http://127.0.0.1:{port}/hook"
            async with http.post("/v1/endpoints", json={"business_id": "bus_e2e", "url": url}):
                pass
            async with http.post("/v1/events", json=EVENT) as resp:
                sent = await resp.json()
            async with asyncio.timeout(10):
                await arrived.wait()
            worker.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 15) == 0
            async with http.get(f"/v1/deliveries/{sent['deliveries'][0]}") as resp:
                d = await resp.json()
        assert d["status"] == "succeeded"
        assert d["attempts"][0]["response_body"] == "done slowly"
    finally:
        await runner.cleanup()


def test_serve_refuses_to_start_without_a_token(env: dict[str, str]) -> None:
    result = run_cli("serve", env={k: v for k, v in env.items() if k != "HOOKGATE_ADMIN_TOKEN"})
    assert result.returncode == 2
    assert "HOOKGATE_ADMIN_TOKEN is required" in result.stderr


def test_serve_and_worker_need_a_valid_secret_key(env: dict[str, str]) -> None:
    for command in ("serve", "worker"):
        result = run_cli(command, env={k: v for k, v in env.items() if k != "HOOKGATE_SECRET_KEY"})
        assert result.returncode == 2 and "HOOKGATE_SECRET_KEY is required" in result.stderr
        result = run_cli(command, env={**env, "HOOKGATE_SECRET_KEY": "c2hvcnQ="})
        assert result.returncode == 2 and "HOOKGATE_SECRET_KEY" in result.stderr
        assert "c2hvcnQ=" not in result.stderr  # the key is never echoed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOKGATE_PORT", "not-a-port"),
        ("HOOKGATE_RETRY_SCHEDULE", "soon"),
        ("HOOKGATE_DELIVERY_TIMEOUT", "0s"),
        ("HOOKGATE_LOG_FORMAT", "yaml"),
        ("HOOKGATE_ALLOWED_NETWORKS", "10.0.0.1/8"),
        ("HOOKGATE_HTTPS_ONLY", "sometimes"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_it(env: dict[str, str], name: str, value: str) -> None:
    for command in ("serve", "worker"):
        result = run_cli(command, env={**env, name: value})
        assert result.returncode == 2, result.stderr
        assert name in result.stderr and "expected" in result.stderr


def test_unknown_commands_and_options_exit_2(env: dict[str, str]) -> None:
    assert run_cli("nope", env=env).returncode == 2
    assert run_cli("serve", "--nope", env=env).returncode == 2
    assert "hookgate" in run_cli("--version", env=env).stdout


async def test_health_checks_of_serve_and_worker(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """``hookgate serve --check`` / ``worker --check``: the image's health checks."""
    env = {**env, "HOOKGATE_WORKER_HEARTBEAT": str(tmp_path / "worker.heartbeat")}
    # nothing running yet: both unhealthy (exit 1), saying why
    down = run_cli("serve", "--check", env=env)
    assert down.returncode == 1 and "unhealthy" in down.stderr and "/readyz" in down.stderr
    down = run_cli("worker", "--check", env=env)
    assert down.returncode == 1 and "no worker heartbeat" in down.stderr
    gateway, worker = spawn("serve", env), spawn("worker", env)
    await wait_healthy(f"http://127.0.0.1:{env['HOOKGATE_PORT']}", gateway)
    assert run_cli("serve", "--check", env=env).returncode == 0
    async with asyncio.timeout(15):
        while run_cli("worker", "--check", env=env).returncode != 0:
            await asyncio.sleep(0.2)
    heartbeat = tmp_path / "worker.heartbeat"
    # a bad setting is still a usage error
    assert run_cli("serve", "--check", env={**env, "HOOKGATE_PORT": "x"}).returncode == 2
    # a stopped worker removes its heartbeat; a stopped gateway does not answer
    for process in (gateway, worker):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert not heartbeat.exists()
    assert run_cli("worker", "--check", env=env).returncode == 1
    assert run_cli("serve", "--check", env=env).returncode == 1


def test_a_stale_heartbeat_is_unhealthy(tmp_path: Path) -> None:
    """A worker whose loop is stuck (or cannot reach Redis) stops touching its heartbeat."""
    heartbeat = tmp_path / "worker.heartbeat"
    assert "no worker heartbeat" in str(check_heartbeat(str(heartbeat)))
    heartbeat.touch()
    assert check_heartbeat(str(heartbeat)) is None
    os.utime(heartbeat, (time.time() - 60, time.time() - 60))
    assert "last heartbeat was 60 s ago (limit 30 s)" in str(check_heartbeat(str(heartbeat)))
