"""The one place that decides what a FastStar response (or a transport failure) means.

FastStar documents exactly one status (402 from the charge endpoint) and no idempotency, so
this module errs on the side of **unknown**: a charge is ``Paid`` only when every documented
field says so, and anything that could have executed is never reported as not executed.

Off-session charge (``POST /public/customers/:id/charge``) -> ``ChargeOutcome``
===============================================================================

=====================================================  =========================================
What came back                                         Outcome
=====================================================  =========================================
2xx, JSON object, ``success`` is ``true``,             ``Paid``
``data.status == "succeeded"``, ``data.payment_
intent_id`` matches ``pi_[A-Za-z0-9_]+``, ``data.
amount`` an int equal to the request, ``data.
currency`` equal to the request (case-insensitive),
``data.payment_method_id`` equal to the request
2xx, ``data.status == "requires_action"``              ``AuthenticationRequired``
2xx, ``data.status`` in failed / declined /            ``Declined`` (code parsed from the body)
requires_payment_method / canceled
2xx, anything else: not JSON, truncated JSON,          ``Unknown`` (reason says which)
not an object, ``success`` not a bool, ``success:
false`` without such a status, no ``data``, other
status, ``success: false`` + ``succeeded``, bad /
missing pi id, amount not an int (``"1999"``,
``1999.0``), amount / currency / payment method
different from the request
402                                                    ``AuthenticationRequired`` (documented)
401, 403                                               raises ``FastStarConfigurationError``
404 whose body is not a FastStar envelope              raises ``FastStarConfigurationError``
                                                       (a wrong base URL must not look like a
                                                       decline on every card)
408 (the server/proxy timed out reading; it may        ``Unknown``
have been forwarded), 409 (idempotency conflict:
the keyed request may have executed)
429                                                    ``NotSent`` (``Retry-After`` seconds or
                                                       HTTP-date parsed into ``retry_after``)
other 4xx (400, 404, 422 ...) with ``success``         ``Declined`` (decline code such as
not ``true``                                           ``card_declined`` parsed from ``data`` or
                                                       the message, else ``None``)
other 4xx whose body claims ``success: true``          ``Unknown`` (self-contradictory)
5xx, 1xx, 3xx (redirects are never followed)           ``Unknown``
-----------------------------------------------------  -----------------------------------------
``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``,  ``NotSent`` (no byte of the request left)
``ProxyError``
``ReadTimeout``, ``WriteTimeout``, ``ReadError``,       ``Unknown`` (the request may have been
``WriteError``, ``RemoteProtocolError``, other          received and executed)
protocol / transport / decoding errors
``UnsupportedProtocol`` (base URL scheme)              raises ``FastStarConfigurationError``
=====================================================  =========================================

Every other endpoint -> data or a typed exception (see ``_errors.py`` for the hierarchy)
=========================================================================================

2xx + JSON object + ``success: true`` + a ``data`` key -> ``data`` (the endpoint's parser then
checks its shape); any other 2xx -> ``FastStarMalformedResponse``; 401/403 (and an
envelope-less 404) -> ``FastStarConfigurationError``; 429 and not-sent transport errors ->
``FastStarNotSentError``; 408/409, 5xx, 1xx/3xx and unknown transport errors ->
``FastStarUnknownOutcomeError``; other 4xx -> ``FastStarRequestRejected``.

The functions here are pure (no I/O, no logging) so property tests can hammer them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Final, Literal

import httpx

from ._errors import (
    FastStarConfigurationError,
    FastStarError,
    FastStarMalformedResponse,
    FastStarNotSentError,
    FastStarRequestRejected,
    FastStarUnknownOutcomeError,
)
from ._types import AuthenticationRequired, ChargeOutcome, Declined, NotSent, Paid, Unknown

__all__ = [
    "DECLINE_CODES",
    "classify_charge_response",
    "classify_charge_transport_error",
    "extract_decline_code",
    "parse_retry_after",
    "transport_error_to_exception",
    "unwrap_envelope",
]

Redact = Callable[[str], str]

_PI_ID: Final = re.compile(r"pi_[A-Za-z0-9_]+")
_CODE_SHAPE: Final = re.compile(r"[a-z][a-z0-9_]{2,63}")
_MAX_MESSAGE: Final = 300

# Card-network / PSP decline codes (the common Stripe-style vocabulary). FastStar has no
# machine error code, so we look for these words in the message. "Generic" ones lose to a
# more specific code found in the same message ("card_declined: insufficient_funds").
_GENERIC_CODES: Final = frozenset({"card_declined", "generic_decline", "do_not_honor"})
DECLINE_CODES: Final[frozenset[str]] = _GENERIC_CODES | frozenset(
    {
        "authentication_required",
        "approve_with_id",
        "call_issuer",
        "card_not_supported",
        "card_velocity_exceeded",
        "currency_not_supported",
        "do_not_try_again",
        "duplicate_transaction",
        "expired_card",
        "fraudulent",
        "incorrect_cvc",
        "incorrect_number",
        "incorrect_zip",
        "insufficient_funds",
        "invalid_account",
        "invalid_amount",
        "invalid_cvc",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_number",
        "issuer_not_available",
        "lost_card",
        "merchant_blacklist",
        "new_account_information_available",
        "no_action_taken",
        "not_permitted",
        "pickup_card",
        "processing_error",
        "reenter_transaction",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "service_not_allowed",
        "stolen_card",
        "stop_payment_order",
        "testmode_decline",
        "transaction_not_allowed",
        "try_again_later",
        "withdrawal_count_limit_exceeded",
    }
)
_CODE_IN_TEXT: Final = re.compile(
    r"(?<![A-Za-z0-9_])("
    + "|".join(sorted(DECLINE_CODES, key=len, reverse=True))
    + r")(?![A-Za-z0-9_])"
)
# Fields a decline body might carry a code in (undocumented; harmless if absent).
_CODE_FIELDS: Final = ("decline_code", "code", "failure_code", "error_code", "reason")

_DECLINED_STATUSES: Final = frozenset({"failed", "declined", "requires_payment_method", "canceled"})

_NOT_JSON: Final = object()


def _identity(text: str) -> str:
    return text


# --------------------------------------------------------------------------- small helpers


def _loads(content: bytes) -> object:
    """The parsed JSON body, or ``_NOT_JSON``. Never raises."""
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, deep nesting
        return _NOT_JSON


def _describe_unparsable(content: bytes, content_type: str | None) -> str:
    # Describe rather than quote the body: it may hold customer data we must not log.
    kind = content_type.split(";", 1)[0].strip() if content_type else "no content-type"
    if not content.strip():
        return f"an empty body ({kind})"
    if content.lstrip()[:1] in (b"{", b"["):
        return f"truncated or invalid JSON ({kind}, {len(content)} bytes)"
    return f"a non-JSON body ({kind}, {len(content)} bytes)"


def _describe_json(body: object) -> str:
    return f"a JSON {type(body).__name__}" if not isinstance(body, dict) else "a JSON object"


def _server_message(body: object, redact: Redact) -> str | None:
    """The envelope's human-readable ``message``, trimmed and with the API key redacted."""
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            text = " ".join(message.split())  # also strips newlines a log line would split on
            if len(text) > _MAX_MESSAGE:
                text = text[:_MAX_MESSAGE] + "..."
            return redact(text)
    return None


