"""`python -m hookgate_verifier`: check a captured webhook request from the command line.

    python -m hookgate_verifier --secret whsec_… --headers h.txt --body b.json

The headers file holds `Name: value` lines (as copied from a request dump; the request line
and anything else without a header name is skipped) or a JSON object. Prints `OK` and exits
0 if the webhook verifies, prints `FAIL <code>: <reason>` and exits 1 if it does not, and
exits 2 with a one-line message on bad usage. `--at` checks the timestamp as of another
moment, for requests captured longer ago than the tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import NoReturn

from .errors import InvalidSecret, VerificationError
from .verifier import DEFAULT_TOLERANCE, ENV_SECRET, Verifier

__all__ = ["main", "parse_header_file"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line usage: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse prints the whole usage block; a one-line reason is easier to act on.
        raise UsageError(message)


def parse_header_file(text: str) -> dict[str, str]:
    """Headers from a JSON object or `Name: value` lines; the first occurrence of a name wins."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            loaded = json.loads(stripped)
        except ValueError as exc:
            raise UsageError(f"headers file is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
        ):
            raise UsageError("headers JSON must be an object of strings")
        return {k.lower(): v for k, v in loaded.items()}
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        name = name.strip()
        # A header name is one token; this skips "POST /hook HTTP/1.1" and blank lines.
        if not sep or not name or any(c.isspace() for c in name):
            continue
        headers.setdefault(name.lower(), value.strip())
    return headers


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="python -m hookgate_verifier",
        description="Verify a captured webhook request (Standard Webhooks signatures).",
    )
    parser.add_argument(
        "--secret",
        action="append",
        metavar="KEY",
        help=f"whsec_… secret or whpk_… public key; repeat for several "
        f"(default: ${ENV_SECRET}, space-separated)",
    )
    parser.add_argument("--headers", required=True, metavar="FILE", help="captured headers")
    parser.add_argument("--body", required=True, metavar="FILE", help="captured body, raw bytes")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE.total_seconds(),
        metavar="SECONDS",
        help="allowed clock difference (default: %(default)g)",
    )
    parser.add_argument(
        "--at",
        type=int,
        metavar="UNIX_SECONDS",
        help="verify as if the time were this (default: now)",
    )
    return parser


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc.strerror}") from None


def _run(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    headers_raw = _read(args.headers, "headers")
    body = _read(args.body, "body")
    try:
        headers = parse_header_file(headers_raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError("headers file is not UTF-8 text") from None
    at: int | None = args.at
    clock: Callable[[], float] = time.time if at is None else (lambda: float(at))
    secrets: list[str] | None = args.secret
    try:
        if secrets:
            verifier = Verifier(secrets, tolerance=args.tolerance, clock=clock)
        else:
            verifier = Verifier.from_env(tolerance=args.tolerance, clock=clock)
    except (InvalidSecret, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        verifier.verify(body, headers)
    except VerificationError as exc:
        print(f"FAIL {exc.code}: {exc.message}")
        return EXIT_FAILED
    print("OK")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    try:
        return _run(argv)
    except UsageError as exc:
        print(f"python -m hookgate_verifier: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
