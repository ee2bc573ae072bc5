from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.catalog import load_catalog, matches
from gateway.core.errors import ValidationFailed
from gateway.core.ids import new_id
from gateway.core.targets import TargetRules
from gateway.web import validation
from gateway.web.errors import status_of

KNOWN = load_catalog()
OPEN = TargetRules(https_only=False, allow_private=True)
STRICT = TargetRules()


def event(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"business_id": "bus_1", "type": "payment.succeeded", "data": {}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


def test_a_good_event() -> None:
    ev = validation.event_in(event(timestamp="2026-11-20T13:10:00Z"))
    assert (ev.business_id, ev.type, ev.timestamp) == (
        "bus_1",
        "payment.succeeded",
        "2026-11-20T13:10:00Z",
    )


def test_a_missing_timestamp_is_now() -> None:
    assert validation.event_in(event()).timestamp.endswith("Z")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("x", "body"),
        (event(business_id=...), "business_id"),
        (event(business_id=5), "business_id"),
        (event(business_id=""), "business_id"),
        (event(business_id="has space"), "business_id"),
        (event(type=...), "type"),
        (event(type="nodot"), "type"),
        (event(type="bad-char.x"), "type"),
        (event(type="hookgate.test"), "type"),
        (event(data=...), "data"),
        (event(data=[1]), "data"),
        (event(data=None), "data"),
        (event(timestamp="yesterday"), "timestamp"),
        (event(timestamp="2026-11-20T13:10:00"), "timestamp"),  # no offset
        (event(timestamp="2026-11-20"), "timestamp"),
        (event(timestamp=17), "timestamp"),
        (event(extra=1), "extra"),
    ],
)
def test_bad_events_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validation.event_in(body)
    assert info.value.field == field


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_any_json_is_accepted_or_refused_with_a_field(value: Any) -> None:
    try:
        validation.event_in(value)
    except ValidationFailed as exc:
        assert status_of(exc) == 422 and exc.field


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "https://",
        "https://user:pw@example.com/",
        "https://example.com/#frag",
        "https://exa mple.com/",
        "https://example.com:99999/",
        "https://" + "a" * 2100 + ".com/",
        17,
    ],
)
def test_bad_urls(url: Any) -> None:
    with pytest.raises(ValidationFailed):
        validation.url(url, OPEN)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://127.0.0.1/",
        "https://localhost:8443/",
        "https://10.1.2.3/",
        "https://[::1]/",
        "https://[::ffff:192.168.0.1]/",
        "https://169.254.169.254/latest",
        "https://api.localhost/",
    ],
)
def test_http_and_private_targets_need_the_switch(url: str) -> None:
    with pytest.raises(ValidationFailed):
        validation.url(url, STRICT)
    assert validation.url(url, OPEN) == url


def test_public_https_is_fine() -> None:
    assert validation.url("https://merchant.example/hooks", STRICT)


def test_event_type_subscriptions() -> None:
    assert validation.event_types(["payment.*", "credit.added", "credit.added"], KNOWN) == (
        "payment.*",
        "credit.added",
    )
    for bad in ([], "payment.*", ["*"], ["payment"], ["nope.never"], [1]):
        with pytest.raises(ValidationFailed):
            validation.event_types(bad, KNOWN)


def test_custom_headers() -> None:
    assert validation.custom_headers({"X-Tenant": "a"}) == {"X-Tenant": "a"}
    for bad in (
        {"webhook-id": "x"},
        {"Content-Type": "text/plain"},
        {"Host": "evil"},
        {"X-A": "line\r\nbreak"},
        {"bad name": "x"},
        {"X-A": 1},
        {f"X-{i}": "v" for i in range(21)},
        [],
    ):
        with pytest.raises(ValidationFailed):
            validation.custom_headers(bad)


def test_endpoint_fields() -> None:
    fields = validation.endpoint_fields(
        {"business_id": "b", "url": "https://m.example/h", "max_in_flight": 3},
        known_types=KNOWN,
        rules=STRICT,
        partial=False,
    )
    assert fields.max_in_flight == 3 and fields.event_types is None
    for bad in (
        {"url": "https://m.example/h"},
        {"business_id": "b"},
        {"business_id": "b", "url": "https://m.example/h", "max_in_flight": 0},
        {"business_id": "b", "url": "https://m.example/h", "max_in_flight": True},
        {"business_id": "b", "url": "https://m.example/h", "secret": "mine"},
    ):
        with pytest.raises(ValidationFailed):
            validation.endpoint_fields(bad, known_types=KNOWN, rules=STRICT, partial=False)
    with pytest.raises(ValidationFailed, match="cannot be changed"):
        validation.endpoint_fields(
            {"business_id": "c"}, known_types=KNOWN, rules=STRICT, partial=True
        )


def test_matching() -> None:
    assert matches([], "payment.succeeded")
    assert matches(["payment.*"], "payment.succeeded")
    assert not matches(["payment.*"], "payments.succeeded")
    assert not matches(["pay.*"], "payment.succeeded")
    assert matches(["credit.added", "refund.*"], "refund.failed")
    assert not matches(["credit.added"], "credit.added2")


def test_ids_are_time_ordered_and_well_formed() -> None:
    a, b = new_id("evt", 1_000), new_id("evt", 2_000)
    assert a < b and len(a) == 30 and a.startswith("evt_")


def test_an_id_carries_its_time() -> None:
    import time

    from gateway.core.ids import id_time_ms

    now = int(time.time() * 1000) + 10_000  # ahead of every id made so far in this process
    assert id_time_ms(new_id("evt", now)) == now
    assert abs(id_time_ms(new_id("dlv")) - time.time() * 1000) < 20_000


def test_catalog_holds_the_billing_types() -> None:
    assert {"payment.succeeded", "subscription.on_hold", "credit.added"} <= KNOWN
    assert len(KNOWN) == 46
