"""``hookgate trigger`` and ``hookgate event-types ls``: the example events (one per catalogue
type, shaped like the billing platform's), the flows, and the commands against a real
``hookgate serve`` (and worker, where a flow must arrive)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from arq.connections import ArqRedis
from conftest import Receiver
from support import AUTH, run_cli, wait_healthy

from gateway.cli import dev, trigger
from gateway.cli.redis_server import free_port
from gateway.core import fixtures
from gateway.core.catalog import load_catalog

CATALOG = sorted(load_catalog())
PAYLOAD_TYPES = {
    "payment": "Payment",
    "refund": "Refund",
    "dispute": "Dispute",
    "subscription": "Subscription",
    "license_key": "LicenseKey",
    "payout": "Payout",
    "credit": "Credit",
    "abandoned_checkout": "AbandonedCheckout",
    "dunning": "Dunning",
    "entitlement_grant": "EntitlementGrant",
}
# The status of each type's object where it is not the type's own last word (payment.failed:
# "failed").
STATUSES = {
    "payout.created": "not_initiated",
    "subscription.renewed": "active",
    "subscription.plan_changed": "active",
    "subscription.updated": "active",
    "subscription.update_payment_method": "active",
    "license_key.created": "active",
    "abandoned_checkout.detected": "abandoned",
    "dunning.started": "active",
    "entitlement_grant.created": "pending",
}
PRORATION_MODES = {"prorated_immediately", "difference_immediately", "full_immediately"}
NOW = datetime(2027, 3, 1, 8, 0, 0, tzinfo=UTC)


def counter() -> Callable[[str], str]:
    """Deterministic fresh ids: pay_000001, cus_000002, …"""
    n = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(n):06d}"


def example(event_type: str, fresh: Callable[[str], str] | None = None) -> dict[str, Any]:
    [event] = fixtures.events((fixtures.Step(event_type),), "bus_t", NOW, fresh or counter())
    return event


def strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every string in ``value`` with the key it sits under."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v, key)
    elif isinstance(value, str):
        yield key, value


def ids_of(value: Any) -> set[str]:
    return {v for k, v in strings(value) if k.endswith("_id")}


# ---- the examples ------------------------------------------------------------------------


def test_the_examples_cover_exactly_the_catalogue() -> None:
    """A type added to the catalogue without an example fails here (and so would an example
    of a type the catalogue does not have)."""
    assert fixtures.example_types() == load_catalog()
    assert {t.split(".")[0] for t in CATALOG} == set(PAYLOAD_TYPES)


@pytest.mark.parametrize("event_type", CATALOG)
def test_each_example_is_shaped_like_the_platforms(event_type: str) -> None:
    event = example(event_type)
    data = event["data"]
    family, _, action = event_type.partition(".")
    assert event == {"business_id": "bus_t", "type": event_type, "data": data}
    assert data["payload_type"] == PAYLOAD_TYPES[family]
    if family != "credit":  # a credit movement has no state of its own
        assert data["status"] == STATUSES.get(event_type, action)
    for key, value in strings(data):
        if key.endswith("_id"):  # a prefix that is neither would go out unchanged every time
            prefix = value.split("_")[0]
            assert prefix in fixtures.FRESH_PREFIXES | fixtures.STABLE_PREFIXES, (key, value)
            if prefix in fixtures.FRESH_PREFIXES:  # made new, not left as the file has it
                assert re.fullmatch(rf"{prefix}_\d{{6}}", value), (key, value)
        if key.endswith(("_at", "_date")) or key == "evidence_due_by":
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    for holder in [data, *(v for v in data.values() if isinstance(v, dict))]:
        if "amount" in holder:
            assert type(holder["amount"]) is int and holder["amount"] > 0
            assert re.fullmatch(r"[A-Z]{3}", holder["currency"])
    if "customer" in data:
        assert data["customer"]["customer_id"].startswith("cus_")
        assert "@" in data["customer"]["email"]


def test_a_plan_change_names_its_proration_and_both_products() -> None:
    data = example("subscription.plan_changed")["data"]
    assert data["proration_billing_mode"] in PRORATION_MODES
    assert data["previous_product_id"].startswith("prod_")
    assert data["product_id"].startswith("prod_")
    assert data["previous_product_id"] != data["product_id"]


@pytest.mark.parametrize("event_type", [t for t in CATALOG if t.startswith("credit.")])
def test_credit_events_carry_units_and_balances(event_type: str) -> None:
    data = example(event_type)["data"]
    assert data["credit_id"].startswith("cr_") and data["unit"] == "api_calls"
    units, before, after = data["units"], data["balance_before"], data["balance_after"]
    assert all(type(n) is int for n in (units, before, after)) and units > 0
    assert after - before in (units, -units, 0)  # moved by its units, or carried over as is
    if event_type == "credit.balance_low":
        assert type(data["threshold"]) is int and after < data["threshold"] <= before


def test_every_use_makes_fresh_ids() -> None:
    first = example("payment.succeeded", fixtures.random_id)
    second = example("payment.succeeded", fixtures.random_id)
    assert first["data"]["payment_id"] != second["data"]["payment_id"]
    fresh_ones = {v for v in ids_of(first["data"]) if not v.startswith("prod_")}
    assert len(fresh_ones) == 3  # the payment, its customer, its subscription
    assert not fresh_ones & ids_of(second["data"])
    assert all(re.fullmatch(r"[a-z]+_[0-9A-Za-z]{18}", v) for v in fresh_ones)
    # the products are the merchant's catalogue: the same in both
    assert first["data"]["product_cart"] == second["data"]["product_cart"]
    # nothing of the file's own ids goes out
    shipped = ids_of(fixtures.load().data["payment.succeeded"])
    assert not shipped & fresh_ones


@pytest.mark.parametrize("flow", fixtures.FLOWS, ids=lambda flow: flow.name)
def test_a_flow_is_about_one_customer_and_one_subscription(flow: fixtures.Flow) -> None:
    events = fixtures.events(flow.steps, "bus_t", NOW, counter())
    assert [e["type"] for e in events] == [step.type for step in flow.steps]
    key = fixtures.ordering_key(events)
    assert re.fullmatch(r"sub_\d{6}", key)
    assert all(e["data"]["subscription_id"] == key for e in events)
    assert len({e["data"]["customer"]["customer_id"] for e in events}) == 1
    again = fixtures.events(flow.steps, "bus_t", NOW, fixtures.random_id)
    assert fixtures.ordering_key(again) != key


def test_the_flows_named_in_the_help() -> None:
    assert [flow.name for flow in fixtures.FLOWS] == [
        "on-hold-recovery",
        "plan-change",
        "renewal",
        "credit-lifecycle",
    ]
    assert [s.type for s in fixtures.FLOWS_BY_NAME["on-hold-recovery"].steps] == [
        "payment.failed",
        "subscription.on_hold",
        "payment.succeeded",
        "subscription.active",
    ]


def test_a_retry_is_a_new_payment_and_an_upgrade_charges_the_difference() -> None:
    recovery = fixtures.events(
        fixtures.FLOWS_BY_NAME["on-hold-recovery"].steps, "bus_t", NOW, counter()
    )
    failed, on_hold, succeeded, active = (e["data"] for e in recovery)
    assert failed["payment_id"] != succeeded["payment_id"]
    assert on_hold["failed_payment_id"] == failed["payment_id"]
    assert active["last_payment_id"] == succeeded["payment_id"]
    change = fixtures.events(fixtures.FLOWS_BY_NAME["plan-change"].steps, "bus_t", NOW, counter())
    changed, paid, updated = (e["data"] for e in change)
    assert paid["amount"] == changed["amount"] - changed["previous_amount"]
    assert paid["product_cart"][0]["product_id"] == changed["product_id"] == updated["product_id"]
    # the step's change is the flow's own: the type's example stays as it was
    assert example("payment.succeeded")["data"]["amount"] == 2999


def test_times_move_to_now() -> None:
    reference = fixtures.load().reference_time
    data = example("subscription.renewed")["data"]
    shift = NOW - reference
    shipped = fixtures.load().data["subscription.renewed"]
    for key in ("next_billing_date", "previous_billing_date", "created_at"):
        was = datetime.strptime(shipped[key], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert data[key] == (was + shift).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["previous_billing_date"] == "2027-03-01T08:00:00Z"  # the renewal is now


def test_an_ordering_key_needs_one_subscription() -> None:
    events = fixtures.events(fixtures.FLOWS_BY_NAME["renewal"].steps, "bus_t", NOW, counter())
    events[1]["data"]["subscription_id"] = "sub_other"
    with pytest.raises(ValueError, match=r"one data\.subscription_id"):
        fixtures.ordering_key(events)
    for bad in (42, "", None):
        for event in events:
            event["data"]["subscription_id"] = bad
        with pytest.raises(ValueError):
            fixtures.ordering_key(events)


def test_the_default_business_is_the_dev_modes() -> None:
    assert trigger.DEFAULT_BUSINESS == dev.DEMO_BUSINESS


# ---- against a real gateway --------------------------------------------------------------


async def start_gateway(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], *, worker: bool = False
) -> dict[str, str]:
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    serve = spawn("serve", env)
    if worker:
        spawn("worker", env)
    await wait_healthy(base, serve)
    return {**env, "HOOKGATE_URL": base}


@pytest.fixture
async def gateway(
    env: dict[str, str], spawn: Callable[..., subprocess.Popen[bytes]], redis: ArqRedis
) -> dict[str, str]:
    """A running gateway (no worker); returns the environment the CLI needs."""
    return await start_gateway(env, spawn)


async def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args, env=env, timeout=60)


async def ok(env: dict[str, str], *args: str) -> str:
    result = await cli(env, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hookgate: "), lines
    return lines[0]


async def api(env: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, env["HOOKGATE_URL"] + path, json=body, headers=AUTH) as resp,
    ):
        assert resp.status < 300, (resp.status, await resp.text())
        return await resp.json()


async def test_every_example_is_an_event_the_gateway_accepts(gateway: dict[str, str]) -> None:
    await api(
        gateway, "POST", "/v1/endpoints", {"business_id": "bus_demo", "url": "http://127.0.0.1:9/h"}
    )
    async with aiohttp.ClientSession() as session:
        for event_type in CATALOG:
            [event] = fixtures.events((fixtures.Step(event_type),), "bus_demo", NOW)
            url = gateway["HOOKGATE_URL"] + "/v1/events"
            async with session.post(url, json=event, headers=AUTH) as resp:
                answer = await resp.json()
                assert resp.status == 202, (event_type, answer)
            assert answer["type"] == event_type and len(answer["deliveries"]) == 1
            stored = await api(gateway, "GET", f"/v1/events/{answer['id']}")
            assert stored["payload"]["data"] == event["data"]

    # the command sends the same: to bus_demo (hookgate dev's) unless told otherwise
    out = await ok(gateway, "trigger", "subscription.plan_changed")
    header, line = out.splitlines()
    assert header == "business bus_demo"
    kind, event_id, arrow, count, noun = line.split()
    assert (kind, arrow, count, noun) == ("subscription.plan_changed", "→", "1", "delivery")
    stored = await api(gateway, "GET", f"/v1/events/{event_id}")
    assert stored["business_id"] == "bus_demo"
    assert stored["payload"]["data"]["proration_billing_mode"] in PRORATION_MODES


async def test_overrides_change_the_event(gateway: dict[str, str]) -> None:
    env = {**gateway, "HOOKGATE_BUSINESS": "bus_env"}
    out = await ok(
        env, "trigger", "payment.succeeded", "--json",
        "--override", "data.amount=5000",
        "--override", "data.customer.email=a@b.c",
        "--override", "data.note=hello world",
        "--override", 'data.tags=["x", 1]',
        "--override", "data.card_last_four=0042",
        "--override", "data.tax=120",
        "--override", 'data.error_code="120"',
        "--override", "data.cancel_at_period_end=true",
        "--override", "data.discount_id=null",
        "--override", "data.metadata.order=1=2",
        "--override", "timestamp=2026-01-02T03:04:05Z",
    )  # fmt: skip
    [answer] = json.loads(out)
    assert answer["business_id"] == "bus_env" and answer["type"] == "payment.succeeded"
    assert answer["deliveries"] == [] and answer["duplicate"] is False
    stored = await api(gateway, "GET", f"/v1/events/{answer['id']}")
    data = stored["payload"]["data"]
    assert data["amount"] == 5000 and data["currency"] == "USD"
    assert data["customer"]["email"] == "a@b.c" and data["customer"]["name"] == "Ada Lovelace"
    assert data["note"] == "hello world" and data["tags"] == ["x", 1]
    assert data["card_last_four"] == "0042"  # not JSON (a leading zero): the text
    assert data["tax"] == 120 and data["error_code"] == "120"  # JSON; quoted, a string
    assert data["cancel_at_period_end"] is True and data["discount_id"] is None
    assert data["metadata"] == {"order": "1=2"}
    assert stored["payload"]["timestamp"] == "2026-01-02T03:04:05Z"

    # --business wins over the environment; two triggers are two different payments
    again = json.loads(
        await ok(env, "trigger", "payment.succeeded", "--business", "bus_x", "--json")
    )
    assert again[0]["business_id"] == "bus_x"
    other = (await api(gateway, "GET", f"/v1/events/{again[0]['id']}"))["payload"]["data"]
    assert other["payment_id"] != data["payment_id"]
    assert other["customer"]["customer_id"] != data["customer"]["customer_id"]


BAD_TRIGGERS: list[tuple[list[str], str]] = [
    (["payment.succeeded", "--override", "data.amount"], "expected PATH=VALUE"),
    (["payment.succeeded", "--override", "data..amount=1"], "empty part"),
    (["payment.succeeded", "--override", ".amount=1"], "empty part"),
    (["payment.succeeded", "--override", "data.=1"], "empty part"),
    (["payment.succeeded", "--override", "=1"], "empty part"),
    (["payment.succeeded", "--override", "business_id=bus_x"], "only data"),
    (["payment.succeeded", "--override", "type=refund.failed"], "only data"),
    (["payment.succeeded", "--override", "ordering_key=k"], "only data"),
    (["payment.succeeded", "--override", "data.amount.value=1"], "data.amount is a number"),
    (["payment.succeeded", "--override", "data.customer.email.x=1"], "is a string"),
    (["payment.succeeded", "--override", "data.product_cart.0.quantity=2"], "is an array"),
    (["payment.succeeded", "--override", "data.nothing.here=1"], "has no data.nothing"),
    (["payment.succeeded", "--override", "data=[1]"], "must be a JSON object"),
    (["payment.succeeded", "--override", "timestamp.x=1"], "has no timestamp"),
    (["payment.succeeded", "--override", "data.x=" + "[" * 100_000], "nests too deeply"),
    (["--flow", "renewal", "--override", "data.subscription_id=42"], "subscription id"),
    (
        ["--flow", "nope"],
        "unknown flow 'nope'; the flows are on-hold-recovery, plan-change, "
        "renewal, credit-lifecycle",
    ),
    (["--flow", "renewal", "payment.succeeded"], "not both"),
    ([], "give an event type"),
    (["hookgate.test"], "hookgate.* family"),
    (["hookgate.delivery.exhausted"], "hookgate.* family"),
]


async def test_bad_triggers_exit_2_and_send_nothing(env: dict[str, str]) -> None:
    """Checked before anything is sent: the gateway named is not even there (a send would
    exit 1, "cannot reach")."""
    nowhere = {**env, "HOOKGATE_URL": f"http://127.0.0.1:{free_port()}"}
    results = await asyncio.gather(*(cli(nowhere, "trigger", *args) for args, _ in BAD_TRIGGERS))
    for (args, reason), result in zip(BAD_TRIGGERS, results, strict=True):
        line = one_line_error(result)
        assert reason in line, (args[:4], line)
        assert result.stdout == "", args[:4]


async def test_an_unknown_type_exits_2_naming_the_closest(gateway: dict[str, str]) -> None:
    await api(gateway, "POST", "/v1/event-types", {"name": "order.shipped"})
    cases = {
        "payment.succeded": "did you mean payment.succeeded",
        "Payment.Succeeded": "did you mean payment.succeeded",
        "order.shiped": "did you mean order.shipped",  # registered on the gateway
        "subscription.onhold": "did you mean subscription.on_hold",
        "zzz.qqq": "unknown event type 'zzz.qqq' (hookgate event-types ls lists them)",
        "order.shipped": "order.shipped has no example event: send one with hookgate events send",
    }
    results = await asyncio.gather(*(cli(gateway, "trigger", t) for t in cases))
    for (event_type, reason), result in zip(cases.items(), results, strict=True):
        assert reason in one_line_error(result), event_type
        assert result.stdout == ""
    # the gateway's own refusals read as the other commands': one line, exit 2
    bad_business = await cli(gateway, "trigger", "payment.succeeded", "--business", "bad id!")
    assert "business_id" in one_line_error(bad_business)
    wrong = await cli(
        {**gateway, "HOOKGATE_ADMIN_TOKEN": "not-this-one"}, "trigger", "payment.failed"
    )
    assert one_line_error(wrong).startswith(f"hookgate: {gateway['HOOKGATE_URL']} answered 401")


async def test_event_types_ls_shows_the_catalogue_and_registered_types(
    gateway: dict[str, str],
) -> None:
    await api(
        gateway, "POST", "/v1/event-types",
        {"name": "order.shipped", "description": "Orders leaving the warehouse"},
    )  # fmt: skip
    out = await ok(gateway, "event-types", "ls")
    lines = out.splitlines()
    assert lines[0] == "catalogue"
    registered_at = lines.index("registered")
    catalogue = " ".join(lines[1:registered_at])
    assert sorted(catalogue.split()) == sorted(CATALOG + list(PAYLOAD_TYPES))
    assert any(line.split()[:2] == ["payment", "payment.cancelled"] for line in lines)
    assert lines[registered_at + 1 :] == ["  order.shipped  Orders leaving the warehouse"]
    listed = json.loads(await ok(gateway, "event-types", "ls", "--json"))
    assert {"name": "order.shipped", "source": "registered",
            "description": "Orders leaving the warehouse"} in listed  # fmt: skip
    assert {t["name"] for t in listed if t["source"] == "catalog"} == set(CATALOG)
    assert (await cli(gateway, "event-types", "ls", "--nope")).returncode == 2


async def test_without_registered_types_the_listing_says_so(gateway: dict[str, str]) -> None:
    out = await ok(gateway, "event-types", "ls")
    assert out.splitlines()[-2:] == ["registered", "  none (POST /v1/event-types registers one)"]


@pytest.mark.parametrize("args", [["trigger", "payment.succeeded"], ["event-types", "ls"]])
def test_a_missing_token_or_an_unreachable_gateway_is_one_line(
    env: dict[str, str], args: list[str]
) -> None:
    """As for every operator command: no token is a usage error (2); a gateway that is not
    there exits 1, naming it."""
    bare = {k: v for k, v in env.items() if k not in ("HOOKGATE_ADMIN_TOKEN", "HOOKGATE_API_KEY")}
    assert one_line_error(run_cli(*args, env=bare)) == (
        "hookgate: no token: set HOOKGATE_ADMIN_TOKEN (or HOOKGATE_API_KEY), or pass --token"
    )
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli(*args, env={**env, "HOOKGATE_URL": url})
    assert one_line_error(result, code=1) == f"hookgate: cannot reach {url}: Connection refused"
    assert result.stdout == ""


async def test_flows_arrive_in_order_about_one_subscription(
    env: dict[str, str],
    spawn: Callable[..., subprocess.Popen[bytes]],
    redis: ArqRedis,
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    """Each flow's events reach an ordered endpoint in the flow's order, all about the one
    subscription whose id is their ordering key."""
    gateway = await start_gateway(env, spawn, worker=True)
    merchant = await receiver()
    endpoint = {"business_id": "bus_flow", "url": merchant.url, "ordered": True}
    await api(gateway, "POST", "/v1/endpoints", endpoint)
    arrived = 0
    for flow in fixtures.FLOWS:
        out = await ok(gateway, "trigger", "--flow", flow.name, "--business", "bus_flow")
        header, *lines = out.splitlines()
        prefix = f"business bus_flow, flow {flow.name}, ordering key "
        assert header.startswith(prefix)
        key = header.removeprefix(prefix)
        assert [line.split()[0] for line in lines] == [step.type for step in flow.steps]
        assert all(line.endswith("→ 1 delivery") for line in lines)
        sent_ids = [line.split()[1] for line in lines]
        arrived += len(flow.steps)
        await merchant.wait_for(arrived, timeout=20)
        got = merchant.requests[arrived - len(flow.steps) :]
        assert [r.headers["webhook-id"] for r in got] == sent_ids
        bodies = [json.loads(r.body) for r in got]
        assert [b["type"] for b in bodies] == [step.type for step in flow.steps]
        assert {b["ordering_key"] for b in bodies} == {key}
        assert {b["data"]["subscription_id"] for b in bodies} == {key}
        assert len({b["data"]["customer"]["customer_id"] for b in bodies}) == 1


def test_a_time_is_moved_not_rewritten() -> None:
    """A field that only looks like an id or a time is left as it is."""
    shipped = fixtures.load().data["license_key.created"]
    data = example("license_key.created")["data"]
    assert data["key"] == shipped["key"]  # not an object id
    moved = datetime.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert moved - NOW == timedelta(days=365)
