"""Typed readers for JSON request bodies; each raises a 400 ApiError naming the field.

JSON booleans are Python ``bool``, a subclass of ``int``: every integer reader rejects them
explicitly so ``{"amount": true}`` is not a charge of 1.
"""

from __future__ import annotations

import re
from typing import Any

from renewals.sandbox.responses import JSON, bad_request

# Deliberately loose: one "@", no spaces, a dot in the domain. FastStar documents no rule.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
INT64_MAX = 2**63 - 1


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def require_str(body: JSON, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{key} is required and must be a non-empty string")
    return value


def optional_str(body: JSON, key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def require_int(body: JSON, key: str, *, minimum: int | None = None) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"{key} is required and must be an integer")
    if minimum is not None and value < minimum:
        raise bad_request(f"{key} must be at least {minimum}")
    if value > INT64_MAX:
        raise bad_request(f"{key} is too large")
    return value


def optional_int(body: JSON, key: str, *, minimum: int | None = None) -> int | None:
    if body.get(key) is None:
        return None
    return require_int(body, key, minimum=minimum)


def require_positive_amount(body: JSON, key: str) -> int:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise bad_request(f"{key} must be a positive integer in the smallest currency unit")
    if value > INT64_MAX:
        raise bad_request(f"{key} is too large")
    return value


def require_currency(body: JSON, key: str) -> str:
    """A three-letter code, returned upper-case as FastStar shows currencies."""
    value = body.get(key)
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise bad_request(f"{key} must be a three-letter currency code")
    return value.upper()


def optional_bool(body: JSON, key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise bad_request(f"{key} must be a boolean")
    return value


def require_email(body: JSON, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not _EMAIL.match(value):
        raise bad_request(f"{key} is required and must be a valid email address")
    return value


def optional_str_dict(body: JSON, key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request(f"{key} must be an object of string keys and string values")
    return dict(value)


def optional_str_list(body: JSON, key: str) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request(f"{key} must be a list of strings")
    return list(value)


def require_choice(body: JSON, key: str, choices: tuple[str, ...], default: str | None) -> str:
    value: Any = body.get(key, default)
    if value not in choices:
        raise bad_request(f"{key} must be one of: {', '.join(choices)}")
    return str(value)
