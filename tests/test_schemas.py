"""The msgspec schemas: exact decoding, the API's errors for what does not decode, the OpenAPI
document generated from them, and answers that match what the document promises."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from conftest import Receiver
from hypothesis import given
from hypothesis import strategies as st
from support import AUTH

from gateway.core import codec, formats
from gateway.core.errors import ValidationFailed
from gateway.core.settings import Settings
from gateway.store.recovery import STATUSES
from gateway.store.store import fingerprint
from gateway.web import api, bodies, schemas, validation
from gateway.web.errors import BadRequest
from gateway.web.openapi import OPERATIONS, openapi_document

Client = TestClient[Any, Any]
EVENT = {"business_id": "bus_1", "type": "payment.succeeded", "data": {"payment_id": "pay_1"}}
JSON = {"Content-Type": "application/json"}
BIG = 2**100 + 7  # beyond 64 bits (and beyond a double's 53-bit mantissa)


async def post_raw(api: Client, path: str, body: bytes) -> Any:
    return await api.post(path, data=body, headers={**AUTH, **JSON})


async def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    error: dict[str, Any] = (await resp.json())["error"]
    assert error["code"] == code, error
    return error


async def keys_of(redis: ArqRedis) -> set[bytes]:
    return set(await redis.keys("*"))


async def make_endpoint(api: Client, url: str = "http://127.0.0.1:9/hook") -> dict[str, Any]:
    resp = await api.post("/v1/endpoints", json={"business_id": "bus_1", "url": url}, headers=AUTH)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


# ---- (a) integers beyond 64 bits -------------------------------------------------------------


async def test_integers_beyond_64_bits_are_kept_exact_through_ingest_and_read_back(
    api: Client, redis: ArqRedis
) -> None:
    await make_endpoint(api)
    data = {"big": BIG, "negative": -(2**70), "list": [2**64, 2**64 - 1, -(2**63) - 1]}
    raw = json.dumps({**EVENT, "data": data}).encode()
    resp = await post_raw(api, "/v1/events", raw)
    assert resp.status == 202, await resp.text()
    event_id = (await resp.json())["id"]
    stored = await redis.get(f"hg:evt:{event_id}:body")  # the bytes that are signed and sent
    assert str(BIG).encode() in stored and json.loads(stored)["data"] == data
    read = await (await api.get(f"/v1/events/{event_id}", headers=AUTH)).read()
    assert str(BIG).encode() in read and json.loads(read)["payload"]["data"] == data
    batch = json.dumps({"events": [{**EVENT, "data": data}]}).encode()
    resp = await post_raw(api, "/v1/events/batch", batch)
    [result] = (await resp.json())["results"]
    stored = await redis.get(f"hg:evt:{result['id']}:body")
    assert json.loads(stored)["data"] == data


# ---- (b) what is not JSON is a 400 ---------------------------------------------------------


NOT_JSON = [
    ("NaN", b'{"x": NaN}'),
    ("Infinity", b'{"x": Infinity}'),
    ("-Infinity", b'{"x": -Infinity}'),
    ("1e400", b'{"x": 1e400}'),
    ("-1e400", b'{"x": -1e400}'),
    ("a double's overflow", b'{"x": 1.7976931348623159e308}'),
    ("5000 digits", b'{"x": 1' + b"0" * 5000 + b"}"),
    ("a lone high surrogate", b'{"x": "\\ud800"}'),
    ("a lone low surrogate", b'{"x": "a\\udfffb"}'),
    ("a lone surrogate in a key", b'{"\\ud83d": 1}'),
    ("invalid UTF-8", b'{"x": "\xff"}'),
    ("UTF-8 of a surrogate", b'{"x": "\xed\xa0\x80"}'),
]


def event_with(data: bytes) -> bytes:
    return b'{"business_id": "bus_1", "type": "payment.succeeded", "data": ' + data + b"}"


@pytest.mark.parametrize(("name", "data"), NOT_JSON, ids=[n for n, _ in NOT_JSON])
async def test_what_is_not_json_is_400_invalid_json_and_stores_nothing(
    api: Client, redis: ArqRedis, name: str, data: bytes
) -> None:
    await make_endpoint(api)
    before = await keys_of(redis)
    bodies_ = {
        "/v1/events": event_with(data),
        "/v1/events/batch": b'{"events": [' + event_with(b"{}") + b", " + event_with(data) + b"]}",
        "/v1/endpoints": b'{"business_id": "bus_1", "url": "http://127.0.0.1:9/", "headers": '
        + data
        + b"}",
    }
    for path, body in bodies_.items():
        error = await error_of(await post_raw(api, path, body), 400, "invalid_json")
        assert error["message"].startswith("the body is not valid JSON: "), error
        if name.startswith("a lone"):
            assert "surrogate" in error["message"], error
    assert await keys_of(redis) == before


async def test_a_syntax_error_after_a_field_that_does_not_fit_is_still_a_400(
    api: Client,
) -> None:
    # msgspec stops at the unknown field before it reads the rest
    for body in (b'{"extra": 1}{', b'{"extra": 1, "x": NaN}', b'{"business_id": 5, "x": [}'):
        await error_of(await post_raw(api, "/v1/events", body), 400, "invalid_json")
        await error_of(await post_raw(api, "/v1/events/batch", body), 400, "invalid_json")


async def test_json_that_is_not_utf_8_is_refused_saying_so(api: Client) -> None:
    for encoding in ("utf-16", "utf-32", "utf-8-sig"):
        body = json.dumps(EVENT).encode(encoding)
        error = await error_of(await post_raw(api, "/v1/events", body), 400, "invalid_json")
        assert "must be UTF-8" in error["message"]


async def test_nesting_too_deep_is_400(api: Client) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    for body in (event_with(b'{"a": ' + deep + b"}"), b'{"events": [' + deep + b"]}"):
        for path in ("/v1/events", "/v1/events/batch"):
            error = await error_of(await post_raw(api, path, body), 400, "invalid_json")
            assert error["message"].startswith("the body nests too deeply"), error


TOKENS = [*'{}[],:" tfnrue01.-+Eaxu9dD8', "\\", "\\u", "\\ud8", "\\udc", "é", "NaN", "1e400"]


@given(st.lists(st.sampled_from(TOKENS), max_size=24).map("".join))
def test_msgspec_reads_exactly_the_json_the_old_parser_read(text: str) -> None:
    """``bodies.check_json`` (msgspec) accepts a UTF-8 body if and only if ``codec.loads``
    (the json module, strict: no NaN, no overflow, no lone surrogate) does, with the same
    value."""
    raw = text.encode()
    try:
        old = codec.loads(raw)
    except (ValueError, RecursionError):
        old = BadRequest
    try:
        bodies.check_json(raw)
        new = msgspec.json.decode(raw)
    except BadRequest:
        new = BadRequest
    assert new == old or (new != new and old != old)


# ---- validation errors: 422 naming the field -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ([EVENT], "body", "body: must be a JSON object"),
        ({"type": "payment.succeeded", "data": {}}, "business_id", "business_id: is required"),
        ({**EVENT, "business_id": 5}, "business_id", "business_id: must be 1-128 characters"),
        ({**EVENT, "business_id": "bus_1\n"}, "business_id", "business_id: must be 1-128"),
        ({**EVENT, "type": "a" * 60 + "." + "b" * 68}, "type", "type: must be dot-delimited"),
        ({**EVENT, "type": "hookgate.test"}, "type", "type: the hookgate.* family is reserved"),
        ({**EVENT, "data": None}, "data", "data: must be a JSON object"),
        ({**EVENT, "timestamp": "2026-11-20T13:10:00"}, "timestamp", "timestamp: must be an"),
        ({**EVENT, "timestamp": "2026-W47-5T13:10:00Z"}, "timestamp", "timestamp: must be an"),
        ({**EVENT, "timestamp": "2026-02-30T13:10:00Z"}, "timestamp", "timestamp: is not a"),
        ({**EVENT, "extra": 1}, "extra", "extra: is not a known field"),
        ({**EVENT, "": 1}, '""', '"": is not a known field'),
        (
            {**EVENT, "idempotency_key": "k"},
            "idempotency_key",
            "idempotency_key: use the Idempotency-Key header here",
        ),
    ],
)
async def test_an_event_that_does_not_fit_is_422_naming_the_field(
    api: Client, body: Any, field: str, message: str
) -> None:
    resp = await api.post("/v1/events", json=body, headers=AUTH)
    error = await error_of(resp, 422, "reserved" if "reserved" in message else "validation_failed")
    assert error["details"] == {"field": field}
    assert error["message"].startswith(message), error


async def test_a_batch_names_each_bad_item_by_its_path(api: Client) -> None:
    await make_endpoint(api)
    items = [
        EVENT,
        {**EVENT, "type": "nope.never"},
        {"business_id": "bus_1"},
        {**EVENT, "data": []},
        7,
        {**EVENT, "idempotency_key": "has space"},
        {**EVENT, "type": "hookgate.x"},
    ]
    resp = await api.post("/v1/events/batch", json={"events": items}, headers=AUTH)
    assert resp.status == 202
    body = await resp.json()
    got = [
        (r["status"], r.get("error", {}).get("details", {}).get("field")) for r in body["results"]
    ]
    assert got == [
        (202, None),
        (422, "events[1].type"),
        (422, "events[2].type"),
        (422, "events[3].data"),
        (422, "events[4]"),
        (422, "events[5].idempotency_key"),
        (422, "events[6].type"),
    ]
    codes = [r.get("error", {}).get("code") for r in body["results"]]
    assert codes[1] == "unknown_event_type" and codes[6] == "reserved"
    assert body["results"][4]["error"]["message"] == "events[4]: must be a JSON object"
    assert (body["accepted"], body["rejected"]) == (1, 6)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "ftp://x"}, "url", "url: must be an absolute http:// or https:// URL"),
        ({"max_in_flight": 0}, "max_in_flight", "max_in_flight: must be a whole number from 1"),
        ({"max_in_flight": 2.5}, "max_in_flight", "max_in_flight: must be a whole number"),
        ({"max_in_flight": "3"}, "max_in_flight", "max_in_flight: must be a whole number"),
        ({"max_in_flight": True}, "max_in_flight", "max_in_flight: must be a whole number"),
        ({"event_types": []}, "event_types", "event_types: must be a list of 1 to 100 items"),
        ({"event_types": ["x.y"] * 101}, "event_types", "event_types: must be a list of 1"),
        ({"event_types": ["payment.*", "*"]}, "event_types[1]", "event_types[1]: must be an"),
        ({"headers": {"bad name": "x"}}, "headers.bad name", "headers.bad name: must be a header"),
        ({"headers": {"X-A": "a\nb"}}, "headers.X-A", "headers.X-A: must not contain control"),
        ({"headers": {"X-A": "x" * 4097}}, "headers.X-A", "headers.X-A: must be at most 4096"),
        ({"headers": {f"X-{i}": "v" for i in range(21)}}, "headers", "headers: must be a JSON"),
        ({"headers": {"Host": "x"}}, "headers.Host", "headers.Host: is set by hookgate"),
        ({"description": "x" * 1025}, "description", "description: must be a string of at most"),
        ({"secret": "whsec_mine"}, "secret", "secret: is not a known field"),
    ],
)
async def test_an_endpoint_that_does_not_fit_is_422_naming_the_field(
    api: Client, body: dict[str, Any], field: str, message: str
) -> None:
    full = {"business_id": "bus_1", "url": "http://127.0.0.1:9/", **body}
    error = await error_of(
        await api.post("/v1/endpoints", json=full, headers=AUTH), 422, "validation_failed"
    )
    assert error["details"] == {"field": field}
    assert error["message"].startswith(message), error


async def test_a_whole_number_may_be_written_with_a_fraction_of_zero(api: Client) -> None:
    """JSON Schema's integer takes 3.0, and so does the API (an encoder may write either)."""
    resp = await api.post(
        "/v1/endpoints",
        json={"business_id": "bus_1", "url": "http://127.0.0.1:9/", "max_in_flight": 3.0},
        headers=AUTH,
    )
    assert resp.status == 201 and (await resp.json())["max_in_flight"] == 3


