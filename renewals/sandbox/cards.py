"""Card validation and the sandbox's test-card table (docs/faststar.md, Part B).

FastStar documents no test mode and no test cards; the numbers and what they do are our
sandbox's convention. Full card numbers only pass through here: a saved card keeps its
brand, last four digits, expiry and the behaviour its number selects, never the number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from renewals.sandbox.responses import bad_request


class ChargeBehaviour(StrEnum):
    """What an off-session charge on a card does."""

    SUCCEEDS = "succeeds"
    AUTHENTICATION_REQUIRED = "authentication_required"
    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    FAILS_BEFORE_CHARGE = "fails_before_charge"
    DROPS_AFTER_CHARGE = "drops_after_charge"
    FAILS_AFTER_CHARGE = "fails_after_charge"


TEST_CARDS: dict[str, ChargeBehaviour] = {
    "4242424242424242": ChargeBehaviour.SUCCEEDS,
    "4000002760003184": ChargeBehaviour.AUTHENTICATION_REQUIRED,
    "4000000000000002": ChargeBehaviour.CARD_DECLINED,
    "4000000000009995": ChargeBehaviour.INSUFFICIENT_FUNDS,
    "4000000000000069": ChargeBehaviour.EXPIRED_CARD,
    "4000000000000119": ChargeBehaviour.FAILS_BEFORE_CHARGE,
    "4000000000000341": ChargeBehaviour.DROPS_AFTER_CHARGE,
    "4000000000003220": ChargeBehaviour.FAILS_AFTER_CHARGE,
}

# Behaviours that are plain declines: HTTP 400 whose message names the decline code.
DECLINES: frozenset[ChargeBehaviour] = frozenset(
    {
        ChargeBehaviour.CARD_DECLINED,
        ChargeBehaviour.INSUFFICIENT_FUNDS,
        ChargeBehaviour.EXPIRED_CARD,
    }
)


@dataclass(frozen=True, slots=True)
class EnteredCard:
    """A card as typed into the (stand-in) popup, reduced to what may be kept."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int
    behaviour: ChargeBehaviour


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def brand_of(digits: str) -> str:
    """The card network from the number's prefix (IIN ranges, simplified)."""
    if digits.startswith("4"):
        return "visa"
    two, four = int(digits[:2]), int(digits[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if digits.startswith(("6011", "65")):
        return "discover"
    return "unknown"


def validate_card(number: str, exp_month: int, exp_year: int) -> EnteredCard:
    """Check number (spaces allowed), Luhn and expiry; raise a 400 ApiError otherwise."""
    digits = number.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise bad_request("number must be 12 to 19 digits")
    if not luhn_valid(digits):
        raise bad_request("number is not a valid card number (Luhn check failed)")
    if not 1 <= exp_month <= 12:
        raise bad_request("exp_month must be an integer from 1 to 12")
    year = exp_year + 2000 if 0 <= exp_year < 100 else exp_year  # two-digit years are common
    today = dt.datetime.now(dt.UTC).date()
    if (year, exp_month) < (today.year, today.month):
        raise bad_request("card has expired")
    if year > today.year + 50:
        raise bad_request("exp_year is too far in the future")
    return EnteredCard(
        brand=brand_of(digits),
        last4=digits[-4:],
        exp_month=exp_month,
        exp_year=year,
        behaviour=TEST_CARDS.get(digits, ChargeBehaviour.SUCCEEDS),
    )
