"""Dunning, authentication reminders, not-sent backoff, config parsing, card expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.domain.dunning import (
    HARD_DECLINE_CODES,
    ActionRequiredPolicy,
    DunningPolicy,
    FinalAction,
    FinalActionDue,
    FinalActionReason,
    NotSentBackoff,
    RetryAt,
    UpcomingRenewalPolicy,
    card_expires_before,
    card_valid_until,
    decide_after_decline,
    is_hard_decline,
    parse_day_list,
    parse_durations,
    parse_final_action,
)
from renewals.domain.states import (
    SubscriptionEvent,
    SubscriptionStatus,
    subscription_transition,
)

T0 = datetime(2024, 3, 10, 8, 15, tzinfo=UTC)
DAY = timedelta(days=1)


# --- dunning ------------------------------------------------------------------------------


def test_default_timeline_is_3_5_7_days_after_the_first_failure() -> None:
    policy = DunningPolicy()
    assert policy.retry_days == (3, 5, 7)
    assert policy.final_action is FinalAction.CANCELED
    assert policy.max_attempts == 4
    assert policy.next_retry_at(T0, 1) == T0 + 3 * DAY
    assert policy.next_retry_at(T0, 2) == T0 + 5 * DAY
    assert policy.next_retry_at(T0, 3) == T0 + 7 * DAY
    assert policy.next_retry_at(T0, 4) is None


def test_soft_declines_follow_the_schedule_then_the_final_action() -> None:
    policy = DunningPolicy()
    decisions = [
        decide_after_decline(
            policy, first_failure_at=T0, failures_so_far=n, decline_code="insufficient_funds"
        )
        for n in (1, 2, 3, 4)
    ]
    assert decisions == [
        RetryAt(at=T0 + 3 * DAY, retry_number=1),
        RetryAt(at=T0 + 5 * DAY, retry_number=2),
        RetryAt(at=T0 + 7 * DAY, retry_number=3),
        FinalActionDue(FinalAction.CANCELED, FinalActionReason.RETRIES_EXHAUSTED),
    ]


def test_unpaid_final_action_and_its_subscription_event() -> None:
    policy = DunningPolicy(final_action=FinalAction.UNPAID)
    decision = decide_after_decline(
        policy, first_failure_at=T0, failures_so_far=4, decline_code=None
    )
    assert decision == FinalActionDue(FinalAction.UNPAID, FinalActionReason.RETRIES_EXHAUSTED)
    assert isinstance(decision, FinalActionDue)
    event = decision.action.subscription_event
    assert event is SubscriptionEvent.FINAL_ACTION_UNPAID
    assert subscription_transition(SubscriptionStatus.PAST_DUE, event) is SubscriptionStatus.UNPAID
    assert FinalAction.CANCELED.subscription_status is SubscriptionStatus.CANCELED
    assert FinalAction.CANCELED.subscription_event is SubscriptionEvent.FINAL_ACTION_CANCELED


@pytest.mark.parametrize("code", sorted(HARD_DECLINE_CODES))
def test_hard_declines_skip_retries(code: str) -> None:
    decision = decide_after_decline(
        DunningPolicy(), first_failure_at=T0, failures_so_far=1, decline_code=code
    )
    assert decision == FinalActionDue(FinalAction.CANCELED, FinalActionReason.HARD_DECLINE)


@pytest.mark.parametrize(
    "code",
    [
        None,
        "",
        "card_declined",
        "generic_decline",
        "do_not_honor",
        "insufficient_funds",
        "processing_error",
        "try_again_later",
    ],
)
def test_soft_declines_are_retried(code: str | None) -> None:
    assert not is_hard_decline(code)
    decision = decide_after_decline(
        DunningPolicy(), first_failure_at=T0, failures_so_far=1, decline_code=code
    )
    assert decision == RetryAt(T0 + 3 * DAY, 1)


def test_hard_decline_codes_are_normalised() -> None:
    assert is_hard_decline(" Expired_Card ")
    assert is_hard_decline("STOLEN_CARD")


def test_no_retries_means_first_decline_is_final() -> None:
    policy = DunningPolicy(retry_days=())
    assert policy.max_attempts == 1
    assert decide_after_decline(
        policy, first_failure_at=T0, failures_so_far=1, decline_code="card_declined"
    ) == FinalActionDue(FinalAction.CANCELED, FinalActionReason.RETRIES_EXHAUSTED)


def test_policy_normalises_config_values() -> None:
    policy = DunningPolicy(retry_days=[1, 2], final_action="unpaid")  # type: ignore[arg-type]
    assert policy.retry_days == (1, 2)
    assert policy.final_action is FinalAction.UNPAID


@pytest.mark.parametrize(
    ("days", "error", "fragment"),
    [
        ((5, 3), ValueError, "strictly increasing, got 3 after 5"),
        ((3, 3), ValueError, "strictly increasing, got 3 after 3"),
        ((0, 3), ValueError, "at least 1 day each, got 0"),
        ((-1,), ValueError, "at least 1 day each, got -1"),
        (("3",), TypeError, "whole days"),
        ((True,), TypeError, "whole days"),
        ((1.5,), TypeError, "whole days"),
        ("3,5,7", TypeError, "tuple of ints"),
    ],
)
def test_policy_rejects_bad_days(days: object, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        DunningPolicy(retry_days=days)  # type: ignore[arg-type]


def test_policy_rejects_bad_final_action() -> None:
    with pytest.raises(ValueError, match="deleted"):
        DunningPolicy(final_action="deleted")  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    policy = DunningPolicy()
    with pytest.raises(ValueError, match="failures_so_far must be >= 1"):
        policy.next_retry_at(T0, 0)
    with pytest.raises(ValueError, match="naive"):
        policy.next_retry_at(datetime(2024, 3, 10), 1)
    with pytest.raises(ValueError, match="failures_so_far must be >= 1"):
        decide_after_decline(policy, first_failure_at=T0, failures_so_far=0, decline_code=None)


@given(st.lists(st.integers(1, 60), unique=True, max_size=8), st.integers(1, 12))
def test_property_retries_are_anchored_and_bounded(days: list[int], failures: int) -> None:
    policy = DunningPolicy(retry_days=tuple(sorted(days)))
    at = policy.next_retry_at(T0, failures)
    if failures > len(days):
        assert at is None
    else:
        assert at == T0 + timedelta(days=sorted(days)[failures - 1])
        if failures > 1:
            previous = policy.next_retry_at(T0, failures - 1)
            assert previous is not None
            assert previous < at


# --- action required ----------------------------------------------------------------------


def test_reminders_on_day_3_and_6_then_final_action_on_day_7() -> None:
    policy = ActionRequiredPolicy()
    assert (policy.reminder_days, policy.expire_after_days) == ((3, 6), 7)
    assert policy.final_action_at(T0) == T0 + 7 * DAY
    assert policy.reminders_due(T0, T0, 0) == ()
    assert policy.reminders_due(T0, T0 + 3 * DAY - timedelta(seconds=1), 0) == ()
    assert policy.reminders_due(T0, T0 + 3 * DAY, 0) == (1,)
    assert policy.reminders_due(T0, T0 + 5 * DAY, 1) == ()
    assert policy.reminders_due(T0, T0 + 6 * DAY, 1) == (2,)
    assert policy.reminders_due(T0, T0 + 6 * DAY, 2) == ()
    assert not policy.is_expired(T0, T0 + 7 * DAY - timedelta(microseconds=1))
    assert policy.is_expired(T0, T0 + 7 * DAY)
    # At expiry the final action supersedes any reminder still owed.
    assert policy.reminders_due(T0, T0 + 7 * DAY, 1) == ()


def test_reminders_after_downtime_are_reported_together() -> None:
    policy = ActionRequiredPolicy()
    assert policy.reminders_due(T0, T0 + 6 * DAY + timedelta(hours=5), 0) == (1, 2)


def test_next_wakeup() -> None:
    policy = ActionRequiredPolicy()
    assert policy.next_wakeup_at(T0, 0) == T0 + 3 * DAY
    assert policy.next_wakeup_at(T0, 1) == T0 + 6 * DAY
    assert policy.next_wakeup_at(T0, 2) == T0 + 7 * DAY
    assert policy.next_reminder_at(T0, 2) is None
    assert ActionRequiredPolicy(reminder_days=()).next_wakeup_at(T0, 0) == T0 + 7 * DAY


def test_a_reminder_needs_a_new_link_when_the_old_one_is_dead_or_about_to_be() -> None:
    policy = ActionRequiredPolicy()
    assert policy.link_margin == timedelta(hours=1)
    now = T0 + 3 * DAY
    assert policy.link_needs_refresh(None, now)  # expiry unknown
    assert policy.link_needs_refresh(now - timedelta(seconds=1), now)  # expired
    assert policy.link_needs_refresh(now + timedelta(minutes=59), now)  # too late to use
    assert not policy.link_needs_refresh(now + timedelta(hours=1), now)
    assert not ActionRequiredPolicy(link_margin=timedelta(0)).link_needs_refresh(now, now)
    with pytest.raises(ValueError, match="naive"):
        policy.link_needs_refresh(datetime(2024, 3, 20), now)
    with pytest.raises(ValueError, match="link_margin"):
        ActionRequiredPolicy(link_margin=timedelta(minutes=-1))


def test_action_required_policy_validation() -> None:
    with pytest.raises(ValueError, match="before expire_after_days"):
        ActionRequiredPolicy(reminder_days=(3, 7), expire_after_days=7)
    with pytest.raises(ValueError, match="expire_after_days must be >= 1"):
        ActionRequiredPolicy(reminder_days=(), expire_after_days=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        ActionRequiredPolicy(reminder_days=(4, 2))
    with pytest.raises(ValueError, match="only 2 reminders"):
        ActionRequiredPolicy().reminder_at(T0, 3)
    with pytest.raises(ValueError, match="naive"):
        ActionRequiredPolicy().reminders_due(T0, datetime(2024, 3, 20), 0)


# --- not-sent backoff ---------------------------------------------------------------------


def test_not_sent_backoff_defaults_and_cap() -> None:
    backoff = NotSentBackoff()
    delays = [backoff.delay(n) for n in range(1, 8)]
    assert delays == [
        timedelta(seconds=10),
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=10),
        timedelta(minutes=10),
        timedelta(minutes=10),
        timedelta(minutes=10),
    ]
    assert backoff.delay(10_000) == timedelta(minutes=10)
    assert backoff.retry_at(T0, 1) == T0 + timedelta(seconds=10)


def test_not_sent_backoff_honours_retry_after_within_the_cap() -> None:
    backoff = NotSentBackoff()
    assert backoff.delay(1, retry_after=60) == timedelta(seconds=60)
    assert backoff.delay(1, retry_after=timedelta(seconds=2)) == timedelta(seconds=10)
    assert backoff.delay(3, retry_after=5.0) == timedelta(minutes=2)
    assert backoff.delay(1, retry_after=3600) == timedelta(minutes=10)


@pytest.mark.parametrize(
    ("delays", "fragment"),
    [
        ((), "at least one"),
        ((timedelta(0),), "positive"),
        ((timedelta(seconds=-1),), "positive"),
        ((timedelta(seconds=30), timedelta(seconds=10)), "must not decrease"),
        ((timedelta(hours=2),), "within 1:00:00"),
    ],
)
def test_not_sent_backoff_validation(delays: tuple[timedelta, ...], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        NotSentBackoff(delays=delays)


def test_not_sent_backoff_bad_attempt_number() -> None:
    with pytest.raises(ValueError, match="attempt_number must be >= 1"):
        NotSentBackoff().delay(0)


# --- config parsing -----------------------------------------------------------------------


def test_parse_day_list() -> None:
    assert parse_day_list("3,5,7") == (3, 5, 7)
    assert parse_day_list(" 3 , 5 ,7 ") == (3, 5, 7)
    assert parse_day_list("1") == (1,)
    assert parse_day_list("") == ()
    assert parse_day_list("   ") == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("3,,5", "item 2 of '3,,5' is empty"),
        ("3,5,", "item 3 of '3,5,' is empty"),
        ("a", "'a' is not a whole number of days"),
        ("3.5", "'3.5' is not a whole number of days"),
        ("3;5", "'3;5' is not a whole number of days"),
        ("5,3", "strictly increasing, got 3 after 5"),
        ("3,3", "strictly increasing, got 3 after 3"),
        ("-1,3", "at least 1 day each, got -1"),
        ("0", "at least 1 day each, got 0"),
    ],
)
def test_parse_day_list_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="RENEWALS_DUNNING_RETRY_DAYS") as info:
        parse_day_list(text, name="RENEWALS_DUNNING_RETRY_DAYS")
    assert fragment in str(info.value)


def test_parse_durations() -> None:
    assert parse_durations("10s,30s,2m,10m") == NotSentBackoff().delays
    assert parse_durations("500ms, 15, 1h, 1.5m") == (
        timedelta(milliseconds=500),
        timedelta(seconds=15),
        timedelta(hours=1),
        timedelta(seconds=90),
    )
    for bad in ("10x", "s", "1,,2", "-5s"):
        with pytest.raises(ValueError, match="backoff"):
            parse_durations(bad, name="backoff")


def test_parse_final_action() -> None:
    assert parse_final_action(" Unpaid ") is FinalAction.UNPAID
    assert parse_final_action("canceled") is FinalAction.CANCELED
    with pytest.raises(ValueError, match="one of canceled, unpaid, got 'delete'"):
        parse_final_action("delete")


# --- card expiry and the upcoming-renewal notice ------------------------------------------


def test_card_valid_through_the_end_of_its_expiry_month() -> None:
    assert card_valid_until(12, 2024) == datetime(2025, 1, 1, tzinfo=UTC)
    assert card_valid_until(2, 2024) == datetime(2024, 3, 1, tzinfo=UTC)
    last_moment = datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert not card_expires_before(12, 2024, last_moment)
    assert card_expires_before(12, 2024, datetime(2025, 1, 1, tzinfo=UTC))
    assert not card_expires_before(2, 2024, datetime(2024, 2, 29, 12, tzinfo=UTC))
    assert card_expires_before(1, 2024, datetime(2024, 2, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("month", "year", "fragment"),
    [
        (0, 2030, "exp_month must be >= 1"),
        (13, 2030, "exp_month must be 1..12"),
        (12, 30, "4-digit year"),
    ],
)
def test_card_expiry_validation(month: int, year: int, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        card_expires_before(month, year, T0)


def test_upcoming_renewal_notice_window_and_card_warning() -> None:
    policy = UpcomingRenewalPolicy(notice_days=7)
    renewal_at = datetime(2025, 1, 5, tzinfo=UTC)
    assert policy.notice_at(renewal_at) == datetime(2024, 12, 29, tzinfo=UTC)
    assert not policy.notice_due(renewal_at, datetime(2024, 12, 28, 23, tzinfo=UTC))
    assert policy.notice_due(renewal_at, datetime(2024, 12, 29, tzinfo=UTC))
    assert not policy.notice_due(renewal_at, renewal_at)
    assert policy.card_warning(12, 2024, renewal_at)
    assert not policy.card_warning(1, 2025, renewal_at)
    with pytest.raises(ValueError, match="notice_days must be >= 1"):
        UpcomingRenewalPolicy(notice_days=0)
