"""The HTTP API against a real Redis: happy paths, every bad input, and no partial writes."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from arq.connections import ArqRedis
from support import AUTH

from gateway.core.settings import Settings
from gateway.web.app import create_app

Client = TestClient[Any, Any]

EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"payment_id": "pay_1"}}


async def make_endpoint(api: Client, **over: Any) -> dict[str, Any]:
    body = {"business_id": "bus_1", "url": "http://127.0.0.1:9/hook", **over}
    resp = await api.post("/v1/endpoints", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def assert_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body: dict[str, Any] = await resp.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code
    return body["error"]


async def snapshot(redis: ArqRedis) -> dict[bytes, Any]:
    return {k: await redis.type(k) for k in await redis.keys("*")}


# ---- ingest ------------------------------------------------------------------------------


async def test_an_event_is_stored_with_one_delivery_per_matching_endpoint(
    api: Client, redis: ArqRedis
) -> None:
    every = await make_endpoint(api)
    payments = await make_endpoint(api, event_types=["payment.*"])
    await make_endpoint(api, event_types=["credit.added"])
    await make_endpoint(api, business_id="bus_2")
    resp = await api.post("/v1/events", json=EVENT, headers=AUTH)
    assert resp.status == 202
    body = await resp.json()
    assert body["id"].startswith("evt_") and len(body["deliveries"]) == 2
    resp = await api.get(f"/v1/events/{body['id']}", headers=AUTH)
    event = await resp.json()
    assert event["payload"]["data"] == {"payment_id": "pay_1"}
    assert event["payload"]["timestamp"].endswith("Z")
    assert {d["endpoint_id"] for d in event["deliveries"]} == {every["id"], payments["id"]}
    assert all(d["status"] == "pending" for d in event["deliveries"])
    # first attempts are on arq's queue, in the same atomic write
    assert await redis.zcard("arq:queue") == 2


async def test_an_event_lists_every_delivery_however_many(api: Client) -> None:
    made = [await make_endpoint(api) for _ in range(20)]
    body = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    assert len(body["deliveries"]) == 20
    event = await (await api.get(f"/v1/events/{body['id']}", headers=AUTH)).json()
    assert [d["id"] for d in event["deliveries"]] == body["deliveries"]
    assert {d["endpoint_id"] for d in event["deliveries"]} == {e["id"] for e in made}
    assert all(d["event_id"] == body["id"] for d in event["deliveries"])
    assert event["created_at"].endswith("Z") and event["type"] == "payment.succeeded"
    listed = await (await api.get(f"/v1/deliveries?event_id={body['id']}", headers=AUTH)).json()
    assert sorted(d["id"] for d in listed["data"]) == sorted(body["deliveries"])


async def test_the_stored_body_is_the_envelope_serialised_once(
    api: Client, redis: ArqRedis
) -> None:
    sent = {**EVENT, "timestamp": "2026-11-20T13:10:00+01:00", "data": {"b": 1, "a": "é"}}
    resp = await api.post("/v1/events", json=sent, headers=AUTH)
    event_id = (await resp.json())["id"]
    stored = await redis.get(f"hg:evt:{event_id}:body")
    assert json.loads(stored) == {
        "business_id": "bus_1",
        "type": "payment.succeeded",
        "timestamp": "2026-11-20T13:10:00+01:00",
        "data": {"b": 1, "a": "é"},
    }


async def test_idempotency_key_same_body_same_event(api: Client, redis: ArqRedis) -> None:
    await make_endpoint(api)
    headers = {**AUTH, "Idempotency-Key": "order-42"}
    first = await (await api.post("/v1/events", json=EVENT, headers=headers)).json()
    resp = await api.post("/v1/events", json=EVENT, headers=headers)
    second = await resp.json()
    assert resp.status == 202 and resp.headers["Idempotent-Replayed"] == "true"
    assert second["id"] == first["id"] and second["deliveries"] == first["deliveries"]
    assert second["duplicate"] is True
    assert len(await redis.keys("hg:evt:*:body")) == 1
    assert await redis.zcard("arq:queue") == 1


async def test_idempotency_key_with_another_body_conflicts(api: Client, redis: ArqRedis) -> None:
    headers = {**AUTH, "Idempotency-Key": "order-43"}
    first = await (await api.post("/v1/events", json=EVENT, headers=headers)).json()
    before = await snapshot(redis)
    other = {**EVENT, "data": {"payment_id": "pay_2"}}
    error = await assert_error(
        await api.post("/v1/events", json=other, headers=headers), 409, "idempotency_conflict"
    )
    assert error["details"]["event_id"] == first["id"]
    assert await snapshot(redis) == before


async def test_batch_one_bad_item_does_not_reject_the_rest(api: Client, redis: ArqRedis) -> None:
    await make_endpoint(api)
    items = [
        {**EVENT, "idempotency_key": "b-1"},
        {**EVENT, "type": "nope.never"},
        {"business_id": "bus_1"},
        {**EVENT, "data": {"n": 3}},
        "not an object",
        {**EVENT, "idempotency_key": "b-1"},
    ]
    resp = await api.post("/v1/events/batch", json={"events": items}, headers=AUTH)
    assert resp.status == 202
    body = await resp.json()
    assert (body["accepted"], body["rejected"]) == (3, 3)
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [202, 422, 422, 202, 422, 202]
    assert body["results"][1]["error"]["code"] == "unknown_event_type"
    assert body["results"][2]["error"]["details"]["field"] == "events[2].type"
    assert body["results"][5]["id"] == body["results"][0]["id"]
    assert len(await redis.keys("hg:evt:*:body")) == 2


async def test_a_registered_type_can_be_sent(api: Client) -> None:
    custom = {**EVENT, "type": "invoice.finalized"}
    await assert_error(await api.post("/v1/events", json=custom, headers=AUTH), 422)
    resp = await api.post("/v1/event-types", json={"name": "invoice.finalized"}, headers=AUTH)
    assert resp.status == 201
    resp = await api.post("/v1/event-types", json={"name": "invoice.finalized"}, headers=AUTH)
    assert resp.status == 200
    assert (await api.post("/v1/events", json=custom, headers=AUTH)).status == 202
    names = [
        t["name"] for t in (await (await api.get("/v1/event-types", headers=AUTH)).json())["data"]
    ]
    assert "invoice.finalized" in names and "payment.succeeded" in names


async def test_events_for_a_disabled_endpoint_are_recorded_as_skipped(
    api: Client, redis: ArqRedis
) -> None:
    endpoint = await make_endpoint(api)
    await redis.hset(f"hg:ep:{endpoint['id']}", "disabled", "1")
    body = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    delivery = await (await api.get(f"/v1/deliveries/{body['deliveries'][0]}", headers=AUTH)).json()
    assert delivery["status"] == "skipped"
    assert await redis.zcard("arq:queue") == 0


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/events"),
        ("POST", "/v1/events/batch"),
        ("GET", "/v1/events/evt_01JD0000000000000000000000"),
        ("POST", "/v1/endpoints"),
        ("GET", "/v1/endpoints"),
        ("GET", "/v1/deliveries/dlv_01JD00000000000000000000001"),
    ],
)
async def test_missing_or_wrong_token_is_401(api: Client, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        resp = await api.request(method, path, json=EVENT, headers=headers)
        await assert_error(resp, 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "raw", [b"{", b"", b"not json", b'{"a":1}{', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000]
)
async def test_malformed_json_is_400(api: Client, redis: ArqRedis, raw: bytes) -> None:
    for path in ("/v1/events", "/v1/events/batch", "/v1/endpoints", "/v1/event-types"):
        resp = await api.post(path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
        if len(raw) > 64 * 1024 and path in ("/v1/endpoints", "/v1/event-types"):
            await assert_error(resp, 413)
        else:
            await assert_error(resp, 400, "invalid_json")
    # nothing but the audit entries of the refused changes (not of the events: no change)
    assert await redis.keys() == [b"hg:audit"] and await redis.xlen("hg:audit") == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "payment.succeeded", "data": {}}, "business_id"),
        ({**EVENT, "type": "nope.never"}, "type"),
        ({**EVENT, "type": "hookgate.test"}, "type"),
        ({**EVENT, "data": "x"}, "data"),
        ({**EVENT, "timestamp": "later"}, "timestamp"),
        ([EVENT], "body"),
        ({**EVENT, "idempotency_key": "k"}, "idempotency_key"),
    ],
)
async def test_bad_event_fields_are_422_naming_the_field(
    api: Client, redis: ArqRedis, body: Any, field: str
) -> None:
    await make_endpoint(api)
    before = await snapshot(redis)
    error = await assert_error(await api.post("/v1/events", json=body, headers=AUTH), 422)
    assert error["details"]["field"] == field
    assert await snapshot(redis) == before


async def test_bad_idempotency_key_is_422(api: Client, redis: ArqRedis) -> None:
    resp = await api.post("/v1/events", json=EVENT, headers={**AUTH, "Idempotency-Key": "a b"})
    await assert_error(resp, 422)
    assert await redis.dbsize() == 0


async def test_a_body_over_256_kb_is_413(api: Client, redis: ArqRedis) -> None:
    big = {**EVENT, "data": {"blob": "x" * (256 * 1024)}}
    await assert_error(
        await api.post("/v1/events", json=big, headers=AUTH), 413, "payload_too_large"
    )

    async def chunks() -> Any:  # no Content-Length: the limit holds while reading
        for _ in range(300):
            yield b"x" * 1024

    resp = await api.post("/v1/events", data=chunks(), headers=AUTH)
    await assert_error(resp, 413)
    assert await redis.dbsize() == 0


async def test_batch_limits(api: Client) -> None:
    for body in ({}, {"events": []}, {"events": "x"}, {"events": [EVENT] * 1001}):
        await assert_error(await api.post("/v1/events/batch", json=body, headers=AUTH), 422)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events/evt_01JD0000000000000000000000",
        "/v1/events/evt_nope",
        "/v1/events/evt_01JD0000000000000000000000:x",
        "/v1/endpoints/ep_01JD0000000000000000000000",
        "/v1/endpoints/ep_01JD0000000000000000000000:pending",
        "/v1/deliveries/dlv_01JD00000000000000000000001",
        "/v1/deliveries/x",
        "/v1/nothing",
    ],
)
async def test_unknown_ids_are_404(api: Client, path: str) -> None:
    await assert_error(await api.get(path, headers=AUTH), 404, "not_found")


async def test_wrong_method_is_405(api: Client) -> None:
    resp = await api.put("/v1/events", json=EVENT, headers=AUTH)
    await assert_error(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    await assert_error(await api.delete("/healthz"), 405)


# ---- endpoints ---------------------------------------------------------------------------


async def test_the_secret_is_shown_only_at_creation_and_rotation(api: Client) -> None:
    created = await make_endpoint(api, headers={"X-Tenant": "t1"}, description="main")
    secret = created["secret"]
    assert secret.startswith("whsec_")
    got = await (await api.get(f"/v1/endpoints/{created['id']}", headers=AUTH)).text()
    listed = await (await api.get("/v1/endpoints?business_id=bus_1", headers=AUTH)).text()
    assert secret not in got and secret not in listed and "whsec_" not in got + listed
    resp = await api.post(f"/v1/endpoints/{created['id']}/rotate-secret", headers=AUTH)
    rotated = await resp.json()
    assert rotated["secret"] != secret and rotated["secret_count"] == 2


async def test_endpoint_crud(api: Client, redis: ArqRedis) -> None:
    created = await make_endpoint(api, event_types=["payment.*"], max_in_flight=3)
    assert created["event_types"] == ["payment.*"] and created["max_in_flight"] == 3
    path = f"/v1/endpoints/{created['id']}"
    resp = await api.patch(
        path, json={"url": "http://127.0.0.1:10/h", "event_types": None}, headers=AUTH
    )
    patched = await resp.json()
    assert patched["url"] == "http://127.0.0.1:10/h" and patched["event_types"] is None
    assert [
        e["id"] for e in (await (await api.get("/v1/endpoints", headers=AUTH)).json())["data"]
    ] == [created["id"]]
    body = await (await api.post("/v1/events", json=EVENT, headers=AUTH)).json()
    assert (await api.delete(path, headers=AUTH)).status == 204
    await assert_error(await api.get(path, headers=AUTH), 404)
    await assert_error(await api.patch(path, json={"description": "x"}, headers=AUTH), 404)
    await assert_error(await api.delete(path, headers=AUTH), 404)
    delivery = await (await api.get(f"/v1/deliveries/{body['deliveries'][0]}", headers=AUTH)).json()
    assert (delivery["status"], delivery["reason"]) == ("cancelled", "endpoint_deleted")
    assert await redis.zcard("hg:due") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"business_id": "bus_1"},
        {"business_id": "bus_1", "url": "ftp://x"},
        {"business_id": "bus_1", "url": "http://127.0.0.1/", "event_types": ["nope.never"]},
        {"business_id": "bus_1", "url": "http://127.0.0.1/", "headers": {"webhook-id": "x"}},
        {"business_id": "bus_1", "url": "http://127.0.0.1/", "max_in_flight": 0},
        {"business_id": "bus_1", "url": "http://127.0.0.1/", "secret": "whsec_mine"},
        {"business_id": "bus 1", "url": "http://127.0.0.1/"},
        ["x"],
    ],
)
async def test_bad_endpoints_are_422_and_write_nothing(
    api: Client, redis: ArqRedis, body: Any
) -> None:
    await assert_error(await api.post("/v1/endpoints", json=body, headers=AUTH), 422)
    # nothing but the refusal's audit entry
    assert await redis.keys() == [b"hg:audit"] and await redis.xlen("hg:audit") == 1


async def test_bad_patch_is_422_and_changes_nothing(api: Client, redis: ArqRedis) -> None:
    created = await make_endpoint(api)
    before = await redis.hgetall(f"hg:ep:{created['id']}")
    for body in ({"business_id": "bus_2"}, {"url": "nope"}, {"max_in_flight": "3"}, {"x": 1}):
        resp = await api.patch(f"/v1/endpoints/{created['id']}", json=body, headers=AUTH)
        await assert_error(resp, 422)
    assert await redis.hgetall(f"hg:ep:{created['id']}") == before


async def test_bad_business_filter_and_event_type_registration(api: Client) -> None:
    await assert_error(await api.get("/v1/endpoints?business_id=a%20b", headers=AUTH), 422)
    for body in ({"name": "x"}, {"name": "hookgate.custom"}, {"name": "a.b", "extra": 1}, {}):
        await assert_error(await api.post("/v1/event-types", json=body, headers=AUTH), 422)


async def test_private_targets_are_refused_unless_allowed(settings: Any, redis: ArqRedis) -> None:
    import dataclasses

    from aiohttp.test_utils import TestServer

    from gateway.web.app import create_app

    strict = dataclasses.replace(settings, allow_private_targets=False, https_only=True)
    client: Client = TestClient(TestServer(create_app(strict, redis)))
    await client.start_server()
    try:
        for url in ("http://merchant.example/h", "https://127.0.0.1/h", "https://10.0.0.8/h"):
            resp = await client.post(
                "/v1/endpoints", json={"business_id": "b", "url": url}, headers=AUTH
            )
            await assert_error(resp, 422)
        resp = await client.post(
            "/v1/endpoints",
            json={"business_id": "b", "url": "https://merchant.example/h"},
            headers=AUTH,
        )
        assert resp.status == 201
    finally:
        await client.close()


# ---- operations --------------------------------------------------------------------------


async def test_health_readiness_metrics_and_openapi(api: Client) -> None:
    assert (await (await api.get("/healthz")).json())["status"] == "ok"
    assert (await (await api.get("/readyz")).json())["status"] == "ready"
    await api.post("/v1/events", json=EVENT, headers=AUTH)
    text = await (await api.get("/metrics")).text()
    assert 'hookgate_events_ingested_total{cell="default"} 1' in text
    assert 'hookgate_queue_depth{cell="default"} 0' in text
    assert 'hookgate_cell_up{cell="default"} 1' in text
    doc = await (await api.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    routes = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for resource in api.app.router.resources():  # every JSON route is documented
        if resource.canonical.startswith("/portal") or resource.canonical == "/":
            continue  # the portal's HTML pages (and / sending browsers there) are not JSON
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for route in resource:
            if route.method != "HEAD":
                assert (route.method, path) in routes, (route.method, path)


async def test_readyz_answers_503_when_redis_is_gone(settings: Any) -> None:
    import dataclasses

    from aiohttp.test_utils import TestServer

    from gateway.cli.redis_server import free_port
    from gateway.web.app import create_app

    dead = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    redis = ArqRedis.from_url(dead.redis_url)
    client: Client = TestClient(TestServer(create_app(dead, redis)))
    await client.start_server()
    try:
        await assert_error(await client.get("/readyz"), 503, "not_ready")
        await assert_error(await client.post("/v1/events", json=EVENT, headers=AUTH), 503)
    finally:
        await client.close()
        await redis.aclose()


async def test_a_lone_surrogate_escape_is_refused_before_anything_is_stored(
    api: Client, redis: ArqRedis
) -> None:
    """``"\\ud800"`` is valid JSON text but no Unicode string: it could never be signed and
    sent as UTF-8, so it is a 400 naming the problem, not a 500."""
    await make_endpoint(api)
    before = await snapshot(redis)
    for path, body in (
        (
            "/v1/events",
            b'{"business_id":"bus_1","type":"payment.succeeded","data":{"a":"\\ud800"}}',
        ),
        (
            "/v1/events/batch",
            b'{"events":[{"business_id":"bus_1","type":"payment.succeeded","data":{"\\udfff":1}}]}',
        ),
    ):
        resp = await api.post(path, data=body, headers={**AUTH, "Content-Type": "application/json"})
        error = await assert_error(resp, 400, "invalid_json")
        assert "surrogate" in error["message"]
    assert await snapshot(redis) == before


async def test_metrics_can_require_their_own_bearer_token(
    settings: Settings, redis: ArqRedis
) -> None:
    token = "metrics-0123456789abcdef"
    scraped = dataclasses.replace(settings, metrics_token=token)
    async with TestClient(TestServer(create_app(scraped, redis))) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, AUTH):  # the admin token: no
            resp = await client.get("/metrics", headers=headers)
            error = await assert_error(resp, 401, "unauthorized")
            assert "HOOKGATE_METRICS_TOKEN" in error["message"]
        resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200 and "hookgate_queue_depth" in await resp.text()
        assert (await client.get("/healthz")).status == 200  # probes stay open


async def test_the_root_sends_a_browser_to_the_portal(api: Client) -> None:
    resp = await api.get("/", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/portal/")
    followed = await api.get("/")
    assert followed.status == 200 and followed.url.path.startswith("/portal/")
    assert followed.content_type == "text/html"
