"""schemathesis against ``/openapi.json``: no 5xx, every answer is one the document describes,
data the document calls invalid is refused and data it calls valid is accepted.

The gateway runs on a real loopback port (an aiohttp site in a thread of its own, over the
tests' redis-server); schemathesis sends every request to that base URL only. No worker runs,
so endpoints it creates with arbitrary URLs are never called. The gateway allows private and
plain-http targets, so a generated URL (``https://<some domain>``) is never refused for its
address.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.core.parameters import ParameterLocation
from support import AUTH, TOKEN

from gateway.cli.redis_server import free_port
from gateway.core.settings import IN_FLIGHT_CEILING, Settings
from gateway.web.app import create_app
from gateway.web.openapi import openapi_document

# Enough to cover every operation's positive and negative cases and stay well under a minute.
EXAMPLES = 100

schema = schemathesis.openapi.from_dict(openapi_document())
# Unknown query parameters are ignored by design, so do not count them as bad input.
schema.config.generation.update(
    max_examples=EXAMPLES, deterministic=True, allow_extra_parameters=False
)

# Valid by the document yet refused, by rules a JSON Schema cannot state; each is a 422 whose
# code, field and message say which. Nothing else that is valid may be refused.
REFUSED_BY_DESIGN = [
    # An event type of the right form that is neither in the catalogue nor registered: the
    # types registered at run time cannot be listed (the same as a 404 for an id of the right
    # form, which positive_data_acceptance allows).
    ("unknown_event_type", None, None),
    # Two fields against each other.
    ("validation_failed", "until", "until: is before since"),
    # An opaque cursor: only one this API returned is accepted.
    ("validation_failed", "cursor", "cursor: is not a cursor this API returned"),
    # A duration's range (the pattern states its form only).
    ("validation_failed", "ttl", "ttl: must be from 1s to 7d"),
    # A time against the clock: an API key's expiry must be in the future.
    ("validation_failed", "expires_at", "expires_at: is not in the future"),
    # Two fields against each other: an admin key is never bound to a business.
    (
        "validation_failed",
        "scopes",
        "scopes: admin cannot be bound to a business: leave out business_id, or name narrower "
        "scopes",
    ),
    # Two custom header names that receivers read as one header (X-A and x_a).
    ("duplicate_header", None, None),
]


def refused_by_design(response: Any) -> bool:
    if response.status_code != 422:
        return False
    error = response.json()["error"]
    field = (error.get("details") or {}).get("field")
    return any(
        code == error["code"]
        and (want_field is None or want_field == field)
        and (message is None or message == error["message"])
        for code, want_field, message in REFUSED_BY_DESIGN
    )


def valid_data_is_accepted(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """schemathesis's positive_data_acceptance, but for ``REFUSED_BY_DESIGN``."""
    if refused_by_design(response):
        return None
    return positive_data_acceptance(ctx, response, case)


BATCH = "/v1/events/batch"
# The document's schemas of a batch item, and of a batch with its items left open.
COMPONENTS = openapi_document()["components"]
ITEM = jsonschema_rs.validator_for(
    {"$ref": "#/components/schemas/BatchItem", "components": COMPONENTS}, validate_formats=True
)
_BATCH_IN = COMPONENTS["schemas"]["BatchIn"]
_EVENTS = _BATCH_IN["properties"]["events"]
ENVELOPE = jsonschema_rs.validator_for(
    {**_BATCH_IN, "properties": {"events": {**_EVENTS, "items": {}}}}, validate_formats=True
)


def invalid_data_is_refused(ctx: CheckContext, response: Any, case: Any) -> bool | None:
    """schemathesis's negative_data_rejection, but a batch refuses an item the document calls
    invalid by that item's own error result inside its 202 (the other items are stored), so a
    202 passes when the batch around the items is valid and each invalid item was refused."""
    if case.operation.path == BATCH and response.status_code == 202:
        body = case.body
        if isinstance(body, dict) and ENVELOPE.is_valid(body):
            results = response.json()["results"]
            bad = [i for i, item in enumerate(body["events"]) if not ITEM.is_valid(item)]
            if bad and all(results[i]["status"] >= 400 for i in bad):
                return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    invalid_data_is_refused,
    valid_data_is_accepted,
    ignored_auth,
    unsupported_method,
]

