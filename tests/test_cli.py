"""The operator's command line against real ``hookgate serve`` and ``worker`` processes:
a merchant missed webhooks, the receiver is fixed, `hookgate replay` sends them again."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from arq.connections import ArqRedis
from standardwebhooks import Webhook
from support import run_cli, wait_healthy

from gateway.cli.redis_server import free_port

pytestmark = pytest.mark.e2e


class Merchant:
    """A receiver that verifies signatures and answers 500 until it is fixed."""

    def __init__(self) -> None:
        self.fixed = False
        self.secret = ""
        self.verified: list[tuple[str, dict[str, Any]]] = []
        self.failed = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.fixed:
            self.failed += 1
            return web.Response(status=500, text="database down")
        event = Webhook(self.secret).verify(body, dict(request.headers))
        self.verified.append((request.headers["webhook-id"], event))
        return web.Response(status=204)


@pytest.fixture
async def merchant() -> AsyncIterator[Merchant]:
    m = Merchant()
    app = web.Application()
    app.router.add_post("/hook", m.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    m.url = f"http://127.0.0.1:{port}/hook"
    yield m
    await runner.cleanup()


@pytest.fixture
async def gateway(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> dict[str, str]:
    """A running gateway and worker; returns the environment the CLI needs."""
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    serve = spawn("serve", env)
    spawn("worker", env)
    await wait_healthy(base, serve)
    return {**env, "HOOKGATE_URL": base}


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=60)


def created_id(output: str) -> str:
    return output.split()[0]


def attempt_lines(log_dir: Path, delivery_id: str | None = None) -> list[dict[str, Any]]:
    """The worker's per-attempt log lines (the ``gateway`` fixture's worker logs JSON)."""
    events = [json.loads(line) for line in (log_dir / "worker-1.log").read_text().splitlines()]
    return [
        e
        for e in events
        if e["event"].split(".")[:2] == ["hookgate", "delivery"]
        and "status_code" in e
        and delivery_id in (None, e.get("delivery_id"))
    ]


async def test_a_missed_webhook_is_found_and_replayed_from_the_cli(
    gateway: dict[str, str], merchant: Merchant, tmp_path: Path
) -> None:
    made = await cli(gateway, "endpoints", "create", merchant.url, "--business", "bus_m")
    assert made.returncode == 0, made.stderr
    endpoint_id = created_id(made.stdout)
    merchant.secret = made.stdout.split("secret ")[1].split()[0]
    sent = []
    for i in range(4):
        result = await cli(
            gateway, "events", "send", "--type", "payment.succeeded", "--business", "bus_m",
            "--data", json.dumps({"n": i}),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        sent.append(created_id(result.stdout))

    async def all_failed() -> bool:
        listing = await cli(
            gateway, "deliveries", "ls", "--endpoint", endpoint_id, "--status", "failed",
            "--since", "1h", "--json",
        )  # fmt: skip
        return len(json.loads(listing.stdout)["data"]) == 4

    async with asyncio.timeout(20):
        while not await all_failed():
            await asyncio.sleep(0.2)
    table = await cli(gateway, "deliveries", "ls", "--endpoint", endpoint_id, "--since", "2h")
    assert table.stdout.splitlines()[0].split()[:3] == ["DELIVERY", "STATUS", "TYPE"]
    assert table.stdout.count("failed") == 4
    first = table.stdout.splitlines()[1].split()[0]
    shown = await cli(gateway, "deliveries", "show", first)
    assert shown.stdout.count("database down") == 4 and shown.stdout.count("HTTP 500") == 4
    dry = await cli(gateway, "replay", "--endpoint", endpoint_id, "--since", "1h", "--dry-run")
    assert dry.stdout.strip() == "4 deliveries would be replayed"

    merchant.fixed = True
    replay = await cli(gateway, "replay", "--endpoint", endpoint_id, "--since", "1h")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replayed 4 of 4: 4 succeeded, 0 failed, 0 cancelled, 0 skipped" in replay.stdout
    assert sorted(webhook_id for webhook_id, _ in merchant.verified) == sorted(sent)
    assert sorted(e["data"]["n"] for _, e in merchant.verified) == [0, 1, 2, 3]

    # one delivery again, by id; it succeeded, so replaying it sends it once more
    one = await cli(gateway, "replay", first)
    assert one.returncode == 0 and one.stdout.strip().endswith("succeeded")
    assert len(merchant.verified) == 5

    # a success is logged at info, and a recorded attempt reads as recorded, not as "ok"
    succeeded = [e for e in attempt_lines(tmp_path) if e["event"].endswith(".succeeded")]
    assert len(succeeded) == 5
    assert all(e["level"] == "info" and e["recorded"] is True for e in succeeded)


async def test_a_replay_that_fails_again_exits_1(
    gateway: dict[str, str], merchant: Merchant, tmp_path: Path
) -> None:
    made = await cli(gateway, "endpoints", "create", merchant.url, "--business", "bus_m")
    endpoint_id = created_id(made.stdout)
    sent = await cli(gateway, "events", "send", "--type", "credit.added", "--business", "bus_m")
    delivery_id = sent.stdout.split()[-1]
    assert sent.stdout.splitlines()[0].endswith(" → 1 delivery")

    async def failed() -> bool:
        shown = await cli(gateway, "deliveries", "show", delivery_id, "--json")
        return bool(json.loads(shown.stdout)["status"] == "failed")

    async with asyncio.timeout(20):
        while not await failed():
            await asyncio.sleep(0.2)
    dry = await cli(gateway, "replay", "--endpoint", endpoint_id, "--since", "10m", "--dry-run")
    assert dry.stdout.strip() == "1 delivery would be replayed"
    replay = await cli(gateway, "replay", "--endpoint", endpoint_id, "--since", "10m")
    assert replay.returncode == 1
    assert replay.stdout.startswith("replay ") and ": 1 delivery\n" in replay.stdout
    assert "0 succeeded, 1 failed" in replay.stdout

    # every failed attempt is a warning, and nothing on its line reads like success
    async with asyncio.timeout(5):  # the worker logs just after it records
        while len(lines := attempt_lines(tmp_path, delivery_id)) < 8:
            await asyncio.sleep(0.1)
    assert [e["event"] for e in lines] == [
        *["hookgate.delivery.retry"] * 3,
        "hookgate.delivery.failed",
        *["hookgate.delivery.retry"] * 3,
        "hookgate.delivery.failed",
    ]
    for e in lines:
        assert e["level"] == "warning" and e["status_code"] == 500, e
        assert e["recorded"] is True and "state" not in e and "ok" not in e.values(), e


async def test_events_of_a_disabled_endpoint_replay_after_enabling(
    gateway: dict[str, str], merchant: Merchant
) -> None:
    merchant.fixed = True
    made = await cli(gateway, "endpoints", "create", merchant.url, "--business", "bus_m")
    endpoint_id = created_id(made.stdout)
    merchant.secret = made.stdout.split("secret ")[1].split()[0]
    off = await cli(gateway, "endpoints", "disable", endpoint_id, "--reason", "migrating")
    assert off.stdout.strip() == f"{endpoint_id} disabled: migrating"
    for i in range(3):
        await cli(gateway, "events", "send", "--type", "refund.succeeded", "--business", "bus_m",
                  "--data", json.dumps({"n": i}))  # fmt: skip
    listing = await cli(gateway, "endpoints", "ls", "--business", "bus_m")
    assert "disabled" in listing.stdout
    refused = await cli(gateway, "replay", "--endpoint", endpoint_id, "--since", "1h")
    assert refused.returncode == 2 and "enable it first" in refused.stderr
    assert (await cli(gateway, "endpoints", "enable", endpoint_id)).returncode == 0
    replay = await cli(gateway, "replay", "--endpoint", endpoint_id, "--since", "1h")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert sorted(e["data"]["n"] for _, e in merchant.verified) == [0, 1, 2]
    test = await cli(gateway, "endpoints", "test", endpoint_id)
    assert test.returncode == 0 and test.stdout.startswith("evt_")
    rotated = await cli(gateway, "endpoints", "rotate-secret", endpoint_id)
    assert "new secret whsec_" in rotated.stdout


BAD_ARGUMENTS = [
    ["replay", "dlv_01JD00000000000000000000001"],
    ["replay", "--endpoint", "ep_01JD0000000000000000000000", "--since", "1h"],
    ["replay", "--endpoint", "ep_x", "--since", "2h", "--until", "3h"],
    ["replay", "--endpoint", "ep_x", "--since", "yesterday"],
    ["replay", "--endpoint", "ep_x"],
    ["replay"],
    ["replay", "dlv_x", "--endpoint", "ep_x"],
    ["deliveries", "ls", "--since", "5 minutes"],
    ["deliveries", "ls", "--status", "lost"],
    ["deliveries", "ls", "--cursor", "garbage"],
    ["deliveries", "show", "dlv_nope"],
    ["events", "send", "--type", "nope.never", "--business", "b"],
    ["events", "send", "--type", "payment.succeeded", "--business", "b", "--data", "{"],
    ["events", "send", "--type", "payment.succeeded", "--business", "b", "--data", "@/nope"],
    ["events", "send", "--type", "payment.succeeded", "--business", "b", "--data", "[1]"],
    ["endpoints", "create", "ftp://x", "--business", "b"],
    ["endpoints", "create", "http://x", "--business", "b", "--header", "novalue"],
    ["endpoints", "disable", "ep_01JD0000000000000000000000"],
]


async def test_bad_arguments_exit_2_with_a_reason(gateway: dict[str, str]) -> None:
    results = await asyncio.gather(*(cli(gateway, *args) for args in BAD_ARGUMENTS))
    for args, result in zip(BAD_ARGUMENTS, results, strict=True):
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and ("hookgate:" in lines[-1] or "Error:" in lines[-1]), (args, lines)


def test_an_unreachable_gateway_exits_1(env: dict[str, str]) -> None:
    result = run_cli(
        "deliveries", "ls", env={**env, "HOOKGATE_URL": f"http://127.0.0.1:{free_port()}"}
    )
    assert result.returncode == 1 and "cannot reach" in result.stderr


def test_a_missing_token_is_a_usage_error(env: dict[str, str]) -> None:
    bare = {k: v for k, v in env.items() if k not in ("HOOKGATE_ADMIN_TOKEN", "HOOKGATE_API_KEY")}
    result = run_cli("deliveries", "ls", env=bare)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hookgate: no token: set HOOKGATE_ADMIN_TOKEN (or HOOKGATE_API_KEY), or pass --token"
    ]


def test_an_unreachable_gateway_is_named(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("endpoints", "ls", env={**env, "HOOKGATE_URL": url})
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.strip() == f"hookgate: cannot reach {url}: Connection refused"


async def test_a_refused_token_names_the_gateway_that_refused_it(gateway: dict[str, str]) -> None:
    """A CLI pointed at another gateway than meant hears which URL answered, not just 401."""
    url = gateway["HOOKGATE_URL"]
    wrong = {**gateway, "HOOKGATE_ADMIN_TOKEN": "hgdev_not-this-gateways-token"}
    result = await cli(wrong, "deliveries", "ls")
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"hookgate: {url} answered 401 (")
    assert line.endswith(
        "the token from --token, HOOKGATE_API_KEY or HOOKGATE_ADMIN_TOKEN is not accepted there"
    )


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_duration_is_one_line(env: dict[str, str], option: str) -> None:
    # parsed before any request, so no gateway is needed
    result = run_cli("deliveries", "ls", option, "5 minutes", env=env)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"hookgate: {option}: ") and "Usage:" not in result.stderr


def test_a_bad_port_is_one_line_in_words(env: dict[str, str]) -> None:
    result = run_cli("serve", env={**env, "HOOKGATE_PORT": "abc"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hookgate: HOOKGATE_PORT='abc' is invalid: expected a port number 1-65535 "
        "(not a whole number)"
    ]


def test_a_port_in_use_is_one_line_naming_it(env: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_cli("serve", env={**env, "HOOKGATE_PORT": str(port)}, timeout=30)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"hookgate: port {port} on 127.0.0.1 is in use: stop what holds it, or set HOOKGATE_PORT"
    )
    assert "Errno" not in result.stderr and "Traceback" not in result.stderr
