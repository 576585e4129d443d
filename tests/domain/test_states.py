"""The transition tables, checked against an independent copy written out here."""

from __future__ import annotations

from collections import deque
from enum import StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from renewals.domain.states import (
    ATTEMPT_TRANSITIONS,
    CHARGEABLE_SUBSCRIPTION_STATUSES,
    FINISHED_RENEWAL_STATUSES,
    OPEN_ATTEMPT_STATUSES,
    OPEN_RENEWAL_STATUSES,
    RENEWAL_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    TERMINAL_ATTEMPT_STATUSES,
    TERMINAL_RENEWAL_STATUSES,
    TERMINAL_SUBSCRIPTION_STATUSES,
    AttemptEvent,
    AttemptStatus,
    IllegalTransition,
    RenewalEvent,
    RenewalStatus,
    SubscriptionEvent,
    SubscriptionStatus,
    TransitionTable,
    attempt_transition,
    can_renewal_transition,
    can_subscription_transition,
    renewal_transition,
    subscription_transition,
)

SUBSCRIPTION_EXPECTED = {
    ("active", "charge_succeeded", "active"),
    ("active", "authentication_required", "action_required"),
    ("active", "declined", "past_due"),
    ("active", "final_action_canceled", "canceled"),
    ("active", "final_action_unpaid", "unpaid"),
    ("active", "paused_by_operator", "paused"),
    ("active", "canceled_by_operator", "canceled"),
    ("action_required", "paid_on_session", "active"),
    ("action_required", "final_action_canceled", "canceled"),
    ("action_required", "final_action_unpaid", "unpaid"),
    ("action_required", "paused_by_operator", "paused"),
    ("action_required", "canceled_by_operator", "canceled"),
    ("past_due", "charge_succeeded", "active"),
    ("past_due", "authentication_required", "action_required"),
    ("past_due", "declined", "past_due"),
    ("past_due", "paid_on_session", "active"),
    ("past_due", "final_action_canceled", "canceled"),
    ("past_due", "final_action_unpaid", "unpaid"),
    ("past_due", "paused_by_operator", "paused"),
    ("past_due", "canceled_by_operator", "canceled"),
    ("paused", "resumed_by_operator", "active"),
    ("paused", "canceled_by_operator", "canceled"),
    ("unpaid", "paid_on_session", "active"),
    ("unpaid", "canceled_by_operator", "canceled"),
}

RENEWAL_EXPECTED = {
    ("pending", "claimed", "charging"),
    ("pending", "abandoned", "failed"),
    ("pending", "refused", "failed"),
    ("charging", "charge_succeeded", "succeeded"),
    ("charging", "authentication_required", "requires_action"),
    ("charging", "declined", "retry_scheduled"),
    ("charging", "declined_final", "failed"),
    ("charging", "not_sent", "retry_scheduled"),
    ("charging", "outcome_unknown", "unknown"),
    ("charging", "released", "pending"),
    ("retry_scheduled", "claimed", "charging"),
    ("retry_scheduled", "paid_on_session", "succeeded"),
    ("retry_scheduled", "abandoned", "failed"),
    ("retry_scheduled", "refused", "failed"),
    ("requires_action", "paid_on_session", "succeeded"),
    ("requires_action", "action_expired", "failed"),
    ("requires_action", "abandoned", "failed"),
    ("unknown", "resolved_paid", "succeeded"),
    ("unknown", "resolved_not_charged", "retry_scheduled"),
    # Trusted idempotency keys only (RENEWALS_TRUST_IDEMPOTENCY_KEYS): the replay settles it.
    ("unknown", "resent_same_key", "charging"),
    # Only while the subscription is unpaid: the customer settles on-session after the end.
    ("failed", "paid_on_session", "succeeded"),
}

ATTEMPT_EXPECTED = {
    ("in_flight", "charge_succeeded", "succeeded"),
    ("in_flight", "authentication_required", "requires_action"),
    ("in_flight", "declined", "declined"),
    ("in_flight", "not_sent", "not_sent"),
    ("in_flight", "outcome_unknown", "unknown"),
    ("not_sent", "resent", "in_flight"),
    ("unknown", "resolved_paid", "succeeded"),
    ("unknown", "resolved_not_charged", "not_sent"),
    ("unknown", "resent", "in_flight"),
    ("unknown", "closed_not_charged", "not_charged"),
}

# The only ways out of unknown: reconciliation/operator, or re-sending the same idempotency
# key when the operator trusts FastStar to honour it (the replay is the reconciliation).
UNKNOWN_EXITS = {
    RenewalEvent.RESOLVED_PAID,
    RenewalEvent.RESOLVED_NOT_CHARGED,
    RenewalEvent.RESENT_SAME_KEY,
}

MACHINES: list[tuple[TransitionTable[StrEnum, StrEnum], set[tuple[str, str, str]]]] = [
    (SUBSCRIPTION_TRANSITIONS, SUBSCRIPTION_EXPECTED),  # type: ignore[list-item]
    (RENEWAL_TRANSITIONS, RENEWAL_EXPECTED),  # type: ignore[list-item]
    (ATTEMPT_TRANSITIONS, ATTEMPT_EXPECTED),  # type: ignore[list-item]
]


