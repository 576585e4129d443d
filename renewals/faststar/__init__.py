"""FastStar: the typed API client, charge outcome classes, webhook signatures and events.

``FastStarClient.charge_off_session`` returns a ``ChargeOutcome`` (``Paid``,
``AuthenticationRequired``, ``Declined``, ``NotSent``, ``Unknown``; the classification table
is in ``renewals.faststar._classify``). The other methods return typed resources or raise the
exceptions drawn in ``renewals.faststar._errors``.
"""

from __future__ import annotations

from ._classify import (
    DECLINE_CODES,
    classify_charge_response,
    classify_charge_transport_error,
    extract_decline_code,
    parse_retry_after,
)
from ._client import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, FastStarClient
from ._errors import (
    FastStarConfigurationError,
    FastStarError,
    FastStarMalformedResponse,
    FastStarNotSentError,
    FastStarRequestRejected,
    FastStarUnknownOutcomeError,
    FutureSignature,
    InvalidSignature,
    InvalidWebhookEvent,
    MalformedSignatureHeader,
    SignatureMismatch,
    StaleSignature,
)
from ._ratelimit import TokenBucket
from ._types import (
    AuthenticationRequired,
    ChargeOutcome,
    CheckoutMode,
    CheckoutPresentation,
    CheckoutSession,
    Customer,
    Declined,
    LineItem,
    NotSent,
    Paid,
    PaymentMethod,
    Price,
    PriceType,
    Product,
    RecurringInterval,
    SetupIntent,
    Unknown,
)
from .events import PaymentEventData, WebhookEvent, parse_event, parse_verified_event
from .signatures import compute_signature, signature_header, verify_signature

__all__ = [
    "DECLINE_CODES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "AuthenticationRequired",
    "ChargeOutcome",
    "CheckoutMode",
    "CheckoutPresentation",
    "CheckoutSession",
    "Customer",
    "Declined",
    "FastStarClient",
    "FastStarConfigurationError",
    "FastStarError",
    "FastStarMalformedResponse",
    "FastStarNotSentError",
    "FastStarRequestRejected",
    "FastStarUnknownOutcomeError",
    "FutureSignature",
    "InvalidSignature",
    "InvalidWebhookEvent",
    "LineItem",
    "MalformedSignatureHeader",
    "NotSent",
    "Paid",
    "PaymentEventData",
    "PaymentMethod",
    "Price",
    "PriceType",
    "Product",
    "RecurringInterval",
    "SetupIntent",
    "SignatureMismatch",
    "StaleSignature",
    "TokenBucket",
    "Unknown",
    "WebhookEvent",
    "classify_charge_response",
    "classify_charge_transport_error",
    "compute_signature",
    "extract_decline_code",
    "parse_event",
    "parse_retry_after",
    "parse_verified_event",
    "signature_header",
    "verify_signature",
]