async def test_patch_says_why_business_id_is_refused(api: Client) -> None:
    endpoint = await make_endpoint(api)
    resp = await api.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"business_id": "bus_2"}, headers=AUTH
    )
    error = await error_of(resp, 422, "validation_failed")
    assert error["message"] == "business_id: cannot be changed"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=ten", "limit"),
        ("limit=2.5", "limit"),
        ("status=lost", "status"),
        ("endpoint_id=ep_x%0A", "endpoint_id"),
        ("business_id=bus_1%0A", "business_id"),
        ("since=" + "9" * 400 + "x", "since"),
        ("since=2026-11-20T10:00Z", "since"),  # no seconds: not RFC 3339
        ("until=20261120T100000Z", "until"),  # ISO 8601's basic format: not RFC 3339
    ],
)
async def test_bad_listing_queries_are_422(api: Client, query: str, field: str) -> None:
    resp = await api.get(f"/v1/deliveries?{query}", headers=AUTH)
    error = await error_of(resp, 422, "validation_failed")
    assert error["details"] == {"field": field}


@pytest.mark.parametrize(
    "query",
    [
        "since=" + "9" * 400 + "d",  # infinitely long ago
        "since=0001-01-01T00:00:00%2B23:59",  # before year 1 in UTC
        "until=9999-12-31T23:59:59-23:59",  # after 9999 in UTC
        "since=2026-11-20t10:00:00z",  # RFC 3339 allows t and z
        "limit=1.0",
        "limit=1e2",
    ],
)
async def test_listing_times_at_the_edges_are_no_5xx(api: Client, query: str) -> None:
    resp = await api.get(f"/v1/deliveries?{query}", headers=AUTH)
    assert resp.status == 200, await resp.text()


