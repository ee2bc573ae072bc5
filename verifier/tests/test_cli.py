"""`python -m hookgate_verifier`, run as a subprocess the way a developer would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hookgate_verifier import signed_headers
from hookgate_verifier.cli import parse_header_file

from .conftest import BODY, NOW, SECRET


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HOOKGATE_WEBHOOK_SECRET"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hookgate_verifier", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, Path]:
    headers = signed_headers(SECRET, BODY, msg_id="msg_1", timestamp=NOW)
    headers_file = tmp_path / "h.txt"
    headers_file.write_text(
        "POST /webhooks HTTP/1.1\n"
        "Host: merchant.example\n"
        "Content-Type: application/json\n"
        + "".join(f"{name.title()}: {value}\n" for name, value in headers.items())
    )
    body_file = tmp_path / "b.json"
    body_file.write_bytes(BODY)
    return headers_file, body_file


def test_valid_capture_prints_ok(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    result = run(
        "--secret", SECRET, "--headers", str(headers), "--body", str(body), "--at", str(NOW)
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "OK\n", "")


def test_tampered_body_prints_reason_and_exits_1(
    capture: tuple[Path, Path], tmp_path: Path
) -> None:
    headers, _ = capture
    body = tmp_path / "other.json"
    body.write_bytes(BODY + b" ")
    result = run(
        "--secret", SECRET, "--headers", str(headers), "--body", str(body), "--at", str(NOW)
    )
    assert result.returncode == 1
    assert result.stdout == "FAIL invalid_signature: no matching signature\n"


def test_old_capture_fails_on_time_without_at(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    result = run("--secret", SECRET, "--headers", str(headers), "--body", str(body))
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL timestamp_out_of_tolerance:")


def test_tolerance_option(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    args = (
        "--secret",
        SECRET,
        "--headers",
        str(headers),
        "--body",
        str(body),
        "--at",
        str(NOW + 60),
    )
    assert run(*args, "--tolerance", "59").returncode == 1
    assert run(*args, "--tolerance", "60").returncode == 0


def test_secret_from_environment(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    result = run(
        "--headers",
        str(headers),
        "--body",
        str(body),
        "--at",
        str(NOW),
        env={"HOOKGATE_WEBHOOK_SECRET": SECRET},
    )
    assert (result.returncode, result.stdout) == (0, "OK\n")


def test_json_headers_file(capture: tuple[Path, Path], tmp_path: Path) -> None:
    _, body = capture
    headers = tmp_path / "h.json"
    headers.write_text(json.dumps(signed_headers(SECRET, BODY, msg_id="msg_1", timestamp=NOW)))
    result = run(
        "--secret", SECRET, "--headers", str(headers), "--body", str(body), "--at", str(NOW)
    )
    assert (result.returncode, result.stdout) == (0, "OK\n")


def test_missing_headers_in_file(tmp_path: Path, capture: tuple[Path, Path]) -> None:
    _, body = capture
    headers = tmp_path / "empty.txt"
    headers.write_text("Content-Type: application/json\n")
    result = run("--secret", SECRET, "--headers", str(headers), "--body", str(body))
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL missing_headers: missing header: webhook-id")


def _usage_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_no_arguments_is_usage_error() -> None:
    _usage_error(run(), "required")


def test_unknown_option_is_usage_error(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    _usage_error(run("--headers", str(headers), "--body", str(body), "--bogus"), "--bogus")


def test_unreadable_file_is_usage_error(tmp_path: Path, capture: tuple[Path, Path]) -> None:
    headers, _ = capture
    missing = tmp_path / "nope.json"
    _usage_error(
        run("--secret", SECRET, "--headers", str(headers), "--body", str(missing)), "nope.json"
    )


def test_bad_secret_is_usage_error(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    _usage_error(
        run("--secret", "hunter2", "--headers", str(headers), "--body", str(body)), "secret #1"
    )


def test_no_secret_anywhere_is_usage_error(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    _usage_error(run("--headers", str(headers), "--body", str(body)), "HOOKGATE_WEBHOOK_SECRET")


def test_bad_number_is_usage_error(capture: tuple[Path, Path]) -> None:
    headers, body = capture
    args = ("--secret", SECRET, "--headers", str(headers), "--body", str(body))
    _usage_error(run(*args, "--at", "yesterday"), "--at")
    _usage_error(run(*args, "--tolerance", "-5"), "tolerance")


def test_non_utf8_headers_file_is_usage_error(tmp_path: Path, capture: tuple[Path, Path]) -> None:
    _, body = capture
    headers = tmp_path / "h.bin"
    headers.write_bytes(b"\xff\xfe")
    _usage_error(run("--secret", SECRET, "--headers", str(headers), "--body", str(body)), "UTF-8")


@pytest.mark.parametrize("text", ['{"a": ', '["list"]', '{"a": 1}'])
def test_bad_json_headers_file_is_usage_error(
    tmp_path: Path, capture: tuple[Path, Path], text: str
) -> None:
    _, body = capture
    headers = tmp_path / "h.json"
    headers.write_text(text)
    _usage_error(run("--secret", SECRET, "--headers", str(headers), "--body", str(body)), "JSON")


def test_header_file_parsing_rules() -> None:
    text = (
        "POST http://merchant.example:8080/hook HTTP/1.1\n"
        "\n"
        "Webhook-Id:  msg_1  \n"
        "webhook-id: msg_2\n"
        "bad name: x\n"
        "no colon here\n"
        "X-Empty:\n"
    )
    assert parse_header_file(text) == {"webhook-id": "msg_1", "x-empty": ""}
