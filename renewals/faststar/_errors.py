"""Every exception the FastStar package raises, in one hierarchy.

Talking to the API (raised by every ``FastStarClient`` method except ``charge_off_session``,
which *returns* a ``ChargeOutcome`` and raises only ``FastStarConfigurationError``)::

    FastStarError                       base of everything below; never raised itself
    ├── FastStarConfigurationError      401/403, a 404 that is not a FastStar envelope, bad
    │                                   base URL or key: retrying cannot help; stop loudly.
    ├── FastStarNotSentError            the request provably did not execute: connect error,
    │                                   connect/pool timeout, 429. Safe to retry the same call
    │                                   (``retry_after`` seconds from ``Retry-After`` if given).
    ├── FastStarRequestRejected         a definite 4xx (400, 402 outside the charge, 404,
    │                                   422 ...): FastStar refused it; ``status_code`` and the
    │                                   server's ``server_message``. Retrying unchanged won't help.
    └── FastStarUnknownOutcomeError     the request may or may not have executed: read/write
        │                               timeout after sending, 5xx, protocol error, dropped
        │                               connection, 408, 409 idempotency conflict.
        └── FastStarMalformedResponse   a 2xx whose envelope or ``data`` does not have the
                                        documented shape (HTML, truncated JSON, missing fields).

Inbound webhooks (``signatures.verify_signature`` and ``events.parse_event``); these
subclass ``ValueError``, not ``FastStarError``, because they describe a bad *inbound*
request, not a failed call to FastStar::

    InvalidSignature                    reject the webhook (answer 400), do not process it
    ├── MalformedSignatureHeader        header missing ``t=`` / ``v1=`` or unparsable
    ├── StaleSignature                  ``t`` older than the tolerance (replay protection)
    ├── FutureSignature                 ``t`` further in the future than the tolerance
    └── SignatureMismatch               no ``v1`` matches any configured secret
    InvalidWebhookEvent                 signed body is not a well-formed event envelope

Messages name the endpoint, the HTTP status and what was wrong. They never contain the API
key: the client redacts it from anything the server echoes back.
"""

from __future__ import annotations

__all__ = [
    "FastStarConfigurationError",
    "FastStarError",
    "FastStarMalformedResponse",
    "FastStarNotSentError",
    "FastStarRequestRejected",
    "FastStarUnknownOutcomeError",
    "FutureSignature",
    "InvalidSignature",
    "InvalidWebhookEvent",
    "MalformedSignatureHeader",
    "SignatureMismatch",
    "StaleSignature",
]


class FastStarError(Exception):
    """Base class for failures talking to the FastStar API.

    ``endpoint`` is ``"<METHOD> <path>"`` (paths carry ids, never secrets);
    ``status_code`` is the HTTP status when a response arrived, else ``None``.
    """

    def __init__(
        self, message: str, *, endpoint: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status_code = status_code


class FastStarConfigurationError(FastStarError):
    """The key or the base URL is wrong (401/403, bad scheme). Not retryable."""


class FastStarNotSentError(FastStarError):
    """The request did not execute; retrying the same call is safe."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status_code=status_code)
        self.retry_after = retry_after


class FastStarRequestRejected(FastStarError):
    """FastStar definitely refused the request with a 4xx."""

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status_code: int,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint, status_code=status_code)
        self.server_message = server_message


class FastStarUnknownOutcomeError(FastStarError):
    """The request may have executed. Do not assume either way; reconcile."""


class FastStarMalformedResponse(FastStarUnknownOutcomeError):
    """A response arrived but its envelope or data is not the documented shape."""


class InvalidSignature(ValueError):
    """A webhook's ``X-Webhook-Signature`` does not authenticate its body."""


class MalformedSignatureHeader(InvalidSignature):
    """The signature header cannot be parsed."""


class StaleSignature(InvalidSignature):
    """The signed timestamp is older than the tolerance."""


class FutureSignature(InvalidSignature):
    """The signed timestamp is further in the future than the tolerance."""


class SignatureMismatch(InvalidSignature):
    """No ``v1`` signature matches any configured secret."""


class InvalidWebhookEvent(ValueError):
    """A (verified) webhook body is not a well-formed FastStar event envelope."""
