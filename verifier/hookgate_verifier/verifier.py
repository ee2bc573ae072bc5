"""The Verifier: checks a webhook's headers and body, returns the parsed event."""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from binascii import Error as Base64Error
from binascii import a2b_base64, b2a_base64
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from hmac import compare_digest
from hmac import digest as hmac_digest
from typing import Any, cast

from .errors import (
    InvalidPayload,
    InvalidSecret,
    InvalidSignature,
    MalformedHeaders,
    ReplayCheckUnavailable,
    Replayed,
    TimestampOutOfTolerance,
)
from .headers import HeadersLike, read_webhook_headers
from .keys import load_keyring
from .replay import AsyncSeenStore, SeenStore

__all__ = ["DEFAULT_TOLERANCE", "ENV_SECRET", "MAX_SIGNATURES", "Verifier"]

DEFAULT_TOLERANCE = timedelta(minutes=5)
ENV_SECRET = "HOOKGATE_WEBHOOK_SECRET"
"""Variable read by `Verifier.from_env()`: one key, or several separated by spaces."""

MAX_SIGNATURES = 32
"""Signatures read from one header. Bounds the work (ed25519 checks are ~100x an HMAC) a
garbage header can cause; rotations use two or three."""

# Twelve digits reach the year 33658: anything longer is garbage, and int() on a huge digit
# string is quadratic, so the length is checked first.
_MAX_TIMESTAMP_DIGITS = 12


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN and Infinity are Python extensions to JSON; a strict receiver refuses them.
_decode_json = json.JSONDecoder(parse_constant=_reject_constant).decode

Body = bytes | bytearray | memoryview | str
Event = dict[str, Any]


