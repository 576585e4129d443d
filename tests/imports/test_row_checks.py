"""The checks of an import file, pure: every field, by line, and the file as a whole."""

from __future__ import annotations

import io
import json

import pytest

from renewals.domain.import_rows import FileFormat, RowError, check_rows, guess_format, read_rows
from renewals.domain.subscription_input import SubscriptionInputError, new_subscription

CAP = 1_000_000
HEADER = "external_id,email,customer_id,payment_method_id,amount,currency,interval,next_renewal_at"
GOOD = "s-1,ada@example.com,cus_1,pm_1,1999,USD,month,2026-12-01T09:00:00Z"


def check_csv(*lines: str) -> tuple[int, list[RowError]]:
    text = "\n".join([HEADER, *lines]) + "\n"
    checked = check_rows(read_rows(io.StringIO(text), FileFormat.CSV), max_amount=CAP)
    return len(checked.rows), checked.errors


def errors_of(line: str) -> list[tuple[int, str | None]]:
    return [(e.line, e.field) for e in check_csv(line)[1]]


def test_a_good_row_passes_and_is_typed() -> None:
    checked = check_rows(
        read_rows(io.StringIO(f"{HEADER}\n{GOOD}\n"), FileFormat.CSV), max_amount=CAP
    )
    assert checked.errors == []
    [(line, sub)] = checked.rows
    assert line == 2
    assert (sub.money.amount, sub.money.currency, sub.interval.value) == (1999, "USD", "month")
    assert sub.renews_at.utcoffset() is not None and sub.interval_count == 1


def with_cell(field: str, value: str) -> str:
    """GOOD with one column's value replaced."""
    cells = dict(zip(HEADER.split(","), GOOD.split(","), strict=True))
    return ",".join({**cells, field: value}.values())


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("email", "ada-at-example.com", "not an address"),
        ("customer_id", "cust_1", "cus_"),
        ("payment_method_id", "card_1", "pm_"),
        ("payment_method_id", "pm_1;drop", "letters, digits"),
        ("amount", "0", "positive"),
        ("amount", "19.99", "whole number"),
        ("amount", "99999999", "cap"),
        ("currency", "XYZ", "unknown currency"),
        ("currency", "usd", "upper-case"),
        ("interval", "fortnight", "one of"),
        ("next_renewal_at", "2026-12-01T09:00:00", "UTC offset"),
        ("next_renewal_at", "next tuesday", "ISO-8601"),
        ("external_id", "s 1", "printable"),
        ("external_id", "", "missing"),
    ],
)
def test_each_field_is_refused_with_its_line_and_reason(field: str, value: str, words: str) -> None:
    valid, errors = check_csv(GOOD.replace("s-1", "s-0"), with_cell(field, value))
    assert valid == 1
    [error] = errors
    assert (error.line, error.field) == (3, field)
    assert words in error.reason
    assert "ada" not in error.reason  # an address is never echoed


def test_every_bad_field_of_a_line_is_listed() -> None:
    bad = "s-1,ada@,cus_1,pm_1,0,usd,fortnight,2026-12-01T09:00:00"
    assert sorted(f for _, f in errors_of(bad)) == sorted(
        ["email", "amount", "currency", "interval", "next_renewal_at"]
    )
    assert {line for line, _ in errors_of(bad)} == {2}


def test_duplicates_and_inconsistencies_within_the_file() -> None:
    _, errors = check_csv(
        GOOD,
        GOOD.replace("1999", "2999"),  # the same external id again
        "s-2,bob@example.com,cus_1,pm_2,1999,USD,month,2026-12-01T09:00:00Z",  # cus_1, other email
        "s-3,cy@example.com,cus_3,pm_1,1999,USD,month,2026-12-01T09:00:00Z",  # pm_1 of cus_1
    )
    assert [(e.line, e.field) for e in errors] == [
        (3, "external_id"),
        (4, "email"),
        (5, "payment_method_id"),
    ]
    assert "line 2" in errors[0].reason


def test_header_and_shape_problems() -> None:
    text = "external_id,email,amount,colour\n"
    checked = check_rows(read_rows(io.StringIO(text), FileFormat.CSV), max_amount=CAP)
    [error] = checked.errors
    assert error.line == 1 and "missing column(s)" in error.reason and "colour" in error.reason
    _, errors = check_csv(GOOD, "s-2,only,three")
    assert [(e.line, e.reason) for e in errors] == [(3, "3 values for 8 columns")]


def test_json_lines_and_their_line_numbers() -> None:
    row = {
        "external_id": "j-1",
        "email": "ada@example.com",
        "customer_id": "cus_1",
        "payment_method_id": "pm_1",
        "amount": 1999,
        "currency": "JPY",
        "interval": "year",
        "next_renewal_at": "2026-12-01T09:00:00+09:00",
        "interval_count": 2,
    }
    lines = [
        json.dumps(row),
        "",
        "[1, 2]",
        "{not json",
        json.dumps({**row, "external_id": "j-2", "amount": "1999"}),
    ]
    checked = check_rows(read_rows(io.StringIO("\n".join(lines)), FileFormat.JSONL), max_amount=CAP)
    assert [line for line, _ in checked.rows] == [1, 5]  # "1999" as text is accepted as CSV is
    assert [e.line for e in checked.errors] == [3, 4]
    sub = checked.rows[0][1]
    assert sub.renews_at.isoformat() == "2026-12-01T00:00:00+00:00" and sub.interval_count == 2


def test_format_is_guessed_from_the_name_then_the_content() -> None:
    assert guess_format("subs.CSV", "{") is FileFormat.CSV
    assert guess_format("subs.jsonl", "external_id") is FileFormat.JSONL
    assert guess_format("subs.txt", ' {"a": 1}') is FileFormat.JSONL
    assert guess_format("subs.txt", "external_id,email") is FileFormat.CSV


def test_the_api_and_the_file_share_one_check() -> None:
    raw: dict[str, object] = {
        "external_id": "x",
        "email": "ada@example.com",
        "customer_id": "cus_1",
        "payment_method_id": "pm_1",
        "amount": True,  # JSON's true is not an amount
        "currency": "USD",
        "interval": "month",
        "next_renewal_at": "2026-12-01T09:00:00Z",
    }
    with pytest.raises(SubscriptionInputError) as refused:
        new_subscription(raw, max_amount=CAP)
    assert refused.value.field == "amount"
    with pytest.raises(SubscriptionInputError, match="unknown field"):
        new_subscription({**raw, "amount": 5, "card_number": "4242"}, max_amount=CAP)
