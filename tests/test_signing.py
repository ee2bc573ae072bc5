import base64
import hashlib
import hmac

from standardwebhooks import Webhook

from gateway.core.ids import new_secret
from worker.signing import USER_AGENT, build_headers

BODY = (
    b'{"business_id":"bus_1","type":"payment.succeeded",'
    b'"timestamp":"2026-11-20T13:10:00Z","data":{}}'
)


def test_headers_verify_with_the_reference_library() -> None:
    secret = new_secret()
    headers = build_headers(
        msg_id="evt_1", timestamp=1_763_640_000, body=BODY, secrets=[secret], custom={}
    )
    assert headers["webhook-id"] == "evt_1"
    assert headers["webhook-timestamp"] == "1763640000"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    # the reference library checks the timestamp against now, so recompute the MAC by hand too
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, b"evt_1.1763640000." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_every_secret_signs_during_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    import time

    now = int(time.time())
    headers = build_headers(msg_id="evt_2", timestamp=now, body=BODY, secrets=[new, old], custom={})
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2 and all(e.startswith("v1,") for e in entries)
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)  # raises if no entry matches this secret


def test_custom_headers_are_sent_but_never_override_ours() -> None:
    headers = build_headers(
        msg_id="evt_3",
        timestamp=1,
        body=BODY,
        secrets=[new_secret()],
        custom={"X-Merchant": "m1", "webhook-id": "forged"},
    )
    assert headers["X-Merchant"] == "m1"
    assert headers["webhook-id"] == "evt_3"


def test_secrets_have_the_standard_form() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
