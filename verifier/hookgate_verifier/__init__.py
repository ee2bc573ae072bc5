"""Verify webhooks sent by hookgate (Standard Webhooks signatures), stdlib only.

from hookgate_verifier import Verifier, VerificationError

verifier = Verifier("whsec_…")
event = verifier.verify(body, headers)  # parsed JSON object, or VerificationError
"""

from .errors import (
    InvalidPayload,
    InvalidSecret,
    InvalidSignature,
    MalformedHeaders,
    MissingHeaders,
    ReplayCheckUnavailable,
    Replayed,
    TimestampOutOfTolerance,
    VerificationError,
)
from .extras import MissingExtra
from .headers import HeadersLike
from .keys import generate_ed25519_keypair, generate_secret
from .ordering import Ordering, SequenceCheck, check_sequence, read_ordering
from .replay import AsyncSeenStore, MemorySeenStore, SeenStore
from .signing import new_webhook_id, sign, signed_headers
from .verifier import DEFAULT_TOLERANCE, ENV_SECRET, Verifier

__all__ = [
    "DEFAULT_TOLERANCE",
    "ENV_SECRET",
    "AsyncSeenStore",
    "HeadersLike",
    "InvalidPayload",
    "InvalidSecret",
    "InvalidSignature",
    "MalformedHeaders",
    "MemorySeenStore",
    "MissingExtra",
    "MissingHeaders",
    "Ordering",
    "ReplayCheckUnavailable",
    "Replayed",
    "SeenStore",
    "SequenceCheck",
    "TimestampOutOfTolerance",
    "VerificationError",
    "Verifier",
    "check_sequence",
    "generate_ed25519_keypair",
    "generate_secret",
    "new_webhook_id",
    "read_ordering",
    "sign",
    "signed_headers",
]

__version__ = "0.1.0"
