"""Webhook signatures as FastStar documents them (docs/faststar.md, Part A).

``X-Webhook-Signature: t=<unix ts>,v1=<hex HMAC-SHA256>`` where the HMAC is keyed with the
merchant's webhook secret over the bytes ``<t>.<raw body>``.

Verification choices FastStar leaves open (Part A says nothing about them):

* the timestamp tolerance (default 300 s) applies both ways, so neither a replay of an old
  delivery nor a header minted with a clock far ahead is accepted;
* several ``v1=`` values are accepted (a sender signing with old and new secret during a
  rotation), and several secrets on our side (we rotate without downtime); any match passes;
* unknown schemes (``v0=`` ...) are ignored, as Stripe-style headers expect;
* the signature is checked before the timestamp, so a forged header learns nothing about
  our clock and a genuine-but-old delivery is reported as stale, not as forged.

``compute_signature`` and ``signature_header`` are used by the sandbox to sign; keep them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Final

from ._errors import (
    FutureSignature,
    InvalidSignature,
    MalformedSignatureHeader,
    SignatureMismatch,
    StaleSignature,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "FutureSignature",
    "InvalidSignature",
    "MalformedSignatureHeader",
    "SignatureMismatch",
    "StaleSignature",
    "compute_signature",
    "signature_header",
    "verify_signature",
]

DEFAULT_TOLERANCE_S: Final = 300
# Bounds keep a hostile header from costing us many HMACs or a huge parse.
_MAX_HEADER_LEN: Final = 4096
_MAX_SIGNATURES: Final = 8
_HEX_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")
_TIMESTAMP: Final = re.compile(r"[0-9]{1,12}")


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``X-Webhook-Signature`` for one secret."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    if not isinstance(header, str) or not header.strip():
        raise MalformedSignatureHeader("X-Webhook-Signature is missing or empty")
    if len(header) > _MAX_HEADER_LEN:
        raise MalformedSignatureHeader(
            f"X-Webhook-Signature is {len(header)} characters long (limit {_MAX_HEADER_LEN})"
        )
    timestamps: list[str] = []
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise MalformedSignatureHeader(
                "X-Webhook-Signature has an element without '=' (expected t=...,v1=...)"
            )
        key, value = key.strip(), value.strip()
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
        # Other schemes are ignored on purpose (forward compatibility).
    if len(timestamps) != 1:
        raise MalformedSignatureHeader(
            f"X-Webhook-Signature needs exactly one t=, found {len(timestamps)}"
        )
    if _TIMESTAMP.fullmatch(timestamps[0]) is None:
        raise MalformedSignatureHeader("X-Webhook-Signature t= is not a unix timestamp")
    if not signatures:
        raise MalformedSignatureHeader("X-Webhook-Signature has no v1= signature")
    if len(signatures) > _MAX_SIGNATURES:
        raise MalformedSignatureHeader(
            f"X-Webhook-Signature has {len(signatures)} v1= values (limit {_MAX_SIGNATURES})"
        )
    if not all(_HEX_SHA256.fullmatch(sig) for sig in signatures):
        raise MalformedSignatureHeader("X-Webhook-Signature v1= is not a 64-character hex SHA-256")
    return int(timestamps[0]), [sig.lower() for sig in signatures]


def verify_signature(
    secret_or_secrets: str | Sequence[str],
    header: str,
    body: bytes,
    *,
    now: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check ``X-Webhook-Signature`` against the raw ``body``; return its timestamp.

    Raises a subclass of ``InvalidSignature``: ``MalformedSignatureHeader``,
    ``SignatureMismatch``, ``StaleSignature`` or ``FutureSignature``. ``ValueError`` (not
    ``InvalidSignature``) for our own misconfiguration: no secret, negative tolerance.
    """
    secrets = [secret_or_secrets] if isinstance(secret_or_secrets, str) else list(secret_or_secrets)
    if not secrets or not all(isinstance(s, str) and s for s in secrets):
        raise ValueError("at least one non-empty webhook secret is required")
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("verify the raw request body (bytes), before parsing JSON")

    timestamp, candidates = _parse_header(header)
    raw = bytes(body)
    matched = False
    # Compare every pair without an early exit: timing then reveals neither which secret
    # nor which candidate matched.
    for secret in secrets:
        expected = compute_signature(secret, timestamp, raw)
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureMismatch(
            "X-Webhook-Signature does not match the body with any configured secret"
        )
    age = now - timestamp
    if age > tolerance_s:
        raise StaleSignature(
            f"X-Webhook-Signature is {age} s old (tolerance {tolerance_s} s); possible replay"
        )
    if -age > tolerance_s:
        raise FutureSignature(
            f"X-Webhook-Signature is {-age} s in the future (tolerance {tolerance_s} s); "
            "check clocks"
        )
    return timestamp
