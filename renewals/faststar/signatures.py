"""Webhook signatures as FastStar documents them (faststar-api.md, Part A).

``X-Webhook-Signature: t=<unix ts>,v1=<hex HMAC-SHA256>`` where the HMAC is keyed with the
merchant's webhook secret over the bytes ``<t>.<raw body>``.
"""

from __future__ import annotations

import hashlib
import hmac


def compute_signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``X-Webhook-Signature`` for one secret."""
    return f"t={timestamp},v1={compute_signature(secret, timestamp, body)}"