async def test_a_replay_window_at_the_edges_can_be_read_back(api: Client) -> None:
    endpoint = await make_endpoint(api)
    resp = await api.post(
        f"/v1/endpoints/{endpoint['id']}/replay",
        json={"since": "9" * 400 + "d", "until": "9999-12-31T23:59:59-23:59"},
        headers=AUTH,
    )
    assert resp.status == 202, await resp.text()
    replay = await resp.json()
    assert replay["since"] == "1970-01-01T00:00:00.000Z"
    got = await api.get(f"/v1/replays/{replay['replay_id']}", headers=AUTH)
    assert got.status == 200 and (await got.json())["until"].startswith("9999-12-31")


# ---- the Idempotency-Key fingerprint -------------------------------------------------------


def old_fingerprint(raw: bytes) -> str:
    """How a key's body was fingerprinted before bodies were decoded into Structs."""
    return fingerprint(codec.loads(raw))


def new_fingerprint(raw: bytes) -> str:
    return fingerprint(api.as_sent(bodies.decode(raw, api.EVENT)))


def test_the_fingerprint_of_a_known_body_is_what_it_was() -> None:
    raw = (
        b'{"type":"payment.succeeded","business_id":"bus_1","timestamp":null,'
        b'"data":{"b":[1,2.5,-0.0,1e300,"\\u00e9\\ud83d\\ude00"],"a":' + str(BIG).encode() + b"}}"
    )
    # sha256 of codec.dumps(codec.loads(raw), sort_keys=True), computed before this change
    pinned = "21fec7b694e15f2eedc8c38f31902c87fb3d3dab5049fb50e85f50bbe4d12838"
    assert new_fingerprint(raw) == old_fingerprint(raw) == pinned


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    data=st.dictionaries(st.text(), JSON_VALUES, max_size=5),
    stamp=st.sampled_from([None, ..., "2026-11-20T13:10:00Z", "2026-11-20T14:10:00.5+01:00"]),
    order=st.permutations(["business_id", "type", "data", "timestamp"]),
    indent=st.sampled_from([None, 2]),
)
def test_the_fingerprint_is_the_one_the_old_parser_made(
    data: dict[str, Any], stamp: Any, order: list[str], indent: int | None
) -> None:
    """A key stored before this change, sent again with the same body, still matches."""
    event: dict[str, Any] = {**EVENT, "data": data, "timestamp": stamp}
    body = {k: event[k] for k in order if event[k] is not ...}
    raw = json.dumps(body, indent=indent, ensure_ascii=indent is None).encode()
    assert new_fingerprint(raw) == old_fingerprint(raw)