def _is_envelope(body: object) -> bool:
    return isinstance(body, dict) and isinstance(body.get("success"), bool)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or HTTP-date), else None."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is malformed
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def extract_decline_code(message: str | None, data: object = None) -> str | None:
    """A decline code from ``data`` (undocumented fields) or the message, else ``None``."""
    if isinstance(data, dict):
        for key in _CODE_FIELDS:
            value = data.get(key)
            if isinstance(value, str) and _CODE_SHAPE.fullmatch(value):
                return value
    if not message:
        return None
    found: list[str] = _CODE_IN_TEXT.findall(message)
    if not found:
        return None
    specific = [code for code in found if code not in _GENERIC_CODES]
    return specific[0] if specific else found[0]


# --------------------------------------------------------------------------- charge


def classify_charge_response(
    status_code: int,
    headers: httpx.Headers,
    content: bytes,
    *,
    amount: int,
    currency: str,
    payment_method_id: str,
    endpoint: str = "POST /public/customers/:id/charge",
    redact: Redact = _identity,
) -> ChargeOutcome:
    """Classify one HTTP response to an off-session charge (see the module table).

    Returns an outcome for everything except a configuration problem (401/403, envelope-less
    404), which raises ``FastStarConfigurationError``. Never raises anything else.
    """
    body = _loads(content)
    message = _server_message(body, redact)
    where = f"{endpoint} answered HTTP {status_code}"

    if 200 <= status_code < 300:
        return _classify_charge_2xx(
            status_code,
            body,
            content=content,
            headers=headers,
            message=message,
            where=where,
            amount=amount,
            currency=currency,
            payment_method_id=payment_method_id,
        )
    if status_code in (401, 403):
        raise FastStarConfigurationError(
            f"{where}: the API key was refused ({message or 'no message'}); "
            "check FASTSTAR_API_KEY and the base URL",
            endpoint=endpoint,
            status_code=status_code,
        )
    if status_code == 402:
        return AuthenticationRequired(
            message=message or "Payment requires additional authentication",
            http_status=402,
        )
    if status_code == 404 and not _is_envelope(body):
        raise FastStarConfigurationError(
            f"{where} with {_describe_body(body, content, headers)} instead of a FastStar "
            "envelope; the base URL is probably wrong",
            endpoint=endpoint,
            status_code=status_code,
        )
    if status_code == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        return NotSent(
            reason=f"{where} (rate limited; Retry-After {retry_after}s)",
            retry_after=retry_after,
            http_status=429,
        )
    if status_code == 409:
        return Unknown(
            reason=f"{where} (idempotency conflict: a request with this key may already "
            f"have executed; {message or 'no message'})",
            http_status=409,
        )
    if status_code == 408:
        return Unknown(
            reason=f"{where} (request timeout; it may have been forwarded)", http_status=408
        )
    if 400 <= status_code < 500:
        if isinstance(body, dict) and body.get("success") is True:
            return Unknown(
                reason=f"{where} but the body claims success: true", http_status=status_code
            )
        data = body.get("data") if isinstance(body, dict) else None
        return Declined(
            reason_code=extract_decline_code(message, data),
            message=message or f"HTTP {status_code} with {_describe_body(body, content, headers)}",
            http_status=status_code,
        )
    if 500 <= status_code < 600:
        detail = message or _describe_body(body, content, headers)
        return Unknown(
            reason=f"{where} (server error; the charge may have executed: {detail})",
            http_status=status_code,
        )
    return Unknown(reason=f"{where} (unexpected status class)", http_status=status_code)


