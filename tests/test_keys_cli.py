"""``hookgate keys`` against a real ``hookgate serve``, and API keys wherever the command line
took the admin token: ``--token`` or ``HOOKGATE_API_KEY`` (which wins over
``HOOKGATE_ADMIN_TOKEN``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from datetime import datetime

import pytest
from arq.connections import ArqRedis
from support import run_cli, wait_healthy

pytestmark = pytest.mark.e2e


@pytest.fixture
async def gateway(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> dict[str, str]:
    """A running gateway; returns the environment the CLI needs (with the admin token)."""
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    await wait_healthy(base, spawn("serve", env))
    return {**env, "HOOKGATE_URL": base}


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=60)


async def ok(env: dict[str, str], *args: str) -> str:
    result = await cli(env, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hookgate: "), lines
    return lines[0]


async def create(env: dict[str, str], *args: str) -> tuple[str, str]:
    """``keys create``; returns the key's id and the key."""
    out = await ok(env, "keys", "create", *args)
    key_id, label, key, *_ = out.split()
    assert label == "key" and key.startswith(f"hgk_{key_id}_") and "shown only now" in out
    return key_id, key


async def test_keys_are_created_listed_used_and_revoked(gateway: dict[str, str]) -> None:
    key_id, key = await create(
        gateway,
        "--name",
        "support desk",
        "--scope",
        "read,deliveries:replay",
        "--business",
        "bus_a",
    )
    listing = await ok(gateway, "keys", "ls")
    header, row = listing.splitlines()
    assert header.split()[:4] == ["KEY", "NAME", "SCOPES", "BUSINESS"]
    assert row.startswith(key_id) and "support desk" in row
    assert "deliveries:replay,read" in row and "bus_a" in row and "active" in row
    assert key not in listing

    # The key instead of the admin token, through the environment and through --token.
    await ok(gateway, "endpoints", "create", "http://127.0.0.1:9/a", "--business", "bus_a")
    await ok(gateway, "endpoints", "create", "http://127.0.0.1:9/b", "--business", "bus_b")
    as_key = {**gateway, "HOOKGATE_API_KEY": key}
    endpoints = json.loads(await ok(as_key, "endpoints", "ls", "--json"))
    assert [e["business_id"] for e in endpoints] == ["bus_a"]
    bare = {k: v for k, v in gateway.items() if k != "HOOKGATE_ADMIN_TOKEN"}
    endpoints = json.loads(await ok(bare, "endpoints", "ls", "--json", "--token", key))
    assert [e["business_id"] for e in endpoints] == ["bus_a"]
    # what its scopes do not allow: one line, exit 2
    refused = await cli(
        as_key, "endpoints", "create", "http://127.0.0.1:9/c", "--business", "bus_a"
    )
    assert "endpoints:write" in one_line_error(refused)
    # HOOKGATE_API_KEY wins over HOOKGATE_ADMIN_TOKEN: listing keys needs admin
    assert "admin" in one_line_error(await cli(as_key, "keys", "ls"))

    # used: the listing says when and from where (written within a second)
    deadline = time.monotonic() + 5
    while True:
        [shown] = json.loads(await ok(gateway, "keys", "ls", "--json"))
        if shown["last_used_at"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert shown["last_used_from"] == "127.0.0.1"

    assert (await ok(gateway, "keys", "revoke", key_id)).strip() == f"{key_id} revoked"
    assert "revoked" in (await ok(gateway, "keys", "ls")).splitlines()[1]
    deadline = time.monotonic() + 1.0
    while (result := await cli(as_key, "endpoints", "ls")).returncode == 0:
        assert time.monotonic() < deadline
    assert "unauthorized" in one_line_error(result)


async def test_expiry_as_a_duration_or_a_time(gateway: dict[str, str]) -> None:
    before = time.time()
    await create(gateway, "--name", "a", "--scope", "read", "--expires", "30d")
    await create(gateway, "--name", "b", "--scope", "read", "--expires", "2999-01-01T00:00:00Z")
    await create(gateway, "--name", "c", "--scope", "events:write", "--scope", "read")
    shown = json.loads(await ok(gateway, "keys", "ls", "--json"))
    expires = datetime.fromisoformat(shown[0]["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 30 * 86400 - 1 <= expires <= time.time() + 30 * 86400 + 1
    assert shown[1]["expires_at"] == "2999-01-01T00:00:00.000Z"
    assert shown[2]["expires_at"] is None and shown[2]["scopes"] == ["events:write", "read"]
    table = await ok(gateway, "keys", "ls")
    assert "2999-01-01 00:00:00" in table and "never" in table


BAD = [
    (["keys", "create", "--name", "k", "--scope", "superuser"], "scopes[0]"),
    (["keys", "create", "--name", "k", "--scope", "read,nope"], "scopes[1]"),
    (["keys", "create", "--name", "k", "--scope", "admin", "--business", "bus_a"], "admin"),
    (["keys", "create", "--name", "k", "--scope", "read", "--business", "a b"], "business_id"),
    (["keys", "create", "--name", "", "--scope", "read"], "name"),
    (["keys", "create", "--name", "k", "--scope", "read", "--expires", "soon"], "--expires"),
    (["keys", "create", "--name", "k", "--scope", "read", "--expires", "99999999d"], "--expires"),
    (
        ["keys", "create", "--name", "k", "--scope", "read", "--expires", "2001-01-01T00:00:00Z"],
        "expires_at: is not in the future",
    ),
    (["keys", "revoke", "key_01JD0000000000000000000000"], "no API key"),
    (["keys", "revoke", "nope"], "not_found"),
]


@pytest.mark.parametrize(("args", "said"), BAD, ids=[" ".join(a[1:4]) for a, _ in BAD])
async def test_bad_input_is_one_line_and_exit_2(
    gateway: dict[str, str], args: list[str], said: str
) -> None:
    assert said in one_line_error(await cli(gateway, *args))
    assert json.loads(await ok(gateway, "keys", "ls", "--json")) == []
