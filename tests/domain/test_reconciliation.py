"""The janitor's recheck backoff and same-key retry horizon for unknown attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.domain.reconciliation import RecheckDecision, UnknownRecheckPolicy

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_default_backoff_is_5_min_then_1_h_then_daily() -> None:
    policy = UnknownRecheckPolicy()
    assert [policy.delay(n) for n in range(5)] == [
        timedelta(minutes=5),
        HOUR,
        24 * HOUR,
        24 * HOUR,
        24 * HOUR,
    ]
    assert policy.next_check_at(T0, 1) == T0 + HOUR


@given(st.integers(0, 50))
def test_delays_never_shrink(checks_done: int) -> None:
    policy = UnknownRecheckPolicy()
    assert policy.delay(checks_done + 1) >= policy.delay(checks_done)


def test_same_key_retry_only_when_trusted_and_within_the_horizon() -> None:
    policy = UnknownRecheckPolicy(retry_horizon=20 * HOUR)
    young, old = T0 + 20 * HOUR - timedelta(seconds=1), T0 + 20 * HOUR
    assert policy.decide(first_sent_at=T0, now=young, trust_keys=True) is (
        RecheckDecision.RESEND_SAME_KEY
    )
    assert policy.decide(first_sent_at=T0, now=old, trust_keys=True) is RecheckDecision.ESCALATE
    assert policy.decide(first_sent_at=T0, now=young, trust_keys=False) is (
        RecheckDecision.ESCALATE
    )


@pytest.mark.parametrize(
    "delays", [(), (timedelta(0),), (HOUR, timedelta(minutes=5))], ids=["none", "zero", "shrinks"]
)
def test_bad_delays_are_refused(delays: tuple[timedelta, ...]) -> None:
    with pytest.raises(ValueError, match="delays"):
        UnknownRecheckPolicy(delays=delays)


def test_naive_times_and_negative_counts_are_refused() -> None:
    policy = UnknownRecheckPolicy()
    with pytest.raises(ValueError, match="naive"):
        policy.next_check_at(datetime(2024, 5, 1), 0)  # naive: the point of the test
    with pytest.raises(ValueError, match="checks_done"):
        policy.delay(-1)
