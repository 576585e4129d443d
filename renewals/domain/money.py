"""Amounts in minor units, ISO 4217 currencies, and the checks a charge must pass (I4).

FastStar takes integer amounts in the currency's smallest unit (``1999`` = 19.99 USD) and
upper-case codes. A wrong exponent is a 100x mistake (``1999`` JPY is ¥1,999, not ¥19.99),
so the exponent comes from one table and amounts are only ever formatted with ``Decimal``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

__all__ = [
    "MINOR_UNITS",
    "InvalidChargeError",
    "Money",
    "format_amount",
    "minor_units",
    "validate_charge",
]

# ISO 4217 active currencies by exponent (list one, 2024). Fund codes (BOV, CLF, USN …),
# precious metals (XAU …) and testing codes (XTS, XXX) are left out on purpose: nobody pays
# a subscription in them, so a charge naming one is a bug to reject, not to send.
_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES "
    "WST XCD XCG YER ZAR ZMW ZWG"
)

MINOR_UNITS: MappingProxyType[str, int] = MappingProxyType(
    {
        **dict.fromkeys(_TWO_DECIMALS.split(), 2),
        **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
        **dict.fromkeys(_THREE_DECIMALS.split(), 3),
    }
)

# FastStar documents amounts as int64; nothing above this can be sent whatever the cap says.
_INT64_MAX = 2**63 - 1
_CODE_SHAPE = re.compile(r"[A-Za-z]{3}")


class InvalidChargeError(ValueError):
    """A charge that must not reach FastStar; ``reason`` says what was wrong, in words an
    operator can act on. ``field`` names the offending input (``amount`` or ``currency``)."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


@dataclass(frozen=True, slots=True)
class Money:
    """A validated amount: positive integer minor units of a known ISO 4217 currency."""

    amount: int
    currency: str

    def __str__(self) -> str:
        return format_amount(self.amount, self.currency)


def minor_units(currency: str) -> int:
    """The ISO 4217 exponent of ``currency`` (``USD`` 2, ``JPY`` 0, ``BHD`` 3).

    Raises ``ValueError`` for codes not in :data:`MINOR_UNITS`; codes must be upper-case.
    """
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise ValueError(f"unknown currency code {currency!r}") from None


def _check_currency(currency: object) -> str:
    if isinstance(currency, str) and currency in MINOR_UNITS:
        # Every key is an upper-case ISO 4217 code: the checks below could only pass. (An
        # import checks 100,000 of these at a time.)
        return currency
    if not isinstance(currency, str):
        raise InvalidChargeError(
            f"currency must be a 3-letter ISO 4217 code string, got {type(currency).__name__}",
            field="currency",
        )
    if not _CODE_SHAPE.fullmatch(currency):
        raise InvalidChargeError(
            f"currency must be a 3-letter ISO 4217 code such as 'USD', got {currency!r}",
            field="currency",
        )
    if currency != currency.upper():
        # Upper-casing silently would hide a caller that stores codes inconsistently.
        upper = currency.upper()
        hint = f" (did you mean {upper!r}?)" if upper in MINOR_UNITS else ""
        raise InvalidChargeError(
            f"currency must be upper-case, got {currency!r}{hint}", field="currency"
        )
    if currency not in MINOR_UNITS:
        raise InvalidChargeError(
            f"unknown currency {currency!r}: not an ISO 4217 code we can charge",
            field="currency",
        )
    return currency


def validate_charge(amount: object, currency: object, *, max_amount: int) -> Money:
    """Check an amount and currency before any charge; return them as :class:`Money`.

    Raises :class:`InvalidChargeError` for a non-int (or bool) amount, a zero or negative
    amount, an amount above ``max_amount`` (the per-charge cap, in the same minor units),
    and a currency that is not an upper-case, known ISO 4217 code. ``max_amount`` itself is
    configuration, so a bad cap raises plain ``ValueError``/``TypeError``.
    """
    if isinstance(max_amount, bool) or not isinstance(max_amount, int):
        raise TypeError(f"max_amount must be an int, got {type(max_amount).__name__}")
    if not 0 < max_amount <= _INT64_MAX:
        raise ValueError(f"max_amount must be between 1 and 2**63-1, got {max_amount}")

    # bool is a subclass of int: True would otherwise be charged as 1 minor unit.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidChargeError(
            "amount must be an int number of minor units (e.g. 1999 for 19.99 USD), "
            f"got {type(amount).__name__} {amount!r}",
            field="amount",
        )
    if amount <= 0:
        raise InvalidChargeError(f"amount must be positive, got {amount}", field="amount")
    currency = _check_currency(currency)
    if amount > max_amount:
        raise InvalidChargeError(
            f"amount {amount} ({format_amount(amount, currency)}) exceeds the per-charge cap "
            f"of {max_amount} ({format_amount(max_amount, currency)})",
            field="amount",
        )
    return Money(amount=amount, currency=currency)


def format_amount(amount: int, currency: str) -> str:
    """Human form with thousands separators: ``19.99 USD``, ``1,000 JPY``, ``1.500 BHD``."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amount must be an int, got {type(amount).__name__}")
    exponent = minor_units(currency)
    value = Decimal(amount).scaleb(-exponent)
    return f"{value:,.{exponent}f} {currency}"
