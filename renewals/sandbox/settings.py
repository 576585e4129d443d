"""Runtime configuration of the sandbox (``GET|POST /api/v1/sandbox/config``), all Part B.

Defaults describe a well-behaved provider: no latency, no rate limit, idempotency keys
honoured, no webhook target. Updates are merged key by key; an unknown key or a value of the
wrong type rejects the whole update so a typo in a test never silently does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from renewals.sandbox.responses import JSON, bad_request

DEFAULT_WEBHOOK_SECRET = "whsec_sandbox"  # noqa: S105 - a published test value, not a secret


@dataclass(slots=True)
class SandboxConfig:
    latency_ms: float = 0.0
    """Delay before answering each authenticated API request."""
    rate_limit_per_s: float | None = None
    """Token bucket refill rate (burst = one second's worth); None switches it off."""
    idempotency: bool = True
    """Honour ``Idempotency-Key`` on POSTs; False ignores keys (they are still logged)."""
    webhook_url: str | None = None
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_duplicates: bool = False
    """Deliver every event twice (same id, same body)."""
    webhook_reorder: bool = False
    """Hold events for ``webhook_reorder_window_s`` and deliver each batch newest first."""
    webhook_reorder_window_s: float = 0.2
    webhook_max_attempts: int = 5
    webhook_retry_base_s: float = 0.5
    """First retry delay; each further retry doubles it."""
    webhook_timeout_s: float = 5.0
    webhook_documented_shape: bool = False
    """Send payment events' ``data`` with exactly the documented keys (``payment_id``,
    ``amount``, ``currency``, ``status``), without the sandbox's extras (``customer_id``,
    ``checkout_session_id`` ...), so the engine is tested against what FastStar promises."""
    merchant_of_record: bool = False
    """Reject ad hoc checkout line items, as FastStar does for Merchant-of-Record merchants."""
    # A sandbox-wide failure mix (fractions 0..1 of off-session charges on cards that would
    # succeed), so that a run exercises every outcome without a special card per customer.
    # One roll per first execution; a same-key replay answers as the first time did.
    mix_decline: float = 0.0
    """Declined (card_declined or insufficient_funds); nothing charged."""
    mix_authentication: float = 0.0
    """402 authentication required; nothing charged."""
    mix_lost_response: float = 0.0
    """Charged, then the connection drops after the response head (a lost response)."""
    mix_error_after_charge: float = 0.0
    """Charged, then answered 500."""
    mix_seed: int | None = None
    """Seed of the mix's random draws (set to replay a run); None draws from the OS."""

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _boolean(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise bad_request(f"config {name} must be a boolean")
    return value


def _non_negative(name: str, value: Any) -> Any:
    if not _is_number(value) or value < 0:
        raise bad_request(f"config {name} must be a number >= 0")
    return float(value)


def _positive(name: str, value: Any) -> Any:
    if not _is_number(value) or value <= 0:
        raise bad_request(f"config {name} must be a number > 0")
    return float(value)


def _positive_or_null(name: str, value: Any) -> Any:
    return None if value is None else _positive(name, value)


def _attempts(name: str, value: Any) -> Any:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad_request(f"config {name} must be an integer >= 1")
    return value


def _fraction(name: str, value: Any) -> Any:
    if not _is_number(value) or not 0 <= value <= 1:
        raise bad_request(f"config {name} must be a number from 0 to 1")
    return float(value)


def _int_or_null(name: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise bad_request(f"config {name} must be an integer or null")
    return value


def _url_or_null(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise bad_request(f"config {name} must be an http(s) URL or null")
    return value


def _secret(name: str, value: Any) -> Any:
    if not isinstance(value, str) or not value:
        raise bad_request(f"config {name} must be a non-empty string")
    return value


# One checker per key: returns the value to store or raises a 400 ApiError.
_CHECKERS: dict[str, Callable[[str, Any], Any]] = {
    "latency_ms": _non_negative,
    "rate_limit_per_s": _positive_or_null,
    "idempotency": _boolean,
    "webhook_url": _url_or_null,
    "webhook_secret": _secret,
    "webhook_duplicates": _boolean,
    "webhook_reorder": _boolean,
    "webhook_reorder_window_s": _non_negative,
    "webhook_max_attempts": _attempts,
    "webhook_retry_base_s": _non_negative,
    "webhook_timeout_s": _positive,
    "webhook_documented_shape": _boolean,
    "merchant_of_record": _boolean,
    "mix_decline": _fraction,
    "mix_authentication": _fraction,
    "mix_lost_response": _fraction,
    "mix_error_after_charge": _fraction,
    "mix_seed": _int_or_null,
}
if set(_CHECKERS) != {f.name for f in dataclasses.fields(SandboxConfig)}:  # pragma: no cover
    raise RuntimeError("every SandboxConfig field needs a checker in _CHECKERS")


def merged(config: SandboxConfig, update: JSON) -> SandboxConfig:
    """A new config with ``update`` applied, all keys validated before anything changes."""
    unknown = sorted(set(update) - set(_CHECKERS))
    if unknown:
        raise bad_request(f"unknown config key(s): {', '.join(unknown)}")
    checked = {name: _CHECKERS[name](name, value) for name, value in update.items()}
    result = dataclasses.replace(config, **checked)
    mix = (
        result.mix_decline
        + result.mix_authentication
        + result.mix_lost_response
        + result.mix_error_after_charge
    )
    if mix > 1:
        raise bad_request("config mix_* fractions must add up to at most 1")
    return result
