"""Charge validation (I4) and amount formatting."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.domain.money import (
    MINOR_UNITS,
    InvalidChargeError,
    Money,
    format_amount,
    minor_units,
    validate_charge,
)

CAP = 100_000


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [
        ("USD", 2), ("EUR", 2), ("GBP", 2), ("CHF", 2), ("INR", 2), ("BRL", 2), ("HUF", 2),
        ("JPY", 0), ("KRW", 0), ("VND", 0), ("CLP", 0), ("ISK", 0), ("XOF", 0),
        ("BHD", 3), ("KWD", 3), ("OMR", 3), ("JOD", 3), ("TND", 3), ("IQD", 3), ("LYD", 3),
    ],
)  # fmt: skip
def test_minor_units(currency: str, exponent: int) -> None:
    assert minor_units(currency) == exponent


def test_minor_units_table_is_well_formed() -> None:
    assert len(MINOR_UNITS) > 140
    for code, exponent in MINOR_UNITS.items():
        assert re.fullmatch(r"[A-Z]{3}", code)
        assert exponent in {0, 2, 3}


@pytest.mark.parametrize("code", ["usd", "XYZ", "XTS", "XAU", ""])
def test_minor_units_unknown(code: str) -> None:
    with pytest.raises(ValueError, match="unknown currency code"):
        minor_units(code)


def test_valid_charge_returns_money() -> None:
    assert validate_charge(1999, "USD", max_amount=CAP) == Money(1999, "USD")
    assert validate_charge(CAP, "JPY", max_amount=CAP) == Money(CAP, "JPY")
    assert validate_charge(1, "BHD", max_amount=CAP).currency == "BHD"


@pytest.mark.parametrize(
    ("amount", "fragment"),
    [
        (True, "got bool True"),
        (False, "got bool False"),
        (19.99, "got float 19.99"),
        (20.0, "got float 20.0"),
        ("1999", "got str '1999'"),
        (None, "got NoneType None"),
        (Decimal("19.99"), "got Decimal"),
        (0, "must be positive, got 0"),
        (-1999, "must be positive, got -1999"),
    ],
)
def test_invalid_amounts(amount: object, fragment: str) -> None:
    with pytest.raises(InvalidChargeError) as info:
        validate_charge(amount, "USD", max_amount=CAP)
    assert info.value.field == "amount"
    assert fragment in info.value.reason
    assert str(info.value) == info.value.reason


def test_amount_above_cap() -> None:
    with pytest.raises(InvalidChargeError) as info:
        validate_charge(CAP + 1, "USD", max_amount=CAP)
    assert info.value.field == "amount"
    assert info.value.reason == (
        "amount 100001 (1,000.01 USD) exceeds the per-charge cap of 100000 (1,000.00 USD)"
    )


@pytest.mark.parametrize(
    ("currency", "fragment"),
    [
        ("usd", "must be upper-case, got 'usd' (did you mean 'USD'?)"),
        ("Eur", "must be upper-case, got 'Eur' (did you mean 'EUR'?)"),
        ("abc", "must be upper-case, got 'abc'"),
        ("US", "3-letter ISO 4217 code such as 'USD', got 'US'"),
        ("USDD", "got 'USDD'"),
        (" USD", "got ' USD'"),
        ("", "got ''"),
        ("840", "got '840'"),
        (840, "code string, got int"),
        (None, "code string, got NoneType"),
        (b"USD", "code string, got bytes"),
        ("ABC", "unknown currency 'ABC'"),
        ("XTS", "unknown currency 'XTS'"),
    ],
)
def test_invalid_currencies(currency: object, fragment: str) -> None:
    with pytest.raises(InvalidChargeError) as info:
        validate_charge(1999, currency, max_amount=CAP)
    assert info.value.field == "currency"
    assert fragment in info.value.reason


def test_invalid_charge_error_is_a_value_error() -> None:
    assert issubclass(InvalidChargeError, ValueError)


@pytest.mark.parametrize("cap", [0, -5, 2**63])
def test_bad_cap_is_a_configuration_error(cap: int) -> None:
    with pytest.raises(ValueError, match="max_amount") as info:
        validate_charge(1, "USD", max_amount=cap)
    assert not isinstance(info.value, InvalidChargeError)


def test_bool_cap_rejected() -> None:
    with pytest.raises(TypeError, match="max_amount"):
        validate_charge(1, "USD", max_amount=True)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1999, "USD", "19.99 USD"),
        (1, "USD", "0.01 USD"),
        (100, "USD", "1.00 USD"),
        (123456789, "USD", "1,234,567.89 USD"),
        (1000, "JPY", "1,000 JPY"),
        (100000, "JPY", "100,000 JPY"),
        (7, "KRW", "7 KRW"),
        (1500, "BHD", "1.500 BHD"),
        (5, "KWD", "0.005 KWD"),
        (1234567, "BHD", "1,234.567 BHD"),
        (-1999, "EUR", "-19.99 EUR"),
        (0, "USD", "0.00 USD"),
    ],
)
def test_format_amount(amount: int, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


def test_money_str_and_format_errors() -> None:
    assert str(Money(1500, "BHD")) == "1.500 BHD"
    with pytest.raises(TypeError):
        format_amount(19.99, "USD")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown currency"):
        format_amount(1, "usd")


@given(st.integers(min_value=-(10**20), max_value=10**20), st.sampled_from(sorted(MINOR_UNITS)))
def test_property_format_round_trips_exactly(amount: int, currency: str) -> None:
    text = format_amount(amount, currency)
    number, code = text.split(" ")
    assert code == currency
    exponent = minor_units(currency)
    if exponent:
        assert len(number.split(".")[1]) == exponent
    assert Decimal(number.replace(",", "")).scaleb(exponent) == amount


@given(st.integers(min_value=1, max_value=CAP), st.sampled_from(sorted(MINOR_UNITS)))
def test_property_valid_inputs_accepted(amount: int, currency: str) -> None:
    assert validate_charge(amount, currency, max_amount=CAP) == Money(amount, currency)
