"""The one exception tree of hookgate_verifier.

VerificationError                 anything that makes a webhook untrustworthy or unusable
├── InvalidSecret                 a configured secret or key cannot be decoded (raised early)
├── MissingHeaders                webhook-id / webhook-timestamp / webhook-signature absent
├── MalformedHeaders              a header is present but unusable (bad timestamp, bad text)
├── TimestampOutOfTolerance       webhook-timestamp too far from the receiver's clock
├── InvalidSignature              no signature in webhook-signature matches any key
├── InvalidPayload                signature valid, body is not a UTF-8 JSON object
├── Replayed                      webhook-id already accepted within the replay window
└── ReplayCheckUnavailable        the replay store failed; the sender should retry later

A feature used without its optional extra raises `extras.MissingExtra`, an ImportError kept
outside this tree: it is a deployment mistake, not an untrustworthy webhook.

Each class carries `code` (stable, for JSON error bodies) and `status` (the HTTP status the
framework adapters answer with). Messages never contain secrets, keys or signatures.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "InvalidPayload",
    "InvalidSecret",
    "InvalidSignature",
    "MalformedHeaders",
    "MissingHeaders",
    "ReplayCheckUnavailable",
    "Replayed",
    "TimestampOutOfTolerance",
    "VerificationError",
]


class VerificationError(Exception):
    """A webhook failed verification; `str(exc)` is a reason safe to show the sender."""

    code: ClassVar[str] = "verification_failed"
    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidSecret(VerificationError):
    """A configured secret or public key is not a decodable `whsec_` / `whpk_` / `whsk_` key."""

    code = "invalid_secret"
    # Never sent to a sender in practice (raised at configuration time), but a misconfigured
    # receiver is the receiver's fault, hence 500 if an adapter ever meets it.
    status = 500


class MissingHeaders(VerificationError):
    """One or more of webhook-id, webhook-timestamp, webhook-signature is absent or empty."""

    code = "missing_headers"
    status = 400


class MalformedHeaders(VerificationError):
    """A webhook header is present but not usable (non-integer timestamp, undecodable text)."""

    code = "malformed_headers"
    status = 400


class TimestampOutOfTolerance(VerificationError):
    """webhook-timestamp is further from the receiver's clock than the tolerance allows."""

    code = "timestamp_out_of_tolerance"
    status = 401


class InvalidSignature(VerificationError):
    """No signature in webhook-signature matches the body under any configured key."""

    code = "invalid_signature"
    status = 401


class InvalidPayload(VerificationError):
    """The signature is valid but the body is not a UTF-8 encoded JSON object."""

    code = "invalid_payload"
    status = 400


class Replayed(VerificationError):
    """This webhook-id was already accepted within the replay window."""

    code = "replayed"
    status = 401


class ReplayCheckUnavailable(VerificationError):
    """The replay store could not be reached; answer 5xx so the sender retries later."""

    code = "replay_check_unavailable"
    status = 503
