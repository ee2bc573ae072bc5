"""Defects an outside attack found, each closed as a class and tested by sending the bad input:

- the per-event size limit holds inside batches too (an oversized item is refused alone);
- event data nests at most ``MAX_DEPTH`` levels, on every ingest path, so whatever is accepted
  can be read back by the API, the portal, the CLI and delivered by the worker;
- sign-in goes on only to a plain portal path: anything else (control characters included,
  sent as raw bytes to a real ``hookgate serve``) goes to the portal's home, with an answer.

Each refusal is checked against Redis as well: nothing of a refused event is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import subprocess
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from conftest import Receiver
from support import AUTH, TOKEN, run_cli, wait_healthy

from gateway.core.limits import MAX_DEPTH, depth_over, text_may_nest_over
from gateway.core.settings import Settings
from gateway.store import keys
from gateway.web.requests import EVENT_BODY_LIMIT

Client = TestClient[Any, Any]
Start = Callable[[Settings], Awaitable[None]]
MakeReceiver = Callable[..., Awaitable[Receiver]]
Spawn = Callable[..., subprocess.Popen[bytes]]

JSON = {"Content-Type": "application/json"}
HOME = "/portal/endpoints"
EVENT_HEAD = b'{"business_id":"bus_1","type":"payment.succeeded","data":'


# ---- helpers ------------------------------------------------------------------------------


def deep_data(depth: int) -> bytes:
    """``data`` as JSON text nesting ``depth`` levels (itself the first): ``{"a":[[…"leaf"…]]}``.
    Written as bytes: building and encoding it as Python values would need a stack that deep
    in the test itself."""
    return b'{"a":' + b"[" * (depth - 1) + b'"leaf"' + b"]" * (depth - 1) + b"}"


def event_bytes(data: bytes, **extra: str) -> bytes:
    fields = b"".join(b',"%s":"%s"' % (k.encode(), v.encode()) for k, v in extra.items())
    return EVENT_HEAD + data + fields + b"}"


def nested_value(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return {"a": value}


async def post_raw(api: Client, path: str, body: bytes, **headers: str) -> Any:
    return await api.post(path, data=body, headers={**AUTH, **JSON, **headers})


async def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    assert error["code"] == code, error
    return error


async def stored_events(redis: ArqRedis) -> int:
    return len(await redis.keys(keys.event_body("*")))


async def ingested(redis: ArqRedis) -> int:
    counters = await redis.hgetall(keys.METRICS)  # type: ignore[misc]
    return int(counters.get(b"events_ingested", 0))


async def make_endpoint(api: Client, url: str = "http://127.0.0.1:9/hook") -> dict[str, Any]:
    resp = await api.post("/v1/endpoints", json={"business_id": "bus_1", "url": url}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def next_of(page: str) -> str:
    match = re.search(r'name="next" value="([^"]*)"', page)
    assert match, "the page has no next field"
    return match.group(1)


# ---- 1. the per-event size limit inside batches ----------------------------------------------


def item_of_size(size: int, **extra: Any) -> bytes:
    """A batch item (compact JSON) of exactly ``size`` bytes."""
    item = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"blob": ""}, **extra}
    pad = size - len(msgspec.json.encode(item))
    assert pad >= 0
    item["data"] = {"blob": "x" * pad}
    raw = msgspec.json.encode(item)
    assert len(raw) == size
    return raw


def batch_of(*items: bytes) -> bytes:
    return b'{"events":[' + b",".join(items) + b"]}"


async def test_a_15_mb_batch_item_is_refused_alone_and_nothing_of_it_is_stored(
    api: Client, redis: ArqRedis
) -> None:
    await make_endpoint(api)
    huge = item_of_size(15 * 1024 * 1024)
    body = batch_of(item_of_size(300), huge, item_of_size(400, idempotency_key="k-1"))
    resp = await api.post("/v1/events/batch", data=io.BytesIO(body), headers={**AUTH, **JSON})
    assert resp.status == 202, await resp.text()
    result = await resp.json()
    assert (result["accepted"], result["rejected"]) == (2, 1)
    first, refused, last = result["results"]
    assert refused == {
        "index": 1,
        "status": 413,
        "error": {
            "code": "payload_too_large",
            "message": "events[1]: the event is over 256 KB",
            "details": {"field": "events[1]"},
        },
    }
    assert first["status"] == last["status"] == 202
    assert await stored_events(redis) == 2 and await ingested(redis) == 2
    for accepted in (first, last):
        got = await api.get(f"/v1/events/{accepted['id']}", headers=AUTH)
        assert got.status == 200
    # nothing of it: no stored body anywhere near its size
    lengths = [await redis.strlen(k) for k in await redis.keys(keys.event_body("*"))]
    assert len(lengths) == 2 and max(lengths) < 1024


async def test_a_batch_item_has_the_single_event_limit_to_the_byte(
    api: Client, redis: ArqRedis
) -> None:
    # the single event: its body, at the limit and one byte over
    at_limit = item_of_size(EVENT_BODY_LIMIT)
    over = item_of_size(EVENT_BODY_LIMIT + 1)
    resp = await post_raw(api, "/v1/events", at_limit)
    assert resp.status == 202, await resp.text()
    await error_of(await post_raw(api, "/v1/events", over), 413, "payload_too_large")
    # the same number for each item of a batch
    resp = await post_raw(api, "/v1/events/batch", batch_of(over, at_limit))
    statuses = [r["status"] for r in (await resp.json())["results"]]
    assert statuses == [413, 202]
    assert await stored_events(redis) == 2 and await ingested(redis) == 2


async def test_a_batch_of_only_oversized_items_stores_nothing(api: Client, redis: ArqRedis) -> None:
    await make_endpoint(api)
    before = set(await redis.keys("*"))
    over = item_of_size(EVENT_BODY_LIMIT + 1)
    resp = await post_raw(api, "/v1/events/batch", batch_of(over, over))
    assert resp.status == 202
    result = await resp.json()
    assert (result["accepted"], result["rejected"]) == (0, 2)
    assert [(r["index"], r["status"]) for r in result["results"]] == [(0, 413), (1, 413)]
    assert set(await redis.keys("*")) == before and await ingested(redis) == 0


async def test_the_openapi_document_states_the_per_item_limits(api: Client) -> None:
    doc = await (await api.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert "256 KB" in schemas["BatchItem"]["description"]
    assert "256 KB" in schemas["BatchIn"]["properties"]["events"]["description"]
    assert f"at most {MAX_DEPTH} levels" in schemas["EventIn"]["properties"]["data"]["description"]


# ---- 2. one nesting limit, enforced at ingest, so every reader can read what was accepted ----


def test_depth_is_measured_without_recursion() -> None:
    assert not depth_over({}) and not depth_over("text") and not depth_over([])
    assert not depth_over(nested_value(MAX_DEPTH)) and depth_over(nested_value(MAX_DEPTH + 1))
    five = {"a": {"b": [1, {"c": []}]}}
    assert not depth_over(five, 5) and depth_over(five, 4)
    # the deepest branch counts, wherever it is
    assert depth_over({"x": 1, "y": [[], {"z": nested_value(MAX_DEPTH)}]})
    value: list[Any] = []
    for _ in range(100_000):  # far past any recursion limit: still an answer, not an error
        value = [value]
    assert depth_over(value)


def test_counting_brackets_never_lets_a_deep_value_past() -> None:
    """The cheap count may only say "maybe": every text of a value over the limit opens more
    brackets than the limit, so the walk decides."""
    for depth in (MAX_DEPTH + 1, 200):
        assert text_may_nest_over(deep_data(depth)) and depth_over(nested_value(depth))
    assert not text_may_nest_over(deep_data(MAX_DEPTH))
    # brackets inside strings: the count says maybe, the walk says no
    in_strings = {"text": "[" * 100 + "{" * 100}
    assert text_may_nest_over(json.dumps(in_strings).encode()) and not depth_over(in_strings)


async def test_wide_data_and_brackets_in_strings_are_accepted(api: Client, redis: ArqRedis) -> None:
    """Many brackets, little depth: past the count, through the walk, and accepted."""
    wide = {"lines": [{"sku": f"s{i}", "tags": [i]} for i in range(200)], "note": "[" * 500}
    for path, body in (
        ("/v1/events", {"business_id": "bus_1", "type": "payment.succeeded", "data": wide}),
        (
            "/v1/events/batch",
            {"events": [{"business_id": "bus_1", "type": "payment.succeeded", "data": wide}]},
        ),
    ):
        resp = await api.post(path, json=body, headers=AUTH)
        assert resp.status == 202, await resp.text()
        if path.endswith("batch"):
            assert (await resp.json())["accepted"] == 1
    assert await stored_events(redis) == 2


def test_the_depth_check_is_cheap_on_a_1_kb_event() -> None:
    data = {
        "id": "pay_01JD8X2Y3Z4A5B6C7D8E9F0G1H",
        "amount": 12999,
        "currency": "EUR",
        "customer": {"id": "cus_1", "email": "jane@example.com", "address": {"city": "Paris"}},
        "lines": [{"sku": f"SKU-{i:04d}", "qty": i, "amount": 1000 + i} for i in range(14)],
        "metadata": {"order_id": "ord_987654321", "channel": "web", "tags": ["a", "b"]},
    }
    raw = json.dumps({"business_id": "bus_1", "type": "payment.succeeded", "data": data}).encode()
    assert 900 <= len(raw) <= 1100

    def per_call(check: Callable[[], bool]) -> float:
        return min(timeit.repeat(check, number=2000, repeat=5)) / 2000

    walk = per_call(lambda: depth_over(data))
    ingest = per_call(lambda: text_may_nest_over(raw) and depth_over(data))  # as event_of
    print(
        f"\n[hardening] depth check, 1 KB event: walk {walk * 1e6:.2f} µs, "
        f"as ingest runs it {ingest * 1e6:.2f} µs"
    )
    assert walk < 50e-6 and ingest < 50e-6  # generous: a loaded CI machine; typically a few µs


@pytest.mark.parametrize("idempotency_key", [None, "deep-key"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 900])
async def test_data_nested_past_the_limit_is_refused_with_or_without_a_key(
    api: Client, redis: ArqRedis, depth: int, idempotency_key: str | None
) -> None:
    await make_endpoint(api)
    before = set(await redis.keys("*"))
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    resp = await post_raw(api, "/v1/events", event_bytes(deep_data(depth)), **headers)
    error = await error_of(resp, 422, "validation_failed")
    assert error["details"] == {"field": "data"}
    assert error["message"] == f"data: must nest objects and arrays at most {MAX_DEPTH} levels deep"
    assert set(await redis.keys("*")) == before and await ingested(redis) == 0


async def test_nesting_too_deep_to_parse_is_still_a_400_and_stores_nothing(
    api: Client, redis: ArqRedis
) -> None:
    before = set(await redis.keys("*"))
    resp = await post_raw(api, "/v1/events", event_bytes(deep_data(5000)))
    error = await error_of(resp, 400, "invalid_json")
    assert f"at most {MAX_DEPTH} levels" in error["message"]
    assert set(await redis.keys("*")) == before


async def sign_in(api: Client) -> None:
    page = await (await api.get("/portal/login")).text()
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": TOKEN, "next": HOME},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()


@pytest.mark.parametrize("idempotency_key", [None, "at-the-limit"])
async def test_data_at_the_limit_is_accepted_and_readable_everywhere(
    api: Client,
    redis: ArqRedis,
    settings: Settings,
    start_worker: Start,
    receiver: MakeReceiver,
    idempotency_key: str | None,
) -> None:
    r = await receiver()
    await make_endpoint(api, r.url)
    await start_worker(settings)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    resp = await post_raw(api, "/v1/events", event_bytes(deep_data(MAX_DEPTH)), **headers)
    assert resp.status == 202, await resp.text()
    event_id = (await resp.json())["id"]
    data = nested_value(MAX_DEPTH)
    # the API
    got = await api.get(f"/v1/events/{event_id}", headers=AUTH)
    assert got.status == 200, await got.text()
    assert (await got.json())["payload"]["data"] == data
    # the portal's event page
    await sign_in(api)
    page = await api.get(f"/portal/events/{event_id}")
    assert page.status == 200 and "leaf" in await page.text()
    # the worker: the stored bytes, delivered
    await r.wait_for(1)
    assert json.loads(r.requests[0].body)["data"] == data
    # the same body again with its key is the same event, not a 409 or a 500
    if idempotency_key:
        again = await post_raw(api, "/v1/events", event_bytes(deep_data(MAX_DEPTH)), **headers)
        assert again.status == 202 and (await again.json())["id"] == event_id
    assert await stored_events(redis) == 1


async def test_each_batch_item_is_held_to_the_nesting_limit(api: Client, redis: ArqRedis) -> None:
    await make_endpoint(api)
    items = [
        event_bytes(deep_data(MAX_DEPTH)),
        event_bytes(deep_data(MAX_DEPTH + 1)),
        event_bytes(deep_data(900), idempotency_key="deep-item"),
        event_bytes(b'{"n":1}', idempotency_key="flat-item"),
    ]
    resp = await post_raw(api, "/v1/events/batch", batch_of(*items))
    assert resp.status == 202, await resp.text()
    results = (await resp.json())["results"]
    assert [r["status"] for r in results] == [202, 422, 422, 202]
    for i in (1, 2):
        assert results[i]["index"] == i
        assert results[i]["error"]["code"] == "validation_failed"
        assert results[i]["error"]["details"] == {"field": f"events[{i}].data"}
        assert f"at most {MAX_DEPTH} levels" in results[i]["error"]["message"]
    assert await stored_events(redis) == 2 and await ingested(redis) == 2
    for i in (0, 3):
        assert (await api.get(f"/v1/events/{results[i]['id']}", headers=AUTH)).status == 200
    assert not await redis.exists(keys.idempotency("bus_1", "deep-item"))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        # a header value is decoded as any JSON value, so that its refusal names the header
        (b'"headers":{"X-A":' + deep_data(MAX_DEPTH + 1) + b"}", 422, "headers.X-A"),
        (b'"headers":{"X-A":' + deep_data(5000) + b"}", 400, None),
        (b'"description":' + deep_data(200), 422, "description"),
        (b'"extra":' + deep_data(200), 422, "extra"),
    ],
)
async def test_other_json_inputs_cannot_smuggle_nesting(
    api: Client, redis: ArqRedis, body: bytes, status: int, field: str | None
) -> None:
    """Every other field of every body is typed (strings, numbers, lists of strings): a nested
    value in one is the wrong type, refused whole, and nothing is stored."""
    before = set(await redis.keys("*"))
    raw = b'{"business_id":"bus_1","url":"http://127.0.0.1:9/hook",' + body + b"}"
    for method, path in (("POST", "/v1/endpoints"), ("POST", "/v1/events")):
        resp = await api.request(method, path, data=raw, headers={**AUTH, **JSON})
        code = "validation_failed" if status == 422 else "invalid_json"
        error = await error_of(resp, status, code)
        if field and path == "/v1/endpoints":
            assert error["details"]["field"] == field
    # nothing stored but the refused endpoint's audit entry
    assert set(await redis.keys("*")) == before | {b"hg:audit"}
    assert await redis.xlen("hg:audit") == 1


# ---- 3. sign-in goes on only to a plain portal path -----------------------------------------

UNSAFE_NEXT = [
    "/portal/\x00",
    "/portal/\x7f",
    "/portal/x\x1b[31m",
    "/portal/\t",
    "/portal/ x",
    "/portal/é",
    "/portal/%00",
    "/portal/x?q=%7F",
    "/portal\\@evil.example",
    "/portal/\\evil.example",
    "\\\\evil.example",
    "//evil.example/portal/",
    "/portal//evil.example",
    "https://evil.example/portal/",
    "javascript:alert(1)",
    "/portal/../v1/events",
    "/portal/%2e%2E/v1/events",
    "/portal",
    "/portal/x#frag",
    "/v1/events",
    "/portal/" + "a" * 5000,
    "",
]


@pytest.mark.parametrize("target", UNSAFE_NEXT)
async def test_an_unsafe_next_signs_in_to_the_portal_home(
    api: Client, redis: ArqRedis, target: str
) -> None:
    form = await api.get("/portal/login", params={"next": target})
    assert form.status == 200
    page = await form.text()
    assert next_of(page) == HOME
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": TOKEN, "next": target},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == HOME
    assert (await api.get(HOME)).status == 200  # signed in


@pytest.mark.parametrize(
    "target",
    [
        "/portal/deliveries?status=failed&since=2h",
        "/portal/endpoints/ep_01JD8X2Y3Z4A5B6C7D8E9F0G1H",
        "/portal/events?business_id=bus_1&cursor=a-b_c",
        "/portal/",
    ],
)
async def test_a_plain_portal_path_is_kept(api: Client, target: str) -> None:
    page = await (await api.get("/portal/login")).text()
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": TOKEN, "next": target},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == target


async def test_a_wrong_token_with_an_unsafe_next_answers_too(api: Client) -> None:
    page = await (await api.get("/portal/login")).text()
    resp = await api.post(
        "/portal/login",
        data={"csrf": csrf_of(page), "token": "wrong", "next": "/portal/\x00"},
        allow_redirects=False,
    )
    assert resp.status == 401 and next_of(await resp.text()) == HOME


async def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """``data`` on a fresh connection (sent as is: aiohttp's client refuses control bytes);
    the whole answer, or ``b""`` when the server hung up without one."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(data)
            await writer.drain()
            try:
                return await reader.read()
            except ConnectionError:
                return b""
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def head_of(answer: bytes) -> tuple[int, dict[str, str], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
        if name.strip().lower() == "set-cookie" and value.strip().startswith("hg_portal_pre="):
            headers["pre-cookie"] = value.strip().split(";")[0]
    return int(lines[0].split(" ")[1]), headers, body.decode("utf-8", "replace")


@pytest.mark.e2e
@pytest.mark.parametrize(
    "raw_next",
    [b"/portal/\x00", b"/portal/\x7f", b"/portal/\x01x", b"/portal/\xc3\xa9", b"/portal/\\x"],
    ids=["nul", "del", "soh", "utf-8", "backslash"],
)
async def test_raw_control_bytes_in_next_get_an_answer_from_a_real_gateway(
    env: dict[str, str], spawn: Spawn, redis: ArqRedis, raw_next: bytes
) -> None:
    port = int(env["HOOKGATE_PORT"])
    await wait_healthy(f"http://127.0.0.1:{port}", spawn("serve", env))
    form = await raw_exchange(
        port, b"GET /portal/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    status, headers, page = head_of(form)
    assert status == 200
    csrf = quote(csrf_of(page)).encode()
    body = b"csrf=" + csrf + b"&token=" + TOKEN.encode() + b"&next=" + raw_next
    request = (
        b"POST /portal/login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Cookie: " + headers["pre-cookie"].encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body
    answer = await raw_exchange(port, request)
    assert answer, "the gateway hung up without an answer"
    status, headers, _ = head_of(answer)
    assert status == 303 and headers["location"] == HOME
    assert "hg_portal=" in answer.decode("latin-1")  # signed in


# ---- the CLI: goes through the API, and reads back what it accepted ---------------------------


@pytest.mark.e2e
async def test_the_cli_sends_and_shows_within_the_limit_and_is_refused_past_it(
    env: dict[str, str], spawn: Spawn, redis: ArqRedis, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{env['HOOKGATE_PORT']}"
    await wait_healthy(base, spawn("serve", env))
    cli_env = {**env, "HOOKGATE_URL": base}

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, *args, env=cli_env, timeout=60)

    send = ("events", "send", "--type", "payment.succeeded", "--business", "bus_1", "--data")
    for depth, name in ((MAX_DEPTH, "ok"), (MAX_DEPTH + 1, "deep"), (100_000, "too-deep")):
        (tmp_path / f"{name}.json").write_bytes(deep_data(depth))
    ok = await cli(*send, f"@{tmp_path / 'ok.json'}")
    assert ok.returncode == 0, ok.stderr
    shown = await cli("events", "show", ok.stdout.split()[0])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["payload"]["data"] == nested_value(MAX_DEPTH)
    refused = await cli(*send, f"@{tmp_path / 'deep.json'}")
    assert refused.returncode == 2
    assert f"at most {MAX_DEPTH} levels" in refused.stderr and "validation_failed" in refused.stderr
    unreadable = await cli(*send, f"@{tmp_path / 'too-deep.json'}")  # refused before it is sent
    assert unreadable.returncode == 2 and "Traceback" not in unreadable.stderr
    assert f"at most {MAX_DEPTH} levels" in unreadable.stderr
    assert await stored_events(redis) == 1 and await ingested(redis) == 1
