"""Billing periods: period *n* starts at ``anchor + n * count intervals``.

Every boundary is computed **from the anchor**, never by chaining ``previous + 1 month``:
chaining drifts (Jan 31 → Feb 29 → Mar 29 → …) while anchoring keeps the customer's billing
day (Jan 31 → Feb 29 → Mar 31 → Apr 30 …). Month and year steps clamp the day to the end of
the target month and keep the anchor's time of day; day and week steps are exact multiples
of 24 h (UTC has no DST, so that is also calendar days).

A period is the half-open interval ``[start(n), start(n + 1))``; period 0 starts at the
anchor. All instants are timezone-aware UTC (see ``_time.require_utc``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from renewals.domain._time import require_int, require_utc

__all__ = [
    "Interval",
    "Period",
    "period",
    "period_at",
    "period_index_at",
    "period_start",
]


class Interval(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


# Months per step for the calendar intervals; day/week are fixed-length and handled apart.
_MONTHS_PER_UNIT = {Interval.MONTH: 1, Interval.YEAR: 12}
_FIXED_UNIT = {Interval.DAY: timedelta(days=1), Interval.WEEK: timedelta(weeks=1)}


@dataclass(frozen=True, slots=True)
class Period:
    """Billing period ``index``: the half-open UTC interval ``[start, end)``."""

    index: int
    start: datetime
    end: datetime

    def contains(self, at: datetime) -> bool:
        at = require_utc(at, "at")
        return self.start <= at < self.end


def _check_schedule(anchor: datetime, interval: Interval, count: int) -> tuple[datetime, Interval]:
    anchor = require_utc(anchor, "anchor")
    # Interval(...) also accepts the raw string read back from a database column.
    interval = Interval(interval)
    require_int(count, "count", minimum=1)
    return anchor, interval


def _add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.year * 12 + (anchor.month - 1) + months
    year, month_index = divmod(total, 12)
    month = month_index + 1
    if not 1 <= year <= 9999:
        raise OverflowError(f"{anchor.isoformat()} + {months} months is outside datetime's range")
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _start(anchor: datetime, interval: Interval, count: int, n: int) -> datetime:
    """Unchecked ``start(n)``; raises OverflowError past year 9999."""
    if interval in _FIXED_UNIT:
        try:
            return anchor + _FIXED_UNIT[interval] * (n * count)
        except OverflowError:
            raise OverflowError(
                f"period {n} of every {count} {interval} from {anchor.isoformat()} "
                "is outside datetime's range"
            ) from None
    return _add_months(anchor, _MONTHS_PER_UNIT[interval] * n * count)


def period_start(anchor: datetime, interval: Interval, count: int, n: int) -> datetime:
    """The start of period ``n`` (``n >= 0``): ``anchor + n * count`` intervals.

    Months/years clamp to the month's last day and keep the anchor's time of day:
    anchor Jan 31 2024 monthly → Feb 29, Mar 31, Apr 30 …; Feb 29 2024 yearly → Feb 28 2025
    … Feb 29 2028.
    """
    anchor, interval = _check_schedule(anchor, interval, count)
    require_int(n, "n", minimum=0)
    return _start(anchor, interval, count, n)


def period(anchor: datetime, interval: Interval, count: int, n: int) -> Period:
    """Period ``n`` with its exclusive end, the start of period ``n + 1``."""
    anchor, interval = _check_schedule(anchor, interval, count)
    require_int(n, "n", minimum=0)
    return Period(
        index=n,
        start=_start(anchor, interval, count, n),
        end=_start(anchor, interval, count, n + 1),
    )


def period_index_at(anchor: datetime, interval: Interval, count: int, at: datetime) -> int:
    """The index of the period containing ``at``: the largest ``n >= 0`` with
    ``start(n) <= at``, or ``-1`` when ``at`` is before the anchor.

    Constant time: day/week use exact timedelta division; month/year estimate ``n`` from the
    calendar month difference and correct it by at most a step or two (clamping can only
    move a boundary earlier within its month, never across months).
    """
    anchor, interval = _check_schedule(anchor, interval, count)
    at = require_utc(at, "at")
    if at < anchor:
        return -1
    if interval in _FIXED_UNIT:
        return (at - anchor) // (_FIXED_UNIT[interval] * count)

    step = _MONTHS_PER_UNIT[interval] * count
    months = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    n = max(months // step, 0)
    while n > 0 and _start(anchor, interval, count, n) > at:
        n -= 1
    while True:
        try:
            following = _start(anchor, interval, count, n + 1)
        except OverflowError:
            # The next boundary is past year 9999, so ``at`` cannot reach it.
            return n
        if following > at:
            return n
        n += 1


def period_at(anchor: datetime, interval: Interval, count: int, at: datetime) -> Period | None:
    """The period containing ``at``, or ``None`` before the anchor."""
    index = period_index_at(anchor, interval, count, at)
    if index < 0:
        return None
    return period(anchor, interval, count, index)
