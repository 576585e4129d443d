"""What a row that disagrees with the database is told, in the same words whether the row
came from an import (:mod:`renewals.services.import_staged`) or the API's create
(:func:`renewals.services.imports.compare`)."""

from __future__ import annotations

from collections.abc import Sequence

from renewals.domain.import_rows import RowError

# The terms of a subscription compared with a stored one, in the order a conflict names them.
TERMS = (
    "customer_id",
    "payment_method_id",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "next_renewal_at",
    "price_id",
)


def terms_changed(line: int, subscription_id: int, differ: Sequence[str]) -> RowError:
    return RowError(
        line,
        differ[0],
        f"external_id exists as subscription {subscription_id} with another "
        f"{', '.join(differ)}: not updated (change it through the API)",
    )


def email_taken(line: int, customer_id: str) -> RowError:
    return RowError(line, "email", f"customer {customer_id} exists with another email")


def card_taken(line: int, payment_method_id: str, owner: str) -> RowError:
    return RowError(
        line, "payment_method_id", f"{payment_method_id} is saved for another customer ({owner})"
    )