# ---- (c) the document states what the handlers enforce --------------------------------------


def document() -> dict[str, Any]:
    return openapi_document()


def component(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document()["components"]["schemas"][name]
    return schema


def prop(name: str, field: str) -> dict[str, Any]:
    """A property's schema, its ``anyOf [T, null]`` unwrapped."""
    schema: dict[str, Any] = component(name)["properties"][field]
    for option in schema.get("anyOf", ()):
        if option.get("type") != "null":
            return {**schema, **option}
    return schema


async def test_the_document_is_served_as_generated(api: Client) -> None:
    resp = await api.get("/openapi.json")
    assert resp.status == 200 and await resp.json() == json.loads(json.dumps(document()))


def test_every_request_and_answer_forbids_unknown_fields() -> None:
    structs = [
        s
        for _, s in inspect.getmembers(schemas, inspect.isclass)
        if issubclass(s, msgspec.Struct) and s is not msgspec.Struct
    ]
    assert len(structs) > 30
    for struct in structs:
        if struct is schemas.EndpointQuery:  # other query parameters are ignored on purpose
            continue
        assert struct.__struct_config__.forbid_unknown_fields, struct
    for name, schema in document()["components"]["schemas"].items():
        assert schema["additionalProperties"] is False, name


def test_event_constraints_are_in_the_document() -> None:
    assert component("EventIn")["required"] == ["business_id", "type", "data"]
    assert prop("EventIn", "business_id")["pattern"] == formats.BUSINESS_ID
    assert formats.BUSINESS_ID == r"^[A-Za-z0-9_\-:.]{1,128}$(?!\n)"
    event_type = prop("EventIn", "type")
    assert event_type["pattern"] == formats.EVENT_TYPE and event_type["maxLength"] == 128
    assert event_type["not"] == {"pattern": r"^hookgate\."}
    assert prop("EventIn", "data")["type"] == "object"
    stamp = prop("EventIn", "timestamp")
    assert (stamp["format"], stamp["maxLength"]) == ("date-time", 40)
    items = prop("BatchIn", "events")
    assert (items["minItems"], items["maxItems"]) == (1, 1000)
    assert items["items"] == {"$ref": "#/components/schemas/BatchItem"}
    assert prop("BatchItem", "idempotency_key")["pattern"] == formats.IDEMPOTENCY_KEY
    [header] = [p for p in operation("post", "/v1/events")["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert header["schema"]["pattern"] == formats.IDEMPOTENCY_KEY
    name = prop("EventTypeIn", "name")
    assert (name["pattern"], name["maxLength"]) == (formats.EVENT_TYPE, 128)


def test_endpoint_constraints_are_in_the_document() -> None:
    for shape in ("EndpointIn", "EndpointPatch"):
        headers = prop(shape, "headers")
        assert headers["maxProperties"] == 20
        assert headers["propertyNames"]["pattern"] == formats.HEADER_NAME
        reserved = re.compile(headers["propertyNames"]["not"]["pattern"])
        assert all(reserved.match(h) for h in ("Host", "content-TYPE", "Webhook-Id", "TE"))
        assert not any(reserved.match(h) for h in ("X-Tenant", "Hosting", "tea"))
        value = headers["additionalProperties"]
        assert (value["maxLength"], value["pattern"]) == (4096, formats.HEADER_VALUE)
        types = prop(shape, "event_types")
        assert (types["minItems"], types["maxItems"]) == (1, 100)
        assert types["items"]["pattern"] == formats.SUBSCRIPTION
        cap = prop(shape, "max_in_flight")
        assert (cap["minimum"], cap["maximum"], cap["multipleOf"]) == (1, 1000, 1)
        assert prop(shape, "description")["maxLength"] == 1024
        url = prop(shape, "url")
        assert (url["maxLength"], url["format"]) == (2048, "uri")
    assert component("EndpointIn")["required"] == ["business_id", "url"]
    assert (
        "required" not in component("EndpointPatch") or not component("EndpointPatch")["required"]
    )
    assert prop("EndpointIn", "business_id")["pattern"] == formats.BUSINESS_ID


def test_other_request_constraints_are_in_the_document() -> None:
    assert prop("ReplayIn", "status")["enum"] == ["all", "failed"]
    assert component("ReplayIn")["required"] == ["since"]
    assert {"pattern", "format"} == {
        k for option in prop("ReplayIn", "since")["anyOf"] for k in option
    } - {"type"}
    reason = prop("DisableIn", "reason")
    assert (reason["minLength"], reason["maxLength"]) == (1, 500)
    assert re.match(prop("PortalLinkIn", "ttl")["pattern"], "24h")
    [business] = operation("post", "/v1/businesses/{id}/portal-links")["parameters"]
    assert business["schema"]["pattern"] == formats.BUSINESS_ID


def operation(method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = document()["paths"][path][method]
    return op


def test_query_parameters_are_documented_with_their_constraints() -> None:
    params = {p["name"]: p for p in operation("get", "/v1/deliveries")["parameters"]}
    assert set(params) == {
        "endpoint_id",
        "event_id",
        "business_id",
        "status",
        "event_type",
        "since",
        "until",
        "limit",
        "cursor",
    }
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }
    assert sorted(params["status"]["schema"]["enum"]) == sorted(STATUSES)
    assert params["endpoint_id"]["schema"]["pattern"] == formats.IDS["ep"]
    assert params["event_id"]["schema"]["pattern"] == formats.IDS["evt"]
    assert params["business_id"]["schema"]["pattern"] == formats.BUSINESS_ID
    assert params["event_type"]["schema"]["maxLength"] == 128
    assert params["endpoint_id"]["description"] == "only this endpoint's"
    [business] = operation("get", "/v1/endpoints")["parameters"]
    assert business["name"] == "business_id" and business["in"] == "query"
    assert business["schema"]["pattern"] == formats.BUSINESS_ID


def test_every_route_documents_the_errors_it_can_answer() -> None:
    for path, ops in document()["paths"].items():
        for method, op in ops.items():
            answers = {int(s) for s in op["responses"]}
            where = (method, path)
            if path.startswith("/v1/"):
                assert 401 in answers and 503 in answers, where  # every /v1 route reads Redis
                assert "security" not in op, where
            if "requestBody" in op:
                assert {400, 408, 413, 422} <= answers, where
            if "{id}" in path:
                assert 404 in answers, where
            if any(p["in"] == "query" for p in op.get("parameters", ())):
                assert 422 in answers, where
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, where
    assert 503 in {int(s) for s in operation("get", "/metrics")["responses"]}
    assert "503" not in operation("get", "/healthz")["responses"]


def test_the_route_table_and_the_app_have_the_same_routes() -> None:
    app = web.Application()
    api.add_routes(app)
    from gateway.web.portal import post_portal_link

    app.router.add_post("/v1/businesses/{id}/portal-links", post_portal_link)
    routes = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        routes |= {(r.method.lower(), path) for r in resource if r.method != "HEAD"}
    assert routes == {(op.method, op.path) for op in OPERATIONS}


def test_an_answer_the_store_grows_without_its_schema_fails_loudly() -> None:
    view = {
        "event_id": "evt_01JD0000000000000000000000",
        "delivery_id": "dlv_01JD00000000000000000000001",
    }
    assert bodies.answer(view, schemas.TestSent).status == 200
    with pytest.raises(msgspec.ValidationError, match="unknown field `new`"):
        bodies.answer({**view, "new": 1}, schemas.TestSent)
    with pytest.raises(msgspec.ValidationError, match="missing required field"):
        bodies.answer({"event_id": view["event_id"]}, schemas.TestSent)


def patterns_in(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = [schema["pattern"]] if isinstance(schema.get("pattern"), str) else []
        return found + [p for value in schema.values() for p in patterns_in(value)]
    if isinstance(schema, list):
        return [p for value in schema for p in patterns_in(value)]
    return []


def test_every_pattern_in_the_document_compiles_in_both_dialects() -> None:
    found = set(patterns_in(document()))
    assert {formats.BUSINESS_ID, formats.EVENT_TYPE, formats.HEADER_NAME} <= found
    for pattern in found:
        re.compile(pattern)
        jsonschema_rs.validator_for({"pattern": pattern})  # what schemathesis validates with
        # ECMA-262's Unicode mode allows "\-" inside a character class only
        assert not re.search(r"(?<!\\)\\-", re.sub(r"\[[^]]*\]", "", pattern)), pattern


def test_validation_reads_the_same_patterns() -> None:
    assert validation.BUSINESS_ID_RE.pattern == formats.BUSINESS_ID
    for bad in ("bus_1\n", "bus 1", "", "x" * 129):
        with pytest.raises(ValidationFailed):
            validation.business_id(bad)
        with pytest.raises(ValidationFailed):
            bodies.convert({**EVENT, "business_id": bad}, schemas.EventIn)
    for pattern in (formats.EVENT_TYPE, formats.SUBSCRIPTION, formats.HEADER_NAME):
        assert not re.match(pattern, "payment.succeeded\n")


# ---- (d) answers are what the document promises ---------------------------------------------


def answer_validator(method: str, path: str, status: int) -> Any:
    content = operation(method, path)["responses"][str(status)]["content"]
    schema = {**content["application/json"]["schema"], "components": document()["components"]}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


class Checked:
    """Calls the API and checks each answer against the document's schema of its status."""

    def __init__(self, api: Client) -> None:
        self.api = api
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(
        self, method: str, path: str, template: str, status: int, **kwargs: Any
    ) -> Any:
        headers = {**AUTH, **kwargs.pop("headers", {})}
        resp = await self.api.request(method, path, headers=headers, **kwargs)
        assert resp.status == status, (method, path, await resp.text())
        body = await resp.json()
        answer_validator(method.lower(), template, status).validate(body)
        self.seen.add((method.lower(), template, status))
        return body


async def settled(api: Client, delivery_id: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            d: dict[str, Any] = await (
                await api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH)
            ).json()
            if d["status"] != "pending":
                return d
            await asyncio.sleep(0.05)


async def test_every_main_answer_matches_its_documented_schema(
    api: Client, settings: Settings, start_worker: Any, receiver: Any
) -> None:
    async def refuse(request: web.Request, n: int) -> web.StreamResponse:
        return web.json_response({"no": n}, status=500)

    target: Receiver = await receiver(refuse)
    call = Checked(api)
    ep = await call(
        "POST",
        "/v1/endpoints",
        "/v1/endpoints",
        201,
        json={
            "business_id": "bus_1",
            "url": target.url,
            "event_types": ["payment.*", "credit.added"],
            "headers": {"X-Tenant": "t1"},
            "description": "main",
            "max_in_flight": 3,
        },
    )
    one = f"/v1/endpoints/{ep['id']}"
    await call("GET", "/v1/endpoints?business_id=bus_1", "/v1/endpoints", 200)
    await call("GET", one, "/v1/endpoints/{id}", 200)
    await call("PATCH", one, "/v1/endpoints/{id}", 200, json={"description": "changed"})
    await call("POST", one + "/rotate-secret", "/v1/endpoints/{id}/rotate-secret", 200)
    await call("GET", "/v1/event-types", "/v1/event-types", 200)
    await call("POST", "/v1/event-types", "/v1/event-types", 201, json={"name": "invoice.paid"})
    await call("POST", "/v1/event-types", "/v1/event-types", 200, json={"name": "invoice.paid"})
    event = await call("POST", "/v1/events", "/v1/events", 202, json={**EVENT, "data": {"n": BIG}})
    await call(
        "POST",
        "/v1/events/batch",
        "/v1/events/batch",
        202,
        json={"events": [EVENT, {**EVENT, "type": "nope.never"}, {"x": 1}]},
    )
    await call("GET", f"/v1/events/{event['id']}", "/v1/events/{id}", 200)
    await start_worker(settings)
    delivery_id = event["deliveries"][0]
    failed = await settled(api, delivery_id)
    assert failed["status"] == "failed" and failed["attempts"]
    await call("GET", f"/v1/deliveries/{delivery_id}", "/v1/deliveries/{id}", 200)
    await call("GET", "/v1/deliveries?limit=1", "/v1/deliveries", 200)
    await call("POST", f"/v1/deliveries/{delivery_id}/replay", "/v1/deliveries/{id}/replay", 202)
    await settled(api, delivery_id)
    replay_path = "/v1/endpoints/{id}/replay"
    await call("POST", one + "/replay", replay_path, 200, json={"since": "1h", "dry_run": True})
    replay = await call("POST", one + "/replay", replay_path, 202, json={"since": "1h"})
    await call("GET", f"/v1/replays/{replay['replay_id']}", "/v1/replays/{id}", 200)
    await call("POST", one + "/test", "/v1/endpoints/{id}/test", 202)
    await call("POST", one + "/disable", "/v1/endpoints/{id}/disable", 200, json={"reason": "x"})
    await call("POST", one + "/replay", replay_path, 409, json={"since": "1h"})
    await call("POST", one + "/enable", "/v1/endpoints/{id}/enable", 200)
    portal = "/v1/businesses/{id}/portal-links"
    await call("POST", "/v1/businesses/bus_1/portal-links", portal, 201, json={"ttl": "1h"})
    await call("POST", "/v1/events", "/v1/events", 422, json={**EVENT, "type": "nope.never"})
    await call("POST", "/v1/events", "/v1/events", 400, data=b"{", headers=JSON)
    await call("GET", "/v1/events/evt_01JD0000000000000000000000", "/v1/events/{id}", 404)
    await call("GET", "/healthz", "/healthz", 200)
    await call("GET", "/readyz", "/readyz", 200)
    assert len(call.seen) == 27
    assert (await api.delete(one, headers=AUTH)).status == 204