def _describe_body(body: object, content: bytes, headers: httpx.Headers) -> str:
    if body is _NOT_JSON:
        return _describe_unparsable(content, headers.get("content-type"))
    return _describe_json(body)


def _classify_charge_2xx(  # noqa: PLR0912 - one branch per row of the table above
    status_code: int,
    body: object,
    *,
    content: bytes,
    headers: httpx.Headers,
    message: str | None,
    where: str,
    amount: int,
    currency: str,
    payment_method_id: str,
) -> ChargeOutcome:
    def unknown(what: str) -> Unknown:
        return Unknown(
            reason=f"{where} but {what}; the charge may have executed", http_status=status_code
        )

    if not isinstance(body, dict):
        return unknown(f"the body is {_describe_body(body, content, headers)}")
    success = body.get("success")
    if not isinstance(success, bool):
        return unknown(f"'success' is {_kind(success)}, not a boolean")
    data = body.get("data")
    if not isinstance(data, dict):
        state = "missing" if data is None else _kind(data)
        return unknown(f"success: {str(success).lower()} with 'data' {state}")
    status = data.get("status")
    if not isinstance(status, str):
        return unknown(f"data.status is {_kind(status)}")

    if status == "requires_action":
        return AuthenticationRequired(
            message=message or "Payment requires additional authentication",
            http_status=status_code,
        )
    if status in _DECLINED_STATUSES:
        return Declined(
            reason_code=extract_decline_code(message, data),
            message=message or f"charge status {status!r}",
            http_status=status_code,
        )
    if status != "succeeded":
        return unknown(f"data.status is {status[:40]!r}, not 'succeeded'")
    if success is not True:
        return unknown("success: false contradicts data.status 'succeeded'")

    pi_id = data.get("payment_intent_id")
    if not isinstance(pi_id, str) or _PI_ID.fullmatch(pi_id) is None:
        return unknown(f"data.payment_intent_id is {_kind(pi_id)}, not a pi_ id")
    paid_amount = data.get("amount")
    # type() rather than isinstance: True is an int, 1999.0 is not an amount.
    if type(paid_amount) is not int:
        return unknown(f"data.amount is {_kind(paid_amount)}, not an integer")
    if paid_amount != amount:
        return unknown(f"data.amount {paid_amount} differs from the requested {amount}")
    paid_currency = data.get("currency")
    if not isinstance(paid_currency, str):
        return unknown(f"data.currency is {_kind(paid_currency)}")
    if paid_currency.upper() != currency.upper():
        return unknown(
            f"data.currency {paid_currency[:8]!r} differs from the requested {currency!r}"
        )
    paid_pm = data.get("payment_method_id")
    if paid_pm != payment_method_id:
        return unknown(
            f"data.payment_method_id is {_kind(paid_pm)}, not the requested {payment_method_id}"
        )
    return Paid(
        payment_intent_id=pi_id,
        amount=paid_amount,
        currency=paid_currency.upper(),
        payment_method_id=payment_method_id,
    )


def _kind(value: object) -> str:
    """Short, data-free description of a JSON value for messages."""
    if value is None:
        return "missing/null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a JSON {'object' if isinstance(value, dict) else 'array'}"


