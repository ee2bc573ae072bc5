"""Verifier.from_env reads HOOKGATE_WEBHOOK_SECRET (space-separated keys for rotation)."""

from __future__ import annotations

import pytest

from hookgate_verifier import ENV_SECRET, InvalidSecret, Verifier

from .conftest import BODY, EVENT, OTHER_SECRET, SECRET, FakeClock


def test_variable_name_is_documented_constant() -> None:
    assert ENV_SECRET == "HOOKGATE_WEBHOOK_SECRET"


def test_from_env_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, headers: dict[str, str]
) -> None:
    monkeypatch.setenv("HOOKGATE_WEBHOOK_SECRET", SECRET)
    assert Verifier.from_env(clock=clock).verify(BODY, headers) == EVENT


def test_from_env_splits_rotated_secrets(clock: FakeClock, headers: dict[str, str]) -> None:
    environ = {"HOOKGATE_WEBHOOK_SECRET": f"{OTHER_SECRET}  {SECRET}\n"}
    assert Verifier.from_env(environ=environ, clock=clock).verify(BODY, headers) == EVENT


def test_from_env_other_variable(clock: FakeClock, headers: dict[str, str]) -> None:
    verifier = Verifier.from_env("MY_HOOK_SECRET", environ={"MY_HOOK_SECRET": SECRET}, clock=clock)
    assert verifier.verify(BODY, headers) == EVENT


@pytest.mark.parametrize(
    "environ", [{}, {"HOOKGATE_WEBHOOK_SECRET": ""}, {"HOOKGATE_WEBHOOK_SECRET": "  "}]
)
def test_from_env_unset_is_invalid_secret(environ: dict[str, str]) -> None:
    with pytest.raises(InvalidSecret, match="HOOKGATE_WEBHOOK_SECRET is not set"):
        Verifier.from_env(environ=environ)


def test_from_env_bad_value_is_invalid_secret() -> None:
    with pytest.raises(InvalidSecret):
        Verifier.from_env(environ={"HOOKGATE_WEBHOOK_SECRET": "hunter2"})