def test_status_values() -> None:
    assert [s.value for s in SubscriptionStatus] == [
        "active",
        "action_required",
        "past_due",
        "paused",
        "canceled",
        "unpaid",
    ]
    assert {s.value for s in RenewalStatus} == {
        "pending",
        "charging",
        "succeeded",
        "requires_action",
        "retry_scheduled",
        "failed",
        "unknown",
    }
    assert {s.value for s in AttemptStatus} == {
        "in_flight",
        "succeeded",
        "requires_action",
        "declined",
        "not_sent",
        "unknown",
        "not_charged",
    }


@pytest.mark.parametrize(("table", "expected"), MACHINES)
def test_table_is_exactly_the_expected_transitions(
    table: TransitionTable[StrEnum, StrEnum], expected: set[tuple[str, str, str]]
) -> None:
    assert {(s.value, e.value, t.value) for s, e, t in table.items()} == expected
    for current, event, target in expected:
        assert table.apply(current, event) == target  # type: ignore[arg-type]


@pytest.mark.parametrize(("table", "expected"), MACHINES)
def test_everything_else_is_illegal(
    table: TransitionTable[StrEnum, StrEnum], expected: set[tuple[str, str, str]]
) -> None:
    allowed = {(s, e) for s, e, _ in expected}
    for status in table.status_type:
        for event in table.event_type:
            if (status.value, event.value) in allowed:
                assert table.allows(status, event)
                continue
            assert not table.allows(status, event)
            with pytest.raises(IllegalTransition) as info:
                table.apply(status, event)
            assert info.value.current is status
            assert info.value.event is event
            assert info.value.allowed == table.events_from(status)


def test_subscription_walkthrough() -> None:
    s = SubscriptionStatus.ACTIVE
    s = subscription_transition(s, SubscriptionEvent.CHARGE_SUCCEEDED)
    assert s is SubscriptionStatus.ACTIVE
    s = subscription_transition(s, SubscriptionEvent.DECLINED)
    assert s is SubscriptionStatus.PAST_DUE
    s = subscription_transition(s, SubscriptionEvent.DECLINED)
    assert s is SubscriptionStatus.PAST_DUE
    s = subscription_transition(s, SubscriptionEvent.AUTHENTICATION_REQUIRED)
    assert s is SubscriptionStatus.ACTION_REQUIRED
    s = subscription_transition(s, SubscriptionEvent.PAID_ON_SESSION)
    assert s is SubscriptionStatus.ACTIVE
    s = subscription_transition(s, SubscriptionEvent.FINAL_ACTION_UNPAID)
    assert s is SubscriptionStatus.UNPAID
    s = subscription_transition(s, SubscriptionEvent.CANCELED_BY_OPERATOR)
    assert s is SubscriptionStatus.CANCELED


def test_renewal_walkthrough_through_unknown() -> None:
    r = RenewalStatus.PENDING
    for event, expected in [
        (RenewalEvent.CLAIMED, RenewalStatus.CHARGING),
        (RenewalEvent.OUTCOME_UNKNOWN, RenewalStatus.UNKNOWN),
        (RenewalEvent.RESOLVED_NOT_CHARGED, RenewalStatus.RETRY_SCHEDULED),
        (RenewalEvent.CLAIMED, RenewalStatus.CHARGING),
        (RenewalEvent.AUTHENTICATION_REQUIRED, RenewalStatus.REQUIRES_ACTION),
        (RenewalEvent.PAID_ON_SESSION, RenewalStatus.SUCCEEDED),
    ]:
        r = renewal_transition(r, event)
        assert r is expected


def test_attempt_not_sent_is_resent() -> None:
    a = attempt_transition(AttemptStatus.IN_FLIGHT, AttemptEvent.NOT_SENT)
    assert attempt_transition(a, AttemptEvent.RESENT) is AttemptStatus.IN_FLIGHT


def test_charge_outcomes_on_paused_or_canceled_subscriptions_are_checked_not_applied() -> None:
    for status in (SubscriptionStatus.PAUSED, SubscriptionStatus.CANCELED):
        assert not can_subscription_transition(status, SubscriptionEvent.CHARGE_SUCCEEDED)
    assert can_renewal_transition(RenewalStatus.CHARGING, RenewalEvent.CHARGE_SUCCEEDED)


