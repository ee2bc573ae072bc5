from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway.store.metrics import LATENCY_BUCKETS, latency_bucket
from worker.retry import decide, jittered, parse_retry_after

SCHEDULE = (5.0, 300.0, 1800.0)


def test_2xx_succeeds_whatever_the_attempt() -> None:
    for status in (200, 201, 202, 204, 299):
        assert decide(
            status=status, attempt=4, schedule=SCHEDULE, jitter=0.2, unit=0.5
        ).outcome == ("succeeded")


def test_410_means_gone() -> None:
    assert decide(status=410, attempt=1, schedule=SCHEDULE, jitter=0, unit=0).outcome == "gone"


def test_3xx_4xx_5xx_and_no_answer_retry_on_the_schedule() -> None:
    for status in (None, 301, 302, 400, 404, 500, 502):
        d = decide(status=status, attempt=2, schedule=SCHEDULE, jitter=0, unit=0.9)
        assert (d.outcome, d.delay) == ("retry", 300.0)


def test_the_last_attempt_fails() -> None:
    # attempt 4 is the last: one first attempt + three scheduled retries
    assert decide(status=500, attempt=3, schedule=SCHEDULE, jitter=0, unit=0).outcome == "retry"
    assert decide(status=500, attempt=4, schedule=SCHEDULE, jitter=0, unit=0).outcome == "failed"


@given(
    step=st.floats(min_value=0.001, max_value=1e6),
    unit=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_jitter_stays_within_twenty_percent(step: float, unit: float) -> None:
    delay = jittered(step, 0.2, unit)
    assert step * 0.8 - 1e-9 <= delay <= step * 1.2 + 1e-9


def test_jitter_spans_the_whole_range() -> None:
    assert jittered(100.0, 0.2, 0.0) == 80.0
    assert jittered(100.0, 0.2, 0.5) == 100.0


def test_retry_after_is_honoured_and_clamped_to_twice_the_step() -> None:
    d = decide(status=429, attempt=1, schedule=SCHEDULE, jitter=0.2, unit=0.9, retry_after=2.0)
    assert (d.outcome, d.delay) == ("retry", 2.0)
    d = decide(status=503, attempt=1, schedule=SCHEDULE, jitter=0.2, unit=0.9, retry_after=3600.0)
    assert d.delay == 10.0
    # only 429 and 503 carry a meaningful Retry-After
    d = decide(status=500, attempt=1, schedule=SCHEDULE, jitter=0, unit=0, retry_after=1.0)
    assert d.delay == 5.0


def test_parse_retry_after_forms() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now.timestamp()) == 120.0
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now.timestamp()) == 90.0
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(earlier, now.timestamp()) == 0.0
    for junk in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2026"):
        assert parse_retry_after(junk, now.timestamp()) is None


def test_latency_buckets() -> None:
    assert latency_bucket(0.0) == "0.005"
    assert latency_bucket(0.005) == "0.005"
    assert latency_bucket(0.0051) == "0.01"
    assert latency_bucket(LATENCY_BUCKETS[-1] + 1) == "+Inf"