class Verifier:
    """Verify Standard Webhooks signatures (`v1` HMAC-SHA256, `v1a` ed25519).

    `secrets` is one `whsec_…` secret or `whpk_…` public key, or several (rotation: a
    signature from any of them passes). `tolerance` bounds |now - webhook-timestamp| in
    both directions; `clock` returns Unix seconds (inject one in tests). With `seen`, an
    id accepted once is refused again for as long as its signature could still pass.
    """

    __slots__ = (
        "_async_seen",
        "_clock",
        "_ed25519_keys",
        "_ed25519_rejects",
        "_hmac_keys",
        "_seen",
        "_single_hmac_key",
        "_tolerance",
    )

    def __init__(
        self,
        secrets: str | Iterable[str],
        *,
        tolerance: float | timedelta = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
        seen: SeenStore | AsyncSeenStore | None = None,
    ) -> None:
        keyring = load_keyring(secrets)
        self._hmac_keys = keyring.hmac_keys
        self._ed25519_keys = keyring.ed25519_keys
        # The common case, one HMAC secret alone, gets a branch of its own on the hot path.
        self._single_hmac_key = (
            keyring.hmac_keys[0]
            if len(keyring.hmac_keys) == 1 and not keyring.ed25519_keys
            else None
        )
        self._ed25519_rejects: tuple[type[Exception], ...] = ()
        if keyring.ed25519_keys:
            from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature

            self._ed25519_rejects = (CryptoInvalidSignature,)
        seconds = tolerance.total_seconds() if isinstance(tolerance, timedelta) else tolerance
        if not (0 <= seconds < math.inf):
            raise ValueError("tolerance must be a finite, non-negative number of seconds")
        self._tolerance = float(seconds)
        self._clock = clock
        # Exactly one of these is set when a replay store is given.
        self._seen: SeenStore | None = None
        self._async_seen: AsyncSeenStore | None = None
        if seen is not None and inspect.iscoroutinefunction(seen.add):
            self._async_seen = cast(AsyncSeenStore, seen)
        elif seen is not None:
            self._seen = cast(SeenStore, seen)

    def __repr__(self) -> str:
        return (
            f"Verifier(<{len(self._hmac_keys)} hmac, {len(self._ed25519_keys)} ed25519 keys>, "
            f"tolerance={self._tolerance:g}s, seen={self._seen or self._async_seen!r})"
        )

    @classmethod
    def from_env(
        cls,
        variable: str = ENV_SECRET,
        *,
        environ: Mapping[str, str] | None = None,
        tolerance: float | timedelta = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
        seen: SeenStore | AsyncSeenStore | None = None,
    ) -> Verifier:
        """Build from `HOOKGATE_WEBHOOK_SECRET` (space-separated keys for rotation).

        Raises InvalidSecret if the variable is unset, empty or holds a bad key.
        """
        value = (os.environ if environ is None else environ).get(variable, "")
        keys = value.split()
        if not keys:
            raise InvalidSecret(f"environment variable {variable} is not set")
        return cls(keys, tolerance=tolerance, clock=clock, seen=seen)

    @property
    def tolerance(self) -> float:
        """Seconds a webhook-timestamp may differ from now, either way."""
        return self._tolerance

    def verify(self, body: Body, headers: HeadersLike) -> Event:
        """Return the body parsed as a JSON object if the webhook is authentic and fresh.

        Raises a VerificationError subclass, and nothing else, for any body and headers.
        With an async `seen` store, call `verify_async` instead (TypeError otherwise).
        """
        if self._async_seen is not None:
            raise TypeError("this Verifier has an async replay store: use verify_async()")
        event, msg_id, timestamp, now = self._check(body, headers)
        if self._seen is not None:
            try:
                fresh = self._seen.add(msg_id, self._replay_ttl(timestamp, now))
            except Exception as exc:
                raise ReplayCheckUnavailable("replay store unavailable") from exc
            if not fresh:
                raise Replayed("webhook-id already accepted")
        return event

    async def verify_async(self, body: Body, headers: HeadersLike) -> Event:
        """`verify` for asyncio code: the same checks, awaiting an async replay store."""
        if self._async_seen is None:
            return self.verify(body, headers)
        event, msg_id, timestamp, now = self._check(body, headers)
        try:
            fresh = await self._async_seen.add(msg_id, self._replay_ttl(timestamp, now))
        except Exception as exc:
            raise ReplayCheckUnavailable("replay store unavailable") from exc
        if not fresh:
            raise Replayed("webhook-id already accepted")
        return event

    def forget(self, msg_id: str) -> None:
        """Drop `msg_id` from the replay store, so the sender's retry is accepted.

        Call it when the handler failed after `verify` succeeded. No-op without a store.
        """
        if self._async_seen is not None:
            raise TypeError("this Verifier has an async replay store: use forget_async()")
        if self._seen is not None:
            self._seen.discard(msg_id)

    async def forget_async(self, msg_id: str) -> None:
        """`forget` for asyncio code, awaiting an async replay store."""
        if self._async_seen is not None:
            await self._async_seen.discard(msg_id)
        else:
            self.forget(msg_id)

    def _replay_ttl(self, timestamp: int, now: float) -> float:
        # A captured request stays valid until timestamp + tolerance; remember its id at
        # least that long, and never less than one tolerance after acceptance.
        return max(self._tolerance, timestamp + self._tolerance - now)

    def _check(self, body: Body, headers: HeadersLike) -> tuple[Event, str, int, float]:
        # This is every receiver's hot path: the common shapes (a mapping answering the
        # lowercase names, one signature, one secret) are inlined here, function calls and
        # copies kept out; every other shape goes through the general helpers.
        try:
            get = headers.get  # type: ignore[union-attr]
            msg_id = get("webhook-id")
            ts_text = get("webhook-timestamp")
            signatures = get("webhook-signature")
        except Exception:  # noqa: BLE001 - a list or foreign container: the general reader decides
            msg_id = None
        if not (
            type(msg_id) is str
            and type(ts_text) is str
            and type(signatures) is str
            and msg_id
            and ts_text
            and signatures
        ):
            msg_id, ts_text, signatures = read_webhook_headers(headers)

        # Canonical decimal only: the signed text is the header as sent, so "+1", "1.0"
        # or "01" would sign differently from the integer they mean.
        if (
            len(ts_text) > _MAX_TIMESTAMP_DIGITS
            or not ts_text.isascii()
            or not ts_text.isdigit()
            or (ts_text[0] == "0" and len(ts_text) > 1)
        ):
            raise MalformedHeaders("webhook-timestamp must be integer seconds since the epoch")
        timestamp = int(ts_text)
        now = self._clock()
        if timestamp < now - self._tolerance:
            raise TimestampOutOfTolerance("webhook-timestamp is too old")
        if timestamp > now + self._tolerance:
            raise TimestampOutOfTolerance("webhook-timestamp is too far in the future")

        if type(body) is not bytes:
            body = _as_bytes(body)
        try:
            content = f"{msg_id}.{ts_text}.".encode() + body
        except UnicodeEncodeError:
            raise MalformedHeaders("webhook-id is not valid text") from None

        key = self._single_hmac_key
        if key is not None and " " not in signatures:
            # One secret, one signature: compare the whole "v1,<base64>" text at once.
            if not (
                signatures.isascii()
                and compare_digest(
                    b"v1," + b2a_base64(hmac_digest(key, content, "sha256"), newline=False),
                    signatures.encode(),
                )
            ):
                raise InvalidSignature("no matching signature")
        elif not self._any_signature_matches(content, signatures):
            raise InvalidSignature("no matching signature")

        try:
            event = _decode_json(body.decode())
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise InvalidPayload("body is not valid UTF-8 JSON") from None
        if type(event) is not dict:
            raise InvalidPayload("body is not a JSON object")
        return event, msg_id, timestamp, now

    def _any_signature_matches(self, content: bytes, signatures: str) -> bool:
        parts = [part for part in signatures.split(" ") if part]
        if len(parts) > MAX_SIGNATURES:
            raise InvalidSignature(f"more than {MAX_SIGNATURES} signatures")
        expected: list[bytes] | None = None
        for part in parts:
            version, _, value = part.partition(",")
            if not value.isascii():
                continue
            if version == "v1" and self._hmac_keys:
                if expected is None:
                    expected = [
                        b2a_base64(hmac_digest(k, content, "sha256"), newline=False)
                        for k in self._hmac_keys
                    ]
                candidate = value.encode()
                for wanted in expected:
                    if compare_digest(wanted, candidate):
                        return True
            elif version == "v1a" and self._ed25519_keys:
                try:
                    raw = a2b_base64(value, strict_mode=True)
                except Base64Error:
                    continue
                for public_key in self._ed25519_keys:
                    try:
                        public_key.verify(raw, content)
                    except self._ed25519_rejects:
                        continue
                    return True
        return False


def _as_bytes(body: object) -> bytes:
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        try:
            return body.encode()
        except UnicodeEncodeError:
            raise InvalidPayload("body is not valid UTF-8 text") from None
    raise InvalidPayload(f"body must be bytes, not {type(body).__name__}")
