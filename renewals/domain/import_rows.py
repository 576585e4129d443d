"""Reading and checking an import file of subscriptions, before anything is written.

Two formats, read as a stream of lines:

- **CSV** with a header row naming the columns (:data:`~renewals.domain.subscription_input.FIELDS`;
  ``interval_count``, ``price_id`` and ``name`` may be left out);
- **JSON lines**: one object per line with the same keys (``amount`` a JSON integer).

Every row goes through :func:`~renewals.domain.subscription_input.new_subscription`, the one
check the CLI's ``add`` and the API use too; then the file as a whole is checked: an
``external_id`` given twice, a ``cus_`` given with two email addresses, a ``pm_`` given for
two customers. Each problem is a :class:`RowError` with its line number and field.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from renewals.domain.subscription_input import (
    FIELDS,
    REQUIRED_FIELDS,
    NewSubscription,
    SubscriptionInputError,
    all_problems,
    new_subscription,
)

__all__ = ["Checked", "FileFormat", "RowError", "check_rows", "guess_format", "read_rows"]


class FileFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class RowError:
    """What is wrong with one line of the file (line 1 is a CSV file's header)."""

    line: int
    field: str | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(slots=True)
class Checked:
    """The rows every check passed, by line, and the problems found."""

    rows: list[tuple[int, NewSubscription]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    read: int = 0


Raw = dict[str, object]


def guess_format(name: str, first_line: str) -> FileFormat:
    """By the file's extension, else by its first character."""
    lower = name.lower()
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return FileFormat.JSONL
    if lower.endswith(".csv"):
        return FileFormat.CSV
    return FileFormat.JSONL if first_line.lstrip().startswith("{") else FileFormat.CSV


def read_rows(lines: Iterable[str], fmt: FileFormat) -> Iterator[tuple[int, Raw | RowError]]:
    """Each data row with its line number: the raw fields, or why the line is unreadable."""
    if fmt is FileFormat.JSONL:
        yield from _json_lines(lines)
    else:
        yield from _csv_rows(lines)


def _json_lines(lines: Iterable[str]) -> Iterator[tuple[int, Raw | RowError]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            yield number, RowError(number, None, "not a JSON object (invalid JSON)")
            continue
        if not isinstance(value, dict):
            yield number, RowError(number, None, "not a JSON object")
            continue
        yield number, value


def _csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, Raw | RowError]]:
    reader = csv.reader(iter(lines))
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, RowError(1, None, f"unreadable CSV header: {exc}")
        return
    unknown = [name for name in header if name not in FIELDS]
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        problems = []
        if missing:
            problems.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown column(s): {', '.join(unknown)[:200]}")
        if len(set(header)) != len(header):
            problems.append("a column is named twice")
        yield 1, RowError(1, None, "header: " + "; ".join(problems))
        return
    width = len(header)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, RowError(reader.line_num, None, f"unreadable CSV: {exc}")
            continue
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != width:
            yield (
                reader.line_num,
                RowError(reader.line_num, None, f"{len(cells)} values for {width} columns"),
            )
            continue
        yield reader.line_num, dict(zip(header, map(str.strip, cells), strict=True))


def check_rows(
    rows: Iterable[tuple[int, Raw | RowError]],
    *,
    max_amount: int,
    on_row: Callable[[], None] | None = None,
) -> Checked:
    """Check every row, then the file as a whole; nothing here writes anything."""
    checked = Checked()
    first_line: dict[str, int] = {}  # external_id -> line
    emails: dict[str, tuple[str, int]] = {}  # cus_ -> (email, line)
    owners: dict[str, tuple[str, int]] = {}  # pm_ -> (cus_, line)
    for line, raw in rows:
        checked.read += 1
        if on_row is not None:
            on_row()
        if isinstance(raw, RowError):
            checked.errors.append(raw)
            continue
        try:
            sub = new_subscription(raw, max_amount=max_amount)
        except SubscriptionInputError:
            # Every field at fault, not only the first: one pass fixes the whole line.
            checked.errors.extend(
                RowError(line, problem.field, problem.reason)
                for problem in all_problems(raw, max_amount=max_amount)
            )
            continue
        problem = _against_file(sub, line, first_line, emails, owners)
        if problem is not None:
            checked.errors.append(problem)
            continue
        checked.rows.append((line, sub))
    return checked


def _against_file(
    sub: NewSubscription,
    line: int,
    first_line: dict[str, int],
    emails: dict[str, tuple[str, int]],
    owners: dict[str, tuple[str, int]],
) -> RowError | None:
    assert sub.external_id is not None  # required in a file
    seen = first_line.setdefault(sub.external_id, line)
    if seen != line:
        return RowError(line, "external_id", f"external_id repeats line {seen}")
    email, email_line = emails.setdefault(sub.customer_id, (sub.email, line))
    if email != sub.email:
        return RowError(
            line, "email", f"customer {sub.customer_id} has another email on line {email_line}"
        )
    owner, owner_line = owners.setdefault(sub.payment_method_id, (sub.customer_id, line))
    if owner != sub.customer_id:
        return RowError(
            line,
            "payment_method_id",
            f"{sub.payment_method_id} belongs to {owner} on line {owner_line}",
        )
    return None
