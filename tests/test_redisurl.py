"""HOOKGATE_REDIS_URL: one Redis or a Sentinel group, and every way to get it wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import ConfigError
from gateway.core.redisurl import RedisTarget, parse_redis_url
from gateway.core.settings import Settings


def test_a_plain_url_is_kept_as_it_is() -> None:
    target = parse_redis_url("redis://:pw@10.0.0.5:6380/2")
    assert target == RedisTarget(url="redis://:pw@10.0.0.5:6380/2")
    assert not target.is_sentinel
    assert "pw" not in target.describe()


def test_a_sentinel_url_names_every_sentinel_the_group_and_the_database() -> None:
    target = parse_redis_url("redis+sentinel://app:s%40cret@h1:26380,h2,[::1]:26381/payments/3")
    assert target.sentinels == (("h1", 26380), ("h2", 26379), ("::1", 26381))
    assert (target.master, target.db, target.username, target.password) == (
        "payments",
        3,
        "app",
        "s@cret",
    )
    assert not target.tls
    assert target.describe() == "redis+sentinel://h1:26380,h2:26379,::1:26381/payments/3"
    assert "cret" not in repr(target)


def test_tls_sentinel_and_defaults() -> None:
    target = parse_redis_url("rediss+sentinel://h1:26379/mymaster")
    assert target.tls and target.db == 0 and target.password is None and target.username is None
    assert parse_redis_url("redis+sentinel://h1/m/").master == "m"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("localhost:6380", "no scheme"),
        ("http://localhost", "unknown scheme"),
        ("redis+sentinel://h1:26379", "master_name"),
        ("redis+sentinel://h1:26379/", "master_name"),
        ("redis+sentinel://h1:26379/m/x", "database"),
        ("redis+sentinel://h1:26379/m/16", "database"),
        ("redis+sentinel://h1:26379/m/0/extra", "master_name"),
        ("redis+sentinel://h1:99999/m", "out of range"),
        ("redis+sentinel://h1:abc/m", "host:port"),
        ("redis+sentinel://h1,,h2/m", "host:port"),
        ("redis+sentinel:///m", "host:port"),
        ("redis+sentinel://h1/bad name", "master_name"),
        ("redis://host:notaport/0", "not a valid URL"),
        ("redis://", "no host"),
    ],
)
def test_a_malformed_url_says_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_redis_url(url)


def test_settings_refuse_a_bad_url_naming_the_variable_and_never_echoing_it() -> None:
    with pytest.raises(ConfigError, match="HOOKGATE_REDIS_URL") as caught:
        Settings.from_env({"HOOKGATE_REDIS_URL": "redis+sentinel://u:hunter2@h1:26379"})
    assert "hunter2" not in str(caught.value)


def test_wait_replicas_defaults_to_one_behind_sentinel_and_zero_otherwise() -> None:
    assert Settings(redis_url="redis://h:6380/0").wait_replicas == 0
    assert Settings(redis_url="redis+sentinel://h:26379/m").wait_replicas == 1
    sentinel = Settings.from_env(
        {"HOOKGATE_REDIS_URL": "redis+sentinel://h:26379/m", "HOOKGATE_REDIS_WAIT_REPLICAS": "0"}
    )
    assert sentinel.wait_replicas == 0
    assert Settings.from_env({"HOOKGATE_REDIS_WAIT_TIMEOUT": "250ms"}).redis_wait_timeout == 0.25


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOKGATE_REDIS_WAIT_REPLICAS", "-1"),
        ("HOOKGATE_REDIS_WAIT_REPLICAS", "17"),
        ("HOOKGATE_REDIS_WAIT_REPLICAS", "one"),
        ("HOOKGATE_REDIS_WAIT_TIMEOUT", "0s"),
        ("HOOKGATE_REDIS_WAIT_TIMEOUT", "soon"),
        ("HOOKGATE_ALLOW_NON_DURABLE_REDIS", "perhaps"),
    ],
)
def test_bad_redis_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    """Nothing but ValueError escapes, and what parses describes itself without a password."""
    try:
        target = parse_redis_url(text)
    except ValueError:
        return
    if target.is_sentinel:
        assert target.master in target.describe()
        assert target.password is None or f":{target.password}@" not in target.describe()
    else:
        assert target.url == text
