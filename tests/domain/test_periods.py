"""Period arithmetic: explicit calendars (no drift) and hypothesis properties."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from renewals.domain import periods
from renewals.domain.periods import (
    Interval,
    Period,
    period,
    period_at,
    period_index_at,
    period_start,
)

# A time of day with microseconds: clamping must keep it exactly.
TIME = {"hour": 9, "minute": 30, "second": 15, "microsecond": 123456}


def utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC, **TIME)


# Written out by hand (not computed), n = 0..13 and n = 35 (the 36th period).
MONTHLY_EXPECTED: dict[tuple[int, int, int], dict[int, tuple[int, int, int]]] = {
    (2024, 1, 31): {
        0: (2024, 1, 31), 1: (2024, 2, 29), 2: (2024, 3, 31), 3: (2024, 4, 30),
        4: (2024, 5, 31), 5: (2024, 6, 30), 6: (2024, 7, 31), 7: (2024, 8, 31),
        8: (2024, 9, 30), 9: (2024, 10, 31), 10: (2024, 11, 30), 11: (2024, 12, 31),
        12: (2025, 1, 31), 13: (2025, 2, 28), 25: (2026, 2, 28), 35: (2026, 12, 31),
    },
    (2024, 1, 30): {
        0: (2024, 1, 30), 1: (2024, 2, 29), 2: (2024, 3, 30), 3: (2024, 4, 30),
        4: (2024, 5, 30), 5: (2024, 6, 30), 6: (2024, 7, 30), 7: (2024, 8, 30),
        8: (2024, 9, 30), 9: (2024, 10, 30), 10: (2024, 11, 30), 11: (2024, 12, 30),
        12: (2025, 1, 30), 13: (2025, 2, 28), 14: (2025, 3, 30), 35: (2026, 12, 30),
    },
    (2024, 2, 29): {
        0: (2024, 2, 29), 1: (2024, 3, 29), 2: (2024, 4, 29), 3: (2024, 5, 29),
        4: (2024, 6, 29), 5: (2024, 7, 29), 6: (2024, 8, 29), 7: (2024, 9, 29),
        8: (2024, 10, 29), 9: (2024, 11, 29), 10: (2024, 12, 29), 11: (2025, 1, 29),
        12: (2025, 2, 28), 13: (2025, 3, 29), 24: (2026, 2, 28), 35: (2027, 1, 29),
        36: (2027, 2, 28), 48: (2028, 2, 29),
    },
    (2024, 3, 31): {
        0: (2024, 3, 31), 1: (2024, 4, 30), 2: (2024, 5, 31), 3: (2024, 6, 30),
        4: (2024, 7, 31), 5: (2024, 8, 31), 6: (2024, 9, 30), 7: (2024, 10, 31),
        8: (2024, 11, 30), 9: (2024, 12, 31), 10: (2025, 1, 31), 11: (2025, 2, 28),
        12: (2025, 3, 31), 13: (2025, 4, 30), 35: (2027, 2, 28), 47: (2028, 2, 29),
    },
}  # fmt: skip


@pytest.mark.parametrize("anchor_ymd", list(MONTHLY_EXPECTED))
def test_monthly_calendar_from_anchor(anchor_ymd: tuple[int, int, int]) -> None:
    anchor = utc(*anchor_ymd)
    for n, expected in MONTHLY_EXPECTED[anchor_ymd].items():
        assert period_start(anchor, Interval.MONTH, 1, n) == utc(*expected), n


@pytest.mark.parametrize("anchor_ymd", list(MONTHLY_EXPECTED))
def test_monthly_36_periods_never_drift(anchor_ymd: tuple[int, int, int]) -> None:
    anchor = utc(*anchor_ymd)
    starts = [period_start(anchor, Interval.MONTH, 1, n) for n in range(37)]
    for n in range(36):
        p = period(anchor, Interval.MONTH, 1, n)
        assert p == Period(index=n, start=starts[n], end=starts[n + 1])
        expected_day = min(anchor.day, calendar.monthrange(p.start.year, p.start.month)[1])
        assert p.start.day == expected_day
        assert p.start.timetz() == anchor.timetz()
        # Contiguous, and the index found from any instant inside is n.
        assert period_index_at(anchor, Interval.MONTH, 1, p.start) == n
        assert period_index_at(anchor, Interval.MONTH, 1, p.end - timedelta(microseconds=1)) == n
    # The months visited are consecutive: chaining would have fallen back to the 29th.
    assert [s.month for s in starts[:13]] == [*range(anchor.month, 13), *range(1, anchor.month + 1)]


def test_yearly_from_feb_29() -> None:
    anchor = utc(2024, 2, 29)
    expected = {
        0: (2024, 2, 29),
        1: (2025, 2, 28),
        2: (2026, 2, 28),
        3: (2027, 2, 28),
        4: (2028, 2, 29),
        8: (2032, 2, 29),
        76: (2100, 2, 28),  # 2100 is not a leap year
        80: (2104, 2, 29),
    }
    for n, ymd in expected.items():
        assert period_start(anchor, Interval.YEAR, 1, n) == utc(*ymd)
    assert period_index_at(anchor, Interval.YEAR, 1, utc(2025, 2, 28)) == 1
    assert period_index_at(anchor, Interval.YEAR, 1, utc(2025, 2, 27)) == 0
    assert period_index_at(anchor, Interval.YEAR, 1, utc(2028, 2, 29)) == 4
    assert period_index_at(anchor, Interval.YEAR, 1, utc(2028, 2, 28)) == 3


def test_quarterly_interval_count_3() -> None:
    anchor = utc(2023, 11, 30)
    expected = [
        (2023, 11, 30),
        (2024, 2, 29),
        (2024, 5, 30),
        (2024, 8, 30),
        (2024, 11, 30),
        (2025, 2, 28),
        (2025, 5, 30),
    ]
    assert [period_start(anchor, Interval.MONTH, 3, n) for n in range(7)] == [
        utc(*ymd) for ymd in expected
    ]
    assert period_index_at(anchor, Interval.MONTH, 3, utc(2024, 5, 29)) == 1
    assert period_index_at(anchor, Interval.MONTH, 3, utc(2024, 5, 30)) == 2


def test_weekly_and_biweekly() -> None:
    anchor = utc(2024, 12, 23)  # a Monday, crossing the year boundary
    assert [period_start(anchor, Interval.WEEK, 1, n) for n in range(4)] == [
        utc(2024, 12, 23),
        utc(2024, 12, 30),
        utc(2025, 1, 6),
        utc(2025, 1, 13),
    ]
    assert period_start(anchor, Interval.WEEK, 2, 3) == utc(2025, 2, 3)
    assert period_start(anchor, Interval.WEEK, 1, 52) == utc(2025, 12, 22)
    assert all(period_start(anchor, Interval.WEEK, 1, n).weekday() == 0 for n in range(60))


def test_daily_including_leap_day() -> None:
    anchor = utc(2024, 2, 27)
    assert [period_start(anchor, Interval.DAY, 1, n) for n in range(4)] == [
        utc(2024, 2, 27),
        utc(2024, 2, 28),
        utc(2024, 2, 29),
        utc(2024, 3, 1),
    ]
    assert period_start(anchor, Interval.DAY, 10, 2) == utc(2024, 3, 18)
    assert period_start(anchor, Interval.DAY, 1, 366) == utc(2025, 2, 27)
    assert period_index_at(anchor, Interval.DAY, 10, utc(2024, 3, 18)) == 2
    assert period_index_at(anchor, Interval.DAY, 10, utc(2024, 3, 17)) == 1


def test_before_anchor_is_minus_one_and_period_at() -> None:
    anchor = utc(2024, 1, 31)
    before = anchor - timedelta(microseconds=1)
    assert period_index_at(anchor, Interval.MONTH, 1, before) == -1
    assert period_at(anchor, Interval.MONTH, 1, before) is None
    p = period_at(anchor, Interval.MONTH, 1, utc(2024, 3, 1))
    assert p is not None
    assert (p.index, p.start, p.end) == (1, utc(2024, 2, 29), utc(2024, 3, 31))
    assert p.contains(utc(2024, 3, 1))
    assert not p.contains(p.end)


def test_interval_accepts_raw_strings_from_a_database() -> None:
    anchor = utc(2024, 1, 31)
    assert period_start(anchor, "month", 1, 1) == utc(2024, 2, 29)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fortnight"):
        period_start(anchor, "fortnight", 1, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, -1])
def test_count_must_be_at_least_one(count: int) -> None:
    with pytest.raises(ValueError, match="count must be >= 1"):
        period_start(utc(2024, 1, 1), Interval.MONTH, count, 0)


def test_count_and_n_must_be_ints() -> None:
    with pytest.raises(TypeError, match="count must be an int"):
        period_start(utc(2024, 1, 1), Interval.MONTH, True, 0)
    with pytest.raises(TypeError, match="count must be an int"):
        period_start(utc(2024, 1, 1), Interval.MONTH, 1.0, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be >= 0"):
        period_start(utc(2024, 1, 1), Interval.MONTH, 1, -1)


def test_naive_and_non_utc_datetimes_are_rejected() -> None:
    naive = datetime(2024, 1, 31)
    with pytest.raises(ValueError, match="anchor must be a timezone-aware UTC datetime"):
        period_start(naive, Interval.MONTH, 1, 0)
    with pytest.raises(ValueError, match="at must be a timezone-aware UTC datetime"):
        period_index_at(utc(2024, 1, 1), Interval.MONTH, 1, naive)
    paris = datetime(2024, 1, 31, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValueError, match="non-zero UTC offset"):
        period_start(paris, Interval.MONTH, 1, 0)


def test_other_utc_tzinfos_are_normalised() -> None:
    anchor = datetime(2024, 1, 31, tzinfo=ZoneInfo("UTC"))
    start = period_start(anchor, Interval.MONTH, 1, 1)
    assert start.tzinfo is UTC
    assert start == datetime(2024, 2, 29, tzinfo=UTC)


def test_index_at_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real_start = periods._start

    def counting_start(*args: object) -> datetime:
        nonlocal calls
        calls += 1
        return real_start(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(periods, "_start", counting_start)
    anchor = utc(2000, 1, 31)
    far = datetime(9000, 6, 30, 9, tzinfo=UTC)
    n = period_index_at(anchor, Interval.MONTH, 1, far)
    assert calls <= 4
    assert n == (9000 - 2000) * 12 + 4  # May 31 9000 09:30 is the last start before far
    # Day intervals divide exactly: no boundary evaluation at all.
    calls = 0
    assert period_index_at(anchor, Interval.DAY, 1, far) == (far - anchor) // timedelta(days=1)
    assert calls == 0


def test_index_near_the_end_of_datetime_range() -> None:
    anchor = utc(9999, 1, 31)
    assert period_index_at(anchor, Interval.MONTH, 1, datetime(9999, 12, 31, 23, tzinfo=UTC)) == 11
    with pytest.raises(OverflowError):
        period_start(anchor, Interval.MONTH, 1, 12)


# --- properties -----------------------------------------------------------------------------

anchors = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
)
intervals = st.sampled_from(list(Interval))
counts = st.integers(min_value=1, max_value=36)
indices = st.integers(min_value=0, max_value=400)


@given(anchors, intervals, counts, indices)
def test_property_starts_increase_and_index_round_trips(
    anchor: datetime, interval: Interval, count: int, n: int
) -> None:
    assume(interval is not Interval.YEAR or n * count < 7000)  # stay inside year 9999
    start = period_start(anchor, interval, count, n)
    following = period_start(anchor, interval, count, n + 1)
    assert start < following
    assert start.tzinfo is UTC
    assert period_index_at(anchor, interval, count, start) == n
    assert period_index_at(anchor, interval, count, following - timedelta(microseconds=1)) == n
    assert period(anchor, interval, count, n) == Period(n, start, following)


@given(anchors, st.sampled_from([Interval.MONTH, Interval.YEAR]), counts, indices)
def test_property_calendar_steps_clamp_from_the_anchor(
    anchor: datetime, interval: Interval, count: int, n: int
) -> None:
    assume(interval is not Interval.YEAR or n * count < 7000)  # stay inside year 9999
    start = period_start(anchor, interval, count, n)
    months = n * count * (12 if interval is Interval.YEAR else 1)
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    assert (start.year, start.month) == (year, month0 + 1)
    assert start.day == min(anchor.day, calendar.monthrange(start.year, start.month)[1])
    assert start.timetz() == anchor.timetz()


@given(anchors, st.sampled_from([Interval.DAY, Interval.WEEK]), counts, indices)
def test_property_fixed_steps_are_exact(
    anchor: datetime, interval: Interval, count: int, n: int
) -> None:
    unit = timedelta(days=1) if interval is Interval.DAY else timedelta(weeks=1)
    assert period_start(anchor, interval, count, n) == anchor + unit * count * n


@given(
    anchors,
    intervals,
    counts,
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40_000)),
)
def test_property_index_at_brackets_any_instant(
    anchor: datetime, interval: Interval, count: int, offset: timedelta
) -> None:
    at = anchor + offset
    n = period_index_at(anchor, interval, count, at)
    assert n >= 0
    assert (
        period_start(anchor, interval, count, n)
        <= at
        < period_start(anchor, interval, count, n + 1)
    )


@given(
    anchors,
    intervals,
    counts,
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3650)),
)
def test_property_before_anchor_is_minus_one(
    anchor: datetime, interval: Interval, count: int, offset: timedelta
) -> None:
    assert period_index_at(anchor, interval, count, anchor - offset) == -1


@given(st.datetimes(), intervals, counts, indices)
def test_property_naive_datetimes_rejected(
    naive: datetime, interval: Interval, count: int, n: int
) -> None:
    with pytest.raises(ValueError, match="naive"):
        period_start(naive, interval, count, n)
    with pytest.raises(ValueError, match="naive"):
        period_index_at(naive, interval, count, datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="naive"):
        period_index_at(datetime(2024, 1, 1, tzinfo=UTC), interval, count, naive)
