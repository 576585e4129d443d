"""Catch-up policy: which period to materialise after normal operation and after downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.domain.catchup import CatchUpPolicy, next_period_to_charge, skipped_period_indices
from renewals.domain.periods import Interval, period_index_at, period_start

ANCHOR = datetime(2024, 1, 31, 12, tzinfo=UTC)  # periods: Jan 31, Feb 29, Mar 31, Apr 30, May 31


def nxt(
    now: datetime, last: int | None, policy: CatchUpPolicy = CatchUpPolicy.LATEST
) -> int | None:
    return next_period_to_charge(
        ANCHOR, Interval.MONTH, 1, now=now, last_settled_index=last, policy=policy
    )


def test_nothing_due_before_the_anchor() -> None:
    before = ANCHOR - timedelta(microseconds=1)
    assert nxt(before, None) is None
    assert nxt(before, None, CatchUpPolicy.ALL) is None


def test_period_zero_is_due_at_the_anchor() -> None:
    assert nxt(ANCHOR, None) == 0
    assert nxt(ANCHOR, None, CatchUpPolicy.ALL) == 0


def test_nothing_due_until_the_next_period_starts() -> None:
    feb_29 = datetime(2024, 2, 29, 12, tzinfo=UTC)
    assert nxt(feb_29 - timedelta(microseconds=1), 0) is None
    assert nxt(feb_29, 0) == 1
    assert nxt(feb_29, 0, CatchUpPolicy.ALL) == 1


def test_downtime_latest_charges_only_the_newest_due_period() -> None:
    now = datetime(2024, 5, 31, 12, tzinfo=UTC) + timedelta(days=3)  # period 4 running
    assert nxt(now, 0) == 4
    assert list(skipped_period_indices(0, 4)) == [1, 2, 3]
    # Once period 4 is materialised, nothing else is due: the skipped ones stay skipped.
    assert nxt(now, 4) is None


def test_downtime_all_walks_every_missed_period_in_order() -> None:
    now = datetime(2024, 6, 3, tzinfo=UTC)
    chosen: list[int] = []
    last: int | None = 0
    while (n := nxt(now, last, CatchUpPolicy.ALL)) is not None:
        chosen.append(n)
        assert list(skipped_period_indices(last, n)) == []
        last = n
    assert chosen == [1, 2, 3, 4]


def test_never_materialised_subscription_after_downtime() -> None:
    now = datetime(2024, 4, 1, tzinfo=UTC)  # period 2 (Mar 31) running
    assert nxt(now, None) == 2
    assert nxt(now, None, CatchUpPolicy.ALL) == 0
    assert list(skipped_period_indices(None, 2)) == [0, 1]


def test_period_materialised_ahead_of_time_means_nothing_due() -> None:
    assert nxt(datetime(2024, 3, 1, tzinfo=UTC), 5) is None


def test_default_policy_is_latest_and_strings_are_accepted() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    assert next_period_to_charge(ANCHOR, Interval.MONTH, 1, now=now, last_settled_index=0) == 4
    assert (
        next_period_to_charge(
            ANCHOR,
            Interval.MONTH,
            1,
            now=now,
            last_settled_index=0,
            policy="all",  # type: ignore[arg-type]  # as read from configuration
        )
        == 1
    )


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="last_settled_index must be >= 0"):
        nxt(ANCHOR, -1)
    with pytest.raises(ValueError, match="naive"):
        nxt(datetime(2024, 3, 1), 0)
    with pytest.raises(ValueError):
        nxt(ANCHOR, 0, "oldest")  # type: ignore[arg-type]


@given(
    st.sampled_from(list(Interval)),
    st.integers(1, 12),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3000)),
    st.one_of(st.none(), st.integers(0, 200)),
)
def test_property_policies_agree_on_what_is_due(
    interval: Interval, count: int, elapsed: timedelta, last: int | None
) -> None:
    now = ANCHOR + elapsed
    latest, every = (
        next_period_to_charge(
            ANCHOR, interval, count, now=now, last_settled_index=last, policy=policy
        )
        for policy in (CatchUpPolicy.LATEST, CatchUpPolicy.ALL)
    )
    current = period_index_at(ANCHOR, interval, count, now)
    first_open = 0 if last is None else last + 1
    if first_open > current:
        assert latest is None and every is None
    else:
        assert latest == current
        assert every == first_open
        assert every is not None
        assert period_start(ANCHOR, interval, count, every) <= now