def test_terminal_and_open_sets() -> None:
    assert frozenset({SubscriptionStatus.CANCELED}) == TERMINAL_SUBSCRIPTION_STATUSES
    assert frozenset({RenewalStatus.SUCCEEDED}) == TERMINAL_RENEWAL_STATUSES
    # failed only takes a late on-session payment: no job works on it any more.
    assert frozenset({RenewalStatus.SUCCEEDED, RenewalStatus.FAILED}) == FINISHED_RENEWAL_STATUSES
    assert {
        AttemptStatus.SUCCEEDED,
        AttemptStatus.REQUIRES_ACTION,
        AttemptStatus.DECLINED,
        AttemptStatus.NOT_CHARGED,
    } == TERMINAL_ATTEMPT_STATUSES
    assert frozenset(RenewalStatus) - FINISHED_RENEWAL_STATUSES == OPEN_RENEWAL_STATUSES
    assert RenewalStatus.UNKNOWN in OPEN_RENEWAL_STATUSES
    # Must match the partial unique index in renewals.models (one open attempt per renewal).
    assert {s.value for s in OPEN_ATTEMPT_STATUSES} == {"in_flight", "not_sent", "unknown"}
    assert {
        SubscriptionStatus.ACTIVE,
        SubscriptionStatus.PAST_DUE,
    } == CHARGEABLE_SUBSCRIPTION_STATUSES


@pytest.mark.parametrize(
    ("table", "start"),
    [
        (SUBSCRIPTION_TRANSITIONS, SubscriptionStatus.ACTIVE),
        (RENEWAL_TRANSITIONS, RenewalStatus.PENDING),
        (ATTEMPT_TRANSITIONS, AttemptStatus.IN_FLIGHT),
    ],
)
def test_every_status_reachable_and_every_open_status_can_finish(
    table: TransitionTable[StrEnum, StrEnum], start: StrEnum
) -> None:
    reachable = {start}
    queue = deque([start])
    while queue:
        for target in table[queue.popleft()].values():
            if target not in reachable:
                reachable.add(target)
                queue.append(target)
    assert reachable == set(table.status_type)
    # I3, nothing stuck: from every non-terminal status some path reaches a terminal one.
    for status in set(table.status_type) - table.terminal:
        seen = {status}
        frontier = [status]
        while frontier and not seen & table.terminal:
            nxt = [t for s in frontier for t in table[s].values() if t not in seen]
            seen.update(nxt)
            frontier = nxt
        assert seen & table.terminal, status


def test_raw_strings_accepted_and_garbage_rejected() -> None:
    assert renewal_transition("pending", "claimed") is RenewalStatus.CHARGING  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        renewal_transition("bogus", "claimed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        renewal_transition("pending", "bogus")  # type: ignore[arg-type]


def test_illegal_transition_message() -> None:
    with pytest.raises(IllegalTransition, match="none \\(terminal\\)"):
        renewal_transition(RenewalStatus.SUCCEEDED, RenewalEvent.CLAIMED)
    with pytest.raises(
        IllegalTransition,
        match="unknown does not accept claimed; allowed events: resent_same_key, resolved_not_",
    ):
        renewal_transition(RenewalStatus.UNKNOWN, RenewalEvent.CLAIMED)


def test_tables_are_read_only() -> None:
    with pytest.raises(TypeError):
        RENEWAL_TRANSITIONS[RenewalStatus.UNKNOWN][RenewalEvent.CLAIMED] = RenewalStatus.CHARGING  # type: ignore[index]


# --- properties: random walks over each machine ------------------------------------------


@given(st.lists(st.sampled_from(list(RenewalEvent)), max_size=60))
def test_property_renewal_walk(events: list[RenewalEvent]) -> None:
    status = RenewalStatus.PENDING
    for event in events:
        try:
            following = renewal_transition(status, event)
        except IllegalTransition:
            assert event not in RENEWAL_TRANSITIONS[status]
            continue
        assert status not in TERMINAL_RENEWAL_STATUSES
        if status is RenewalStatus.UNKNOWN:
            # I3: unknown is left only by reconciliation (or a trusted same-key replay).
            assert event in UNKNOWN_EXITS
        status = following


@given(
    st.sampled_from(
        [
            *((RENEWAL_TRANSITIONS, s) for s in TERMINAL_RENEWAL_STATUSES),
            *((SUBSCRIPTION_TRANSITIONS, s) for s in TERMINAL_SUBSCRIPTION_STATUSES),
            *((ATTEMPT_TRANSITIONS, s) for s in TERMINAL_ATTEMPT_STATUSES),
        ]
    ),
    st.data(),
)
def test_property_terminal_states_reject_every_event(
    machine: tuple[TransitionTable[StrEnum, StrEnum], StrEnum], data: st.DataObject
) -> None:
    table, status = machine
    event = data.draw(st.sampled_from(list(table.event_type)))
    with pytest.raises(IllegalTransition):
        table.apply(status, event)


@given(st.sampled_from(list(RenewalEvent)))
def test_property_unknown_left_only_via_resolved(event: RenewalEvent) -> None:
    if event in UNKNOWN_EXITS:
        assert renewal_transition(RenewalStatus.UNKNOWN, event) in {
            RenewalStatus.SUCCEEDED,
            RenewalStatus.RETRY_SCHEDULED,
            RenewalStatus.CHARGING,
        }
    else:
        with pytest.raises(IllegalTransition):
            renewal_transition(RenewalStatus.UNKNOWN, event)
