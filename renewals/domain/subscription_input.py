"""The terms of a new subscription, checked the same way wherever they come from: the CLI's
``subscriptions add``, a row of ``subscriptions import``, the Python API and its tasks.

Pure: no database, no FastStar. Every check raises :class:`SubscriptionInputError` naming the
field (the column of an import file, the argument of the API) and the reason, in words that
never repeat an email address (messages end up in logs and terminals).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from renewals.domain.money import InvalidChargeError, Money, validate_charge
from renewals.domain.periods import Interval

__all__ = [
    "FIELDS",
    "REQUIRED_FIELDS",
    "NewSubscription",
    "SubscriptionInputError",
    "all_problems",
    "check_email",
    "check_external_id",
    "check_faststar_id",
    "check_terms",
    "new_subscription",
    "parse_instant",
]


class SubscriptionInputError(ValueError):
    """The subscription asked for cannot be created as given; ``field`` names the input."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


# Deliberately loose (one @, a dot in the domain, no spaces): the mail server is the judge
# of deliverability; this only stops a typo such as a missing @ before anything is created.
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
# The merchant's own id: printable, no spaces, short enough for an index.
_EXTERNAL_ID_SHAPE = re.compile(r"[\x21-\x7e]{1,64}")
# FastStar ids: a prefix and an opaque token of letters, digits and underscores.
_FASTSTAR_ID_SHAPE = re.compile(r"[A-Za-z0-9_]{1,60}")

REQUIRED_FIELDS = (
    "external_id",
    "email",
    "customer_id",
    "payment_method_id",
    "amount",
    "currency",
    "interval",
    "next_renewal_at",
)
FIELDS = (*REQUIRED_FIELDS, "interval_count", "price_id", "name")
_KNOWN_FIELDS = frozenset(FIELDS)
_INTERVALS = {interval.value: interval for interval in Interval}


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """A subscription every check has passed; amounts in minor units, instants in UTC."""

    external_id: str | None
    email: str
    name: str | None
    customer_id: str  # cus_…
    payment_method_id: str  # pm_…
    money: Money
    interval: Interval
    interval_count: int
    renews_at: datetime
    price_id: str | None


def check_email(email: object, field: str = "email") -> str:
    if not isinstance(email, str) or len(email) > 320 or not _EMAIL_SHAPE.fullmatch(email):
        # The address itself is not repeated: messages may end up in logs.
        raise SubscriptionInputError(
            f"{field} is not an address: it needs one '@' followed by a domain such as example.com",
            field=field,
        )
    return email


def check_external_id(value: object, field: str = "external_id") -> str:
    if not isinstance(value, str) or not _EXTERNAL_ID_SHAPE.fullmatch(value):
        raise SubscriptionInputError(
            f"{field} must be 1 to 64 printable characters without spaces", field=field
        )
    return value


# A whole id per prefix in one match: the usual, valid case costs one call.
_WHOLE_ID_SHAPES: dict[str, re.Pattern[str]] = {}


def check_faststar_id(value: object, prefix: str, field: str) -> str:
    shape = _WHOLE_ID_SHAPES.get(prefix)
    if shape is None:
        shape = _WHOLE_ID_SHAPES[prefix] = re.compile(
            re.escape(prefix) + _FASTSTAR_ID_SHAPE.pattern
        )
    if isinstance(value, str) and shape.fullmatch(value):
        return value
    if not isinstance(value, str) or not value.startswith(prefix):
        raise SubscriptionInputError(
            f"{field} must be a FastStar id starting with {prefix}", field=field
        )
    if not _FASTSTAR_ID_SHAPE.fullmatch(value[len(prefix) :]):
        raise SubscriptionInputError(
            f"{field} must be {prefix} followed by letters, digits or underscores", field=field
        )
    return value


def parse_instant(value: object, field: str) -> datetime:
    """An ISO-8601 instant that carries its UTC offset, as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise SubscriptionInputError(
                f"{field} must be ISO-8601 with a UTC offset, e.g. 2026-12-01T09:00:00Z",
                field=field,
            ) from None
    else:
        raise SubscriptionInputError(f"{field} must be an ISO-8601 instant", field=field)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise SubscriptionInputError(
            f"{field} must carry a UTC offset, e.g. 2026-12-01T09:00:00Z", field=field
        )
    return parsed.astimezone(UTC)


def check_terms(
    *,
    amount: object,
    currency: object,
    interval: object,
    interval_count: object,
    renews_at: datetime,
    price_id: object,
    max_amount: int,
    renews_at_field: str = "next_renewal_at",
) -> tuple[Money, Interval]:
    """What is charged and when: amount within the cap, a known currency, the interval."""
    try:
        money = validate_charge(amount, currency, max_amount=max_amount)
    except InvalidChargeError as exc:
        raise SubscriptionInputError(exc.reason, field=exc.field) from None
    unit = _INTERVALS.get(interval) if isinstance(interval, str) else None
    if unit is None:
        raise SubscriptionInputError(
            f"interval must be one of {', '.join(i.value for i in Interval)}", field="interval"
        ) from None
    if isinstance(interval_count, bool) or not isinstance(interval_count, int):
        raise SubscriptionInputError(
            "interval_count must be a whole number", field="interval_count"
        )
    if not 1 <= interval_count <= 1000:
        raise SubscriptionInputError(
            "interval_count must be between 1 and 1000", field="interval_count"
        )
    if renews_at.tzinfo is None:
        raise SubscriptionInputError(
            f"{renews_at_field} must carry a UTC offset", field=renews_at_field
        )
    if price_id is not None:
        check_faststar_id(price_id, "price_", "price_id")
    return money, unit


def _int(value: object, field: str) -> object:
    """A whole number from JSON (an int) or CSV (digits); anything else is passed through
    for the check to refuse with its own message."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        raise SubscriptionInputError(
            f"{field} must be a whole number, got {text[:20]!r}", field=field
        )
    return value