# --------------------------------------------------------------------------- transport errors

_TransportKind = Literal["not_sent", "unknown", "configuration"]


def _transport_kind(exc: httpx.HTTPError) -> _TransportKind:
    # Order matters: ConnectTimeout is a TimeoutException, ProxyError a TransportError.
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "configuration"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return "not_sent"
    if isinstance(exc, httpx.ProxyError):  # raised while setting up the tunnel
        return "not_sent"
    return "unknown"


def _describe_exc(exc: BaseException, redact: Redact) -> str:
    text = str(exc).strip()
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def classify_charge_transport_error(
    exc: httpx.HTTPError,
    *,
    endpoint: str = "POST /public/customers/:id/charge",
    redact: Redact = _identity,
) -> ChargeOutcome:
    """Classify an httpx exception raised while charging (see the module table)."""
    kind = _transport_kind(exc)
    detail = _describe_exc(exc, redact)
    if kind == "configuration":
        raise FastStarConfigurationError(
            f"{endpoint} could not be sent: {detail}; check the base URL", endpoint=endpoint
        ) from exc
    if kind == "not_sent":
        return NotSent(reason=f"{endpoint} was not sent: {detail}")
    return Unknown(reason=f"{endpoint} failed after the request may have been sent: {detail}")


def transport_error_to_exception(
    exc: httpx.HTTPError, *, endpoint: str, redact: Redact = _identity
) -> FastStarError:
    """The typed exception for an httpx failure on a non-charge endpoint (caller raises it)."""
    kind = _transport_kind(exc)
    detail = _describe_exc(exc, redact)
    if kind == "configuration":
        return FastStarConfigurationError(
            f"{endpoint} could not be sent: {detail}; check the base URL", endpoint=endpoint
        )
    if kind == "not_sent":
        return FastStarNotSentError(f"{endpoint} was not sent: {detail}", endpoint=endpoint)
    return FastStarUnknownOutcomeError(
        f"{endpoint} failed after the request may have been sent: {detail}", endpoint=endpoint
    )


# --------------------------------------------------------------------------- other endpoints


def unwrap_envelope(
    status_code: int,
    headers: httpx.Headers,
    content: bytes,
    *,
    endpoint: str,
    redact: Redact = _identity,
) -> object:
    """``data`` of a successful envelope, or raise the typed exception for this response."""
    body = _loads(content)
    where = f"{endpoint} answered HTTP {status_code}"
    if 200 <= status_code < 300:
        if not isinstance(body, dict):
            raise FastStarMalformedResponse(
                f"{where} with {_describe_body(body, content, headers)} instead of a "
                "FastStar envelope",
                endpoint=endpoint,
                status_code=status_code,
            )
        success = body.get("success")
        if success is not True:
            message = _server_message(body, redact)
            raise FastStarMalformedResponse(
                f"{where} but 'success' is {_kind(success)}" + (f" ({message})" if message else ""),
                endpoint=endpoint,
                status_code=status_code,
            )
        if "data" not in body:
            raise FastStarMalformedResponse(
                f"{where} with success: true but no 'data'",
                endpoint=endpoint,
                status_code=status_code,
            )
        return body["data"]

    message = _server_message(body, redact)
    suffix = f": {message}" if message else ""
    if status_code in (401, 403):
        raise FastStarConfigurationError(
            f"{where}: the API key was refused{suffix}; check FASTSTAR_API_KEY and the base URL",
            endpoint=endpoint,
            status_code=status_code,
        )
    if status_code == 404 and not _is_envelope(body):
        raise FastStarConfigurationError(
            f"{where} with {_describe_body(body, content, headers)} instead of a FastStar "
            "envelope; the base URL is probably wrong",
            endpoint=endpoint,
            status_code=status_code,
        )
    if status_code == 429:
        retry_after = parse_retry_after(headers.get("retry-after"))
        raise FastStarNotSentError(
            f"{where} (rate limited; Retry-After {retry_after}s){suffix}",
            endpoint=endpoint,
            status_code=status_code,
            retry_after=retry_after,
        )
    if status_code in (408, 409):
        what = "request timeout" if status_code == 408 else "idempotency conflict"
        raise FastStarUnknownOutcomeError(
            f"{where} ({what}; the request may have executed){suffix}",
            endpoint=endpoint,
            status_code=status_code,
        )
    if 400 <= status_code < 500:
        raise FastStarRequestRejected(
            f"{where}: rejected{suffix or ' with ' + _describe_body(body, content, headers)}",
            endpoint=endpoint,
            status_code=status_code,
            server_message=message,
        )
    raise FastStarUnknownOutcomeError(
        f"{where} (the request may have executed){suffix}",
        endpoint=endpoint,
        status_code=status_code,
    )