# Routes whose {id} can be swapped for one that exists: the id's kind, by path prefix.
ID_KINDS = {
    "/v1/events/": "evt",
    "/v1/deliveries/": "dlv",
    "/v1/endpoints/": "ep",
    "/v1/replays/": "rpl",
    "/v1/api-keys/": "key",
}


class Gateway:
    """``create_app`` served on 127.0.0.1:<free port> by a thread with its own event loop."""

    def __init__(self, redis_url: str, secret_key: str) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(
            redis_url=redis_url,
            admin_token=TOKEN,
            allow_private_targets=True,
            https_only=False,
            secret_key=secret_key,
            # The document states the ceilings; lower bounds of a deployment are not in it.
            # Every case that exercises an endpoint id creates one more endpoint of bus_fuzz.
            max_endpoints_per_business=10_000,
            max_in_flight=IN_FLIGHT_CEILING,
        )
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="schemathesis-gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        redis = Redis.from_url(self.settings.redis_url)
        runner = web.AppRunner(create_app(self.settings, redis), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()
            await redis.aclose()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(15), "the gateway did not start"
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the gateway did not stop"


@pytest.fixture(scope="module")
def gateway(redis_server: int) -> Iterator[Gateway]:
    from conftest import SECRET_KEY

    server = Gateway(f"redis://127.0.0.1:{redis_server}/0", SECRET_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy from the environment: loopback only
        yield session


@pytest.fixture(scope="module")
def known_ids(gateway: Gateway, http: requests.Session) -> dict[str, str]:
    """Ids that exist, so the id routes are also exercised on their 2xx answers."""
    base = gateway.base_url
    ep = http.post(
        f"{base}/v1/endpoints",
        json={"business_id": "bus_fuzz", "url": "http://127.0.0.1:9/hook"},
        headers=AUTH,
        timeout=10,
    )
    assert ep.status_code == 201, ep.text
    evt = http.post(
        f"{base}/v1/events",
        json={"business_id": "bus_fuzz", "type": "payment.succeeded", "data": {}},
        headers=AUTH,
        timeout=10,
    )
    assert evt.status_code == 202, evt.text
    body = evt.json()
    replay = http.post(
        f"{base}/v1/endpoints/{ep.json()['id']}/replay",
        json={"since": "1h"},
        headers=AUTH,
        timeout=10,
    )
    assert replay.status_code == 202, replay.text
    key = http.post(
        f"{base}/v1/api-keys", json={"name": "fuzz", "scopes": ["read"]}, headers=AUTH, timeout=10
    )
    assert key.status_code == 201, key.text
    return {
        "key": key.json()["id"],
        "evt": body["id"],
        "dlv": body["deliveries"][0],
        "ep": ep.json()["id"],
        "rpl": replay.json()["replay_id"],
    }


def new_endpoint(base: str, http: requests.Session) -> str:
    ep = http.post(
        f"{base}/v1/endpoints",
        json={"business_id": "bus_fuzz", "url": "http://127.0.0.1:9/hook"},
        headers=AUTH,
        timeout=10,
    )
    assert ep.status_code == 201, ep.text
    return str(ep.json()["id"])


def check(case: Any, base: str, http: requests.Session) -> None:
    case.call_and_validate(base_url=base, session=http, headers=AUTH, checks=CHECKS, timeout=10)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_none_is_a_5xx(
    case: Any, gateway: Gateway, http: requests.Session, known_ids: dict[str, str]
) -> None:
    base = gateway.base_url
    check(case, base, http)
    # The same request again on an id that exists: the 200 answers are checked too.
    path = case.operation.path
    kind = next((k for prefix, k in ID_KINDS.items() if path.startswith(prefix)), None)
    # (Not when the id is what a negative case made invalid: a real one makes the case valid.)
    if (
        kind is not None
        and "id" in (case.path_parameters or {})
        and not case.meta.is_negative_at(ParameterLocation.PATH)
    ):
        # An endpoint of its own each time: a DELETE, PATCH or disable may change it.
        real = new_endpoint(base, http) if kind == "ep" else known_ids[kind]
        case.path_parameters = {**case.path_parameters, "id": real}
        check(case, base, http)