def _optional(raw: Mapping[str, object], key: str) -> object:
    value = raw.get(key)
    return None if value is None or value == "" else value


def new_subscription(
    raw: Mapping[str, object], *, max_amount: int, require_external_id: bool = True
) -> NewSubscription:
    """Check one subscription given as field names to values (an import row, the API's
    arguments): strings as read from CSV, or JSON types. Unknown fields are refused."""
    if not _KNOWN_FIELDS.issuperset(raw):
        unknown = sorted(set(raw) - _KNOWN_FIELDS)
        raise SubscriptionInputError(
            f"unknown field(s): {', '.join(unknown)[:200]}", field=unknown[0]
        )
    for key in REQUIRED_FIELDS:
        value = raw.get(key)
        if (value is None or value == "") and (key != "external_id" or require_external_id):
            raise SubscriptionInputError(f"{key} is missing", field=key)
    external = _optional(raw, "external_id")
    external_id = check_external_id(external) if external is not None else None
    email = check_email(raw["email"])
    customer_id = check_faststar_id(raw["customer_id"], "cus_", "customer_id")
    payment_method_id = check_faststar_id(raw["payment_method_id"], "pm_", "payment_method_id")
    renews_at = parse_instant(raw["next_renewal_at"], "next_renewal_at")
    count = _optional(raw, "interval_count")
    interval_count = 1 if count is None else _int(count, "interval_count")
    price_id = _optional(raw, "price_id")
    money, unit = check_terms(
        amount=_int(raw["amount"], "amount"),
        currency=raw["currency"],
        interval=raw["interval"],
        interval_count=interval_count,
        renews_at=renews_at,
        price_id=price_id,
        max_amount=max_amount,
    )
    assert isinstance(interval_count, int)  # check_terms refused anything else
    name = _optional(raw, "name")
    return NewSubscription(
        external_id=external_id,
        email=email,
        name=None if name is None else _check_name(name),
        customer_id=customer_id,
        payment_method_id=payment_method_id,
        money=money,
        interval=unit,
        interval_count=interval_count,
        renews_at=renews_at,
        price_id=price_id if isinstance(price_id, str) else None,
    )


def all_problems(
    raw: Mapping[str, object], *, max_amount: int, require_external_id: bool = True
) -> list[SubscriptionInputError]:
    """Every field :func:`new_subscription` refuses, not only the first: each check run on
    its own (an import lists them all by line). Empty when the row is acceptable."""
    try:
        new_subscription(raw, max_amount=max_amount, require_external_id=require_external_id)
    except SubscriptionInputError:
        pass
    else:
        return []
    problems: list[SubscriptionInputError] = []

    def run(check: Callable[[], object]) -> None:
        try:
            check()
        except SubscriptionInputError as exc:
            problems.append(exc)

    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        problems.append(
            SubscriptionInputError(
                f"unknown field(s): {', '.join(unknown)[:200]}", field=unknown[0]
            )
        )
    present = {key for key in FIELDS if _optional(raw, key) is not None}
    for key in REQUIRED_FIELDS:
        if key not in present and (key != "external_id" or require_external_id):
            problems.append(SubscriptionInputError(f"{key} is missing", field=key))
    checks: dict[str, Callable[[], object]] = {
        "external_id": lambda: check_external_id(raw["external_id"]),
        "email": lambda: check_email(raw["email"]),
        "customer_id": lambda: check_faststar_id(raw["customer_id"], "cus_", "customer_id"),
        "payment_method_id": lambda: check_faststar_id(
            raw["payment_method_id"], "pm_", "payment_method_id"
        ),
        "next_renewal_at": lambda: parse_instant(raw["next_renewal_at"], "next_renewal_at"),
        "amount": lambda: validate_charge(
            _int(raw["amount"], "amount"), "USD", max_amount=max_amount
        ),
        "currency": lambda: validate_charge(1, raw["currency"], max_amount=max_amount),
        "interval": lambda: Interval(raw["interval"]),  # type: ignore[arg-type]
        "interval_count": lambda: check_terms(
            amount=1,
            currency="USD",
            interval="day",
            interval_count=_int(raw["interval_count"], "interval_count"),
            renews_at=datetime.now(UTC),
            price_id=None,
            max_amount=max_amount,
        ),
        "price_id": lambda: check_faststar_id(raw["price_id"], "price_", "price_id"),
        "name": lambda: _check_name(raw["name"]),
    }
    for key, check in checks.items():
        if key in present:
            run(partial(_as_input_error, check, key))
    return problems or [SubscriptionInputError("the row is not acceptable", field=None)]


def _as_input_error(check: Callable[[], object], field: str) -> object:
    try:
        return check()
    except InvalidChargeError as exc:
        raise SubscriptionInputError(exc.reason, field=exc.field or field) from None
    except ValueError:
        if field == "interval":
            raise SubscriptionInputError(
                f"interval must be one of {', '.join(i.value for i in Interval)}", field=field
            ) from None
        raise


def _check_name(name: object) -> str:
    if not isinstance(name, str) or len(name) > 200:
        raise SubscriptionInputError("name must be text of at most 200 characters", field="name")
    return name
