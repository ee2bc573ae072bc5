"""Cost of hookgate_verifier.Verifier.verify against the floor and the reference library.

The floor is the work no verifier can skip: one HMAC-SHA256 over the (prebuilt) signed
content plus json.loads of the body. "floor (utf-8 first)" is the same with the body decoded
to str before json.loads, which is cheaper; it is reported for transparency, the ratios
are taken against "floor". The reference is the `standardwebhooks` package.
All three run interleaved in the same process, so the ratios hold on a shared, noisy
machine even when absolute times drift; each figure is the median over --repeats runs of
a timeit loop of --number calls.

Usage: python bench/bench_verifier.py [--repeats 7] [--number 20000]
Needs hookgate-verifier and standardwebhooks installed (pip install './verifier[test]').
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

import standardwebhooks
from hookgate_verifier import Verifier, sign
from hookgate_verifier.keys import decode_key_material

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_2pQm8ZJkQhR3uT7vX9yB1cD4eF6"
BODY_SIZE = 1024


def realistic_envelope(size: int = BODY_SIZE) -> bytes:
    """A billing envelope shaped like events/catalog.json, padded to exactly `size` bytes."""
    event: dict[str, Any] = {
        "business_id": "bus_01HZX4Q7M2",
        "type": "subscription.renewed",
        "timestamp": "2026-11-20T13:10:00Z",
        "data": {
            "payload_type": "Subscription",
            "subscription_id": "sub_9KQ2ZP4T",
            "customer": {"customer_id": "cus_123", "email": "ada@example.com", "name": "Ada"},
            "status": "active",
            "product_id": "prod_ai_pro_plan",
            "quantity": 3,
            "recurring_pre_tax_amount": 4900,
            "currency": "EUR",
            "tax_inclusive": False,
            "trial_period_days": 0,
            "next_billing_date": "2026-12-20T13:10:00Z",
            "previous_billing_date": "2026-11-20T13:10:00Z",
            "metadata": {"plan": "pro", "seats": "3", "source": "checkout"},
            "addons": [
                {"addon_id": f"adn_{i:04d}", "quantity": i, "unit_price": 100 * i}
                for i in range(1, 6)
            ],
            "cancel_at_next_billing_date": False,
            "discount_id": None,
            "note": "",
        },
    }
    pad = size - len(json.dumps(event).encode())
    if pad < 0:
        raise ValueError(f"envelope is already {size - pad} bytes")
    event["data"]["note"] = "n" * pad
    body = json.dumps(event).encode()
    assert len(body) == size
    return body


def padded_string_envelope(size: int = BODY_SIZE) -> bytes:
    """A small envelope padded with one long string: cheap to parse, so overhead shows most."""
    event: dict[str, Any] = {
        "business_id": "bus_bench",
        "type": "payment.succeeded",
        "data": {"payment_id": "pay_0123456789", "amount": 1999, "currency": "EUR", "note": ""},
    }
    event["data"]["note"] = "x" * (size - len(json.dumps(event)))
    body = json.dumps(event).encode()
    assert len(body) == size
    return body


def candidates(body: bytes) -> dict[str, Callable[[], object]]:
    timestamp = int(time.time())
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(SECRET, msg_id=MSG_ID, timestamp=timestamp, body=body),
        "content-type": "application/json",
    }
    key = decode_key_material(SECRET.removeprefix("whsec_"), "secret")
    content = f"{MSG_ID}.{timestamp}.".encode() + body
    expected = json.loads(body)

    def floor() -> object:
        hmac.digest(key, content, "sha256")
        return json.loads(body)

    def floor_text_parse() -> object:
        # json.loads(bytes) sniffs the encoding and decodes with an error handler; decoding
        # UTF-8 first is cheaper. Shown so the margin the verifier gains there is visible.
        hmac.digest(key, content, "sha256")
        return json.loads(body.decode())

    ours = Verifier(SECRET)
    reference = standardwebhooks.Webhook(SECRET)
    runs: dict[str, Callable[[], object]] = {
        "floor": floor,
        "floor (utf-8 first)": floor_text_parse,
        "hookgate_verifier": lambda: ours.verify(body, headers),
        "standardwebhooks": lambda: reference.verify(body, headers),
    }
    for name, run in runs.items():
        if run() != expected:
            raise SystemExit(f"{name} returned a wrong result")
    return runs


def measure(
    runs: dict[str, Callable[[], object]], repeats: int, number: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median µs per call for each candidate, and the median of per-repeat ratios to floor."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: caches, branch predictors, lazy imports
        timeit.Timer(run).timeit(number // 10 or 1)
    for _ in range(repeats):
        for name, run in runs.items():  # interleaved, so drift hits all candidates alike
            times[name].append(timeit.Timer(run).timeit(number) / number * 1e6)
    medians = {name: statistics.median(values) for name, values in times.items()}
    paired = {
        name: statistics.median(t / f for t, f in zip(values, times["floor"], strict=True))
        for name, values in times.items()
    }
    return medians, paired


def report(title: str, body: bytes, repeats: int, number: int) -> None:
    medians, paired = measure(candidates(body), repeats, number)
    floor = medians["floor"]
    print(f"\n{title} ({len(body)} bytes, one v1 signature)")
    print(f"  {'':<20}{'µs/verify':>10}{'x floor':>9}{'paired x':>10}")
    for name, value in medians.items():
        print(f"  {name:<20}{value:>10.2f}{value / floor:>9.2f}{paired[name]:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--number", type=int, default=20_000)
    args = parser.parse_args()
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), "
        f"nproc {os.cpu_count()}, {platform.machine()}, "
        f"median of {args.repeats} runs x {args.number} calls"
    )
    report("realistic billing envelope", realistic_envelope(), args.repeats, args.number)
    report("small envelope + long string", padded_string_envelope(), args.repeats, args.number)


if __name__ == "__main__":
    main()
