import pytest

from gateway.core.durations import format_duration, parse_duration
from gateway.core.errors import ConfigError
from gateway.core.settings import Settings, parse_schedule


def test_defaults_match_the_documented_ones() -> None:
    s = Settings.from_env({})
    assert s.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert s.max_attempts == 8
    assert s.delivery_timeout == 15
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.allow_private_targets is False
    assert s.log_format == "json"
    assert s.request_timeout == 30


def test_values_are_read_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "HOOKGATE_RETRY_SCHEDULE": "1s, 250ms,2m",
            "HOOKGATE_DELIVERY_TIMEOUT": "3s",
            "HOOKGATE_ALLOW_PRIVATE_TARGETS": "TRUE",
            "HOOKGATE_PORT": "9001",
            "HOOKGATE_LOG_FORMAT": "console",
            "HOOKGATE_ADMIN_TOKEN": "x" * 16,
            "HOOKGATE_REQUEST_TIMEOUT": "10s",
            "HOOKGATE_PUBLIC_URL": "https://hooks.example.com:8443/",
        },
        require_token=True,
    )
    assert s.retry_schedule == (1.0, 0.25, 120.0)
    assert s.delivery_timeout == 3.0
    assert s.allow_private_targets is True
    assert s.port == 9001
    assert s.admin_token == "x" * 16
    assert s.request_timeout == 10
    assert s.public_url == "https://hooks.example.com:8443"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOKGATE_PORT", "80000"),
        ("HOOKGATE_PORT", "http"),
        ("HOOKGATE_RETRY_SCHEDULE", "5s,,5m"),
        ("HOOKGATE_RETRY_SCHEDULE", "5 minutes"),
        ("HOOKGATE_DELIVERY_TIMEOUT", "0s"),
        ("HOOKGATE_DELIVERY_TIMEOUT", "-1s"),
        ("HOOKGATE_ALLOW_PRIVATE_TARGETS", "maybe"),
        ("HOOKGATE_LOG_FORMAT", "xml"),
        ("HOOKGATE_REDIS_URL", "http://localhost"),
        ("HOOKGATE_ADMIN_TOKEN", "short"),
        ("HOOKGATE_WORKER_CONCURRENCY", "0"),
        ("HOOKGATE_REQUEST_TIMEOUT", "0s"),
        ("HOOKGATE_REQUEST_TIMEOUT", "soon"),
        ("HOOKGATE_METRICS_TOKEN", "short"),
        ("HOOKGATE_PUBLIC_URL", "hooks.example.com"),
        ("HOOKGATE_PUBLIC_URL", "ftp://hooks.example.com"),
        ("HOOKGATE_PUBLIC_URL", "https://hooks.example.com/portal"),
        ("HOOKGATE_PUBLIC_URL", "https://user:pw@hooks.example.com"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_serve_requires_a_token() -> None:
    with pytest.raises(ConfigError, match="HOOKGATE_ADMIN_TOKEN is required"):
        Settings.from_env({}, require_token=True)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5), ("15m", 900), ("2h", 7200), ("5d", 432000), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "s", "5w", "-5s", "5 s s", "1e3s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ("5s", "5m", "30m", "2h", "10h", "5d", "250ms"):
        assert format_duration(parse_duration(text)) == text


def test_schedule_has_a_step_limit() -> None:
    with pytest.raises(ValueError, match="50"):
        parse_schedule(",".join(["1s"] * 51))
