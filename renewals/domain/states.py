"""The three state machines: subscription, renewal (one billing period), charge attempt.

Each machine is an explicit table ``status -> {event -> next status}``; anything not in a
table raises :class:`IllegalTransition`, so a bug or a race shows up as a loud error instead
of a silently wrong status. Statuses with no exits are terminal.

Subscription (docs/states.md)::

    active ──charge_succeeded──▶ active            (period advanced)
    active|past_due ──authentication_required──▶ action_required  (402: checkout link, reminders)
    active|past_due ──declined──▶ past_due          (dunning schedule of new attempts)
    past_due ──charge_succeeded──▶ active           (a dunning retry paid)
    action_required|past_due|unpaid ──paid_on_session──▶ active
    active|action_required|past_due ──final_action_canceled|final_action_unpaid──▶ canceled|unpaid
    active|action_required|past_due ──paused_by_operator──▶ paused ──resumed_by_operator──▶ active
    any but canceled ──canceled_by_operator──▶ canceled (terminal)

``active`` accepts the final-action events too because a hard decline (or a dunning policy
without retries) ends a subscription on its first failed renewal. A charge outcome that
lands on a ``paused`` or ``canceled`` subscription (the operator acted while the call was in
flight) has no entry: callers check :func:`can_subscription_transition`, still record the
renewal's outcome (I2), and leave the operator's decision in place.

Renewal of one period::

    pending ──claimed──▶ charging
    charging ──▶ succeeded | requires_action | retry_scheduled | failed | unknown
    charging ──released──▶ pending            (claim given up before anything was sent)
    charging ──not_sent──▶ retry_scheduled    (re-send the *same* attempt soon)
    retry_scheduled ──claimed──▶ charging
    unknown ──resolved_paid──▶ succeeded;  unknown ──resolved_not_charged──▶ retry_scheduled
    unknown ──resent_same_key──▶ charging     (trusted idempotency keys only)
    requires_action|retry_scheduled ──paid_on_session──▶ succeeded
    requires_action ──action_expired──▶ failed
    pending|retry_scheduled|requires_action ──abandoned──▶ failed  (subscription ended)
    pending|retry_scheduled ──refused──▶ failed  (pre-charge checks: bad input, detached card)
    failed ──paid_on_session──▶ succeeded     (only while the subscription is unpaid)

``unknown`` is left only by reconciliation or an operator (``resolved_*``), or, when the
operator has declared FastStar's idempotency keys trustworthy, by re-sending the unknown
attempt with its own key (``resent_same_key``: the provider's replay is the reconciliation).
Never by a timer or a guess (I3). ``succeeded`` and ``failed`` are terminal.

Attempt (one FastStar charge call, its row committed before the call)::

    in_flight ──▶ succeeded | requires_action | declined | not_sent | unknown
    not_sent ──resent──▶ in_flight            (same idempotency key)
    unknown ──resolved_paid──▶ succeeded;  unknown ──resolved_not_charged──▶ not_sent
    unknown ──resent──▶ in_flight             (trusted idempotency keys only)
    unknown ──closed_not_charged──▶ not_charged  (an operator: a fresh attempt follows)

Outbox message (one email)::

    pending ──claimed──▶ sending ──sent──▶ sent
                         sending ──rejected──▶ failed      (permanent: bad address, 5xx)
                         sending ──deferred──▶ pending     (temporary: retried on a backoff)
                         sending ──lease_expired──▶ pending (the worker vanished mid-send)

Inbox event (one webhook delivery, stored once)::

    pending ──processed──▶ processed;  pending ──ignored──▶ ignored

Payment review (a payment, or a renewal, an operator must look at)::

    open ──resolved──▶ resolved   (booked by any route, or settled by an operator)

Operator command (one row per command sent through the task queue)::

    pending ──claimed──▶ running ──done──▶ done
                         running ──refused──▶ refused   (nothing changed; the reason says why)
                         running ──failed──▶ failed     (an unexpected error; nothing changed)
                         running ──lease_expired──▶ pending (the worker vanished: run again)

Switch (a named operator switch; ``halt`` stops every charge)::

    off ──switched_on──▶ on ──switched_off──▶ off
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Generic, TypeVar

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "CHARGEABLE_SUBSCRIPTION_STATUSES",
    "COMMAND_TRANSITIONS",
    "FINISHED_COMMAND_STATUSES",
    "FINISHED_RENEWAL_STATUSES",
    "INBOX_TRANSITIONS",
    "OPEN_ATTEMPT_STATUSES",
    "OPEN_RENEWAL_STATUSES",
    "OUTBOX_TRANSITIONS",
    "RENEWAL_TRANSITIONS",
    "REVIEW_TRANSITIONS",
    "SUBSCRIPTION_TRANSITIONS",
    "SWITCH_TRANSITIONS",
    "TERMINAL_ATTEMPT_STATUSES",
    "TERMINAL_RENEWAL_STATUSES",
    "TERMINAL_SUBSCRIPTION_STATUSES",
    "AttemptEvent",
    "AttemptStatus",
    "CommandEvent",
    "CommandStatus",
    "IllegalTransition",
    "InboxEvent",
    "InboxStatus",
    "OutboxEvent",
    "OutboxStatus",
    "RenewalEvent",
    "RenewalStatus",
    "ReviewEvent",
    "ReviewKind",
    "ReviewStatus",
    "SubscriptionEvent",
    "SubscriptionStatus",
    "SwitchEvent",
    "SwitchStatus",
    "TransitionTable",
    "attempt_transition",
    "can_renewal_transition",
    "can_subscription_transition",
    "renewal_transition",
    "subscription_transition",
]


class SubscriptionStatus(StrEnum):
    ACTIVE = "active"
    ACTION_REQUIRED = "action_required"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"
    UNPAID = "unpaid"


class SubscriptionEvent(StrEnum):
    CHARGE_SUCCEEDED = "charge_succeeded"
    AUTHENTICATION_REQUIRED = "authentication_required"
    DECLINED = "declined"
    # The dunning or authentication timeline ran out (or a hard decline cut it short); which
    # event is sent comes from the configured FinalAction (dunning.FinalAction.event).
    FINAL_ACTION_CANCELED = "final_action_canceled"
    FINAL_ACTION_UNPAID = "final_action_unpaid"
    PAID_ON_SESSION = "paid_on_session"
    PAUSED_BY_OPERATOR = "paused_by_operator"
    RESUMED_BY_OPERATOR = "resumed_by_operator"
    CANCELED_BY_OPERATOR = "canceled_by_operator"


class RenewalStatus(StrEnum):
    PENDING = "pending"
    CHARGING = "charging"
    SUCCEEDED = "succeeded"
    REQUIRES_ACTION = "requires_action"
    RETRY_SCHEDULED = "retry_scheduled"
    FAILED = "failed"
    UNKNOWN = "unknown"


class RenewalEvent(StrEnum):
    CLAIMED = "claimed"
    RELEASED = "released"
    CHARGE_SUCCEEDED = "charge_succeeded"
    AUTHENTICATION_REQUIRED = "authentication_required"
    # A decline with a retry still scheduled by the dunning policy.
    DECLINED = "declined"
    # A hard decline, or the last retry declined: the final action follows.
    DECLINED_FINAL = "declined_final"
    NOT_SENT = "not_sent"
    OUTCOME_UNKNOWN = "outcome_unknown"
    RESOLVED_PAID = "resolved_paid"
    RESOLVED_NOT_CHARGED = "resolved_not_charged"
    # Only with trusted idempotency keys: the unknown attempt is re-sent with its own key, and
    # FastStar's answer (a replay of the first outcome, or the first execution) settles it.
    RESENT_SAME_KEY = "resent_same_key"
    PAID_ON_SESSION = "paid_on_session"
    ACTION_EXPIRED = "action_expired"
    ABANDONED = "abandoned"
    # The pre-charge checks refused the charge (I4): bad amount, detached card. Unlike
    # ``abandoned`` this is a failure the customer and the dunning timeline must hear of.
    REFUSED = "refused"


class AttemptStatus(StrEnum):
    # Row committed before the HTTP call; stays in_flight until the result is recorded.
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    REQUIRES_ACTION = "requires_action"
    DECLINED = "declined"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"
    # An operator established that the unknown attempt charged nothing; its key is retired
    # and the renewal gets a fresh attempt under a new key.
    NOT_CHARGED = "not_charged"


class AttemptEvent(StrEnum):
    CHARGE_SUCCEEDED = "charge_succeeded"
    AUTHENTICATION_REQUIRED = "authentication_required"
    DECLINED = "declined"
    NOT_SENT = "not_sent"
    OUTCOME_UNKNOWN = "outcome_unknown"
    RESENT = "resent"
    RESOLVED_PAID = "resolved_paid"
    RESOLVED_NOT_CHARGED = "resolved_not_charged"
    CLOSED_NOT_CHARGED = "closed_not_charged"


S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)


class IllegalTransition(Exception):
    """``event`` is not allowed in status ``current`` (see the tables in this module)."""

    def __init__(
        self, current: StrEnum, event: StrEnum, *, allowed: frozenset[StrEnum] = frozenset()
    ) -> None:
        self.current = current
        self.event = event
        self.allowed = allowed
        machine = type(current).__name__
        options = ", ".join(sorted(allowed)) if allowed else "none (terminal)"
        super().__init__(
            f"illegal {machine} transition: {current!s} does not accept {event!s}; "
            f"allowed events: {options}"
        )


class TransitionTable(Generic[S, E]):
    """An immutable ``status -> {event -> next status}`` table for one machine."""

    def __init__(
        self,
        status_type: type[S],
        event_type: type[E],
        table: Mapping[S, Mapping[E, S]],
    ) -> None:
        self.status_type = status_type
        self.event_type = event_type
        # Every status gets a row, empty for terminal ones, so lookups never KeyError.
        self._table: Mapping[S, Mapping[E, S]] = MappingProxyType(
            {status: MappingProxyType(dict(table.get(status, {}))) for status in status_type}
        )

    def __getitem__(self, status: S) -> Mapping[E, S]:
        return self._table[self.status_type(status)]

    def items(self) -> list[tuple[S, E, S]]:
        """Every allowed transition as ``(current, event, next)``."""
        return [(s, e, t) for s, row in self._table.items() for e, t in row.items()]

    @property
    def terminal(self) -> frozenset[S]:
        return frozenset(s for s, row in self._table.items() if not row)

    def events_from(self, current: S) -> frozenset[E]:
        return frozenset(self[current])

    def allows(self, current: S, event: E) -> bool:
        return self.event_type(event) in self[current]

    def apply(self, current: S, event: E) -> S:
        """The next status; raw strings (from a database) are accepted and validated."""
        current = self.status_type(current)
        event = self.event_type(event)
        row = self._table[current]
        try:
            return row[event]
        except KeyError:
            raise IllegalTransition(current, event, allowed=frozenset(row)) from None


_Sub = SubscriptionStatus
_SubE = SubscriptionEvent
_FINAL = {_SubE.FINAL_ACTION_CANCELED: _Sub.CANCELED, _SubE.FINAL_ACTION_UNPAID: _Sub.UNPAID}
_OPERATOR = {_SubE.PAUSED_BY_OPERATOR: _Sub.PAUSED, _SubE.CANCELED_BY_OPERATOR: _Sub.CANCELED}

SUBSCRIPTION_TRANSITIONS: TransitionTable[SubscriptionStatus, SubscriptionEvent] = TransitionTable(
    SubscriptionStatus,
    SubscriptionEvent,
    {
        _Sub.ACTIVE: {
            _SubE.CHARGE_SUCCEEDED: _Sub.ACTIVE,
            _SubE.AUTHENTICATION_REQUIRED: _Sub.ACTION_REQUIRED,
            _SubE.DECLINED: _Sub.PAST_DUE,
            **_FINAL,
            **_OPERATOR,
        },
        _Sub.ACTION_REQUIRED: {
            _SubE.PAID_ON_SESSION: _Sub.ACTIVE,
            **_FINAL,
            **_OPERATOR,
        },
        _Sub.PAST_DUE: {
            _SubE.CHARGE_SUCCEEDED: _Sub.ACTIVE,
            _SubE.AUTHENTICATION_REQUIRED: _Sub.ACTION_REQUIRED,
            # Further declines keep it past_due; the renewal carries the dunning position.
            _SubE.DECLINED: _Sub.PAST_DUE,
            _SubE.PAID_ON_SESSION: _Sub.ACTIVE,
            **_FINAL,
            **_OPERATOR,
        },
        # Resuming goes to active: open renewals keep their own status and next_attempt_at,
        # so a renewal that was mid-dunning resumes its schedule and moves the subscription
        # back to past_due on its next decline.
        _Sub.PAUSED: {
            _SubE.RESUMED_BY_OPERATOR: _Sub.ACTIVE,
            _SubE.CANCELED_BY_OPERATOR: _Sub.CANCELED,
        },
        # unpaid keeps the subscription (and its history) so the customer can still settle
        # on-session; nothing is charged off-session any more.
        _Sub.UNPAID: {
            _SubE.PAID_ON_SESSION: _Sub.ACTIVE,
            _SubE.CANCELED_BY_OPERATOR: _Sub.CANCELED,
        },
        _Sub.CANCELED: {},
    },
)

_Ren = RenewalStatus
_RenE = RenewalEvent

RENEWAL_TRANSITIONS: TransitionTable[RenewalStatus, RenewalEvent] = TransitionTable(
    RenewalStatus,
    RenewalEvent,
    {
        _Ren.PENDING: {
            _RenE.CLAIMED: _Ren.CHARGING,
            _RenE.ABANDONED: _Ren.FAILED,
            _RenE.REFUSED: _Ren.FAILED,
        },
        _Ren.CHARGING: {
            _RenE.CHARGE_SUCCEEDED: _Ren.SUCCEEDED,
            _RenE.AUTHENTICATION_REQUIRED: _Ren.REQUIRES_ACTION,
            _RenE.DECLINED: _Ren.RETRY_SCHEDULED,
            _RenE.DECLINED_FINAL: _Ren.FAILED,
            # Not sent: the same attempt is re-sent after a short backoff (dunning.NotSentBackoff).
            _RenE.NOT_SENT: _Ren.RETRY_SCHEDULED,
            _RenE.OUTCOME_UNKNOWN: _Ren.UNKNOWN,
            # Only when no attempt was sent (no row, or the row is provably unsent); an
            # in-flight attempt whose worker vanished is outcome_unknown instead.
            _RenE.RELEASED: _Ren.PENDING,
        },
        _Ren.RETRY_SCHEDULED: {
            _RenE.CLAIMED: _Ren.CHARGING,
            # The customer settled on-session (checkout link) during dunning.
            _RenE.PAID_ON_SESSION: _Ren.SUCCEEDED,
            _RenE.ABANDONED: _Ren.FAILED,
            _RenE.REFUSED: _Ren.FAILED,
        },
        _Ren.REQUIRES_ACTION: {
            _RenE.PAID_ON_SESSION: _Ren.SUCCEEDED,
            _RenE.ACTION_EXPIRED: _Ren.FAILED,
            _RenE.ABANDONED: _Ren.FAILED,
        },
        # I3: only reconciliation (incl. a trusted same-key replay) or an operator leaves
        # unknown; never a timer or a guess.
        _Ren.UNKNOWN: {
            _RenE.RESOLVED_PAID: _Ren.SUCCEEDED,
            _RenE.RESOLVED_NOT_CHARGED: _Ren.RETRY_SCHEDULED,
            _RenE.RESENT_SAME_KEY: _Ren.CHARGING,
        },
        _Ren.SUCCEEDED: {},
        # A period that failed can still be paid on-session while the subscription is unpaid
        # (the service checks the subscription; a canceled one makes it a refund due).
        _Ren.FAILED: {_RenE.PAID_ON_SESSION: _Ren.SUCCEEDED},
    },
)

# The renewal statuses no job works on any more (``failed`` only takes a late on-session
# payment, which arrives as a reported payment, never as scheduled work).
FINISHED_RENEWAL_STATUSES: frozenset[RenewalStatus] = frozenset(
    {RenewalStatus.SUCCEEDED, RenewalStatus.FAILED}
)

_Att = AttemptStatus
_AttE = AttemptEvent

ATTEMPT_TRANSITIONS: TransitionTable[AttemptStatus, AttemptEvent] = TransitionTable(
    AttemptStatus,
    AttemptEvent,
    {
        _Att.IN_FLIGHT: {
            _AttE.CHARGE_SUCCEEDED: _Att.SUCCEEDED,
            _AttE.AUTHENTICATION_REQUIRED: _Att.REQUIRES_ACTION,
            _AttE.DECLINED: _Att.DECLINED,
            _AttE.NOT_SENT: _Att.NOT_SENT,
            _AttE.OUTCOME_UNKNOWN: _Att.UNKNOWN,
        },
        _Att.NOT_SENT: {_AttE.RESENT: _Att.IN_FLIGHT},
        # Proven not charged means exactly "not sent": the same attempt may be sent again.
        _Att.UNKNOWN: {
            _AttE.RESOLVED_PAID: _Att.SUCCEEDED,
            _AttE.RESOLVED_NOT_CHARGED: _Att.NOT_SENT,
            # Trusted idempotency keys only: the same key is sent again (see RESENT_SAME_KEY).
            _AttE.RESENT: _Att.IN_FLIGHT,
            _AttE.CLOSED_NOT_CHARGED: _Att.NOT_CHARGED,
        },
        _Att.SUCCEEDED: {},
        _Att.REQUIRES_ACTION: {},
        _Att.DECLINED: {},
        _Att.NOT_CHARGED: {},
    },
)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class OutboxEvent(StrEnum):
    CLAIMED = "claimed"
    SENT = "sent"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    LEASE_EXPIRED = "lease_expired"


OUTBOX_TRANSITIONS: TransitionTable[OutboxStatus, OutboxEvent] = TransitionTable(
    OutboxStatus,
    OutboxEvent,
    {
        OutboxStatus.PENDING: {OutboxEvent.CLAIMED: OutboxStatus.SENDING},
        OutboxStatus.SENDING: {
            OutboxEvent.SENT: OutboxStatus.SENT,
            OutboxEvent.REJECTED: OutboxStatus.FAILED,
            OutboxEvent.DEFERRED: OutboxStatus.PENDING,
            OutboxEvent.LEASE_EXPIRED: OutboxStatus.PENDING,
        },
    },
)


class InboxStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"


class InboxEvent(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"


INBOX_TRANSITIONS: TransitionTable[InboxStatus, InboxEvent] = TransitionTable(
    InboxStatus,
    InboxEvent,
    {
        InboxStatus.PENDING: {
            InboxEvent.PROCESSED: InboxStatus.PROCESSED,
            InboxEvent.IGNORED: InboxStatus.IGNORED,
        },
    },
)


class ReviewKind(StrEnum):
    # A payment for a period we no longer bill (the subscription was canceled meanwhile).
    REFUND_DUE = "refund_due"
    # A payment that identifies none of our renewals, or several.
    UNMATCHED = "unmatched"
    # The final action after a 402 is due but FastStar has not answered about the renewal's
    # Checkout Sessions for a day: nothing is canceled without that answer.
    FINAL_ACTION_UNCONFIRMED = "final_action_unconfirmed"
    # FastStar reported a refund, or a dispute, of a payment (of ours, or unmatched): the
    # merchant's backend was told; an operator confirms what it means for the customer.
    REFUNDED = "refunded"
    DISPUTED = "disputed"


class ReviewStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class ReviewEvent(StrEnum):
    RESOLVED = "resolved"


REVIEW_TRANSITIONS: TransitionTable[ReviewStatus, ReviewEvent] = TransitionTable(
    ReviewStatus,
    ReviewEvent,
    {ReviewStatus.OPEN: {ReviewEvent.RESOLVED: ReviewStatus.RESOLVED}},
)


class CommandStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"


class CommandEvent(StrEnum):
    CLAIMED = "claimed"
    DONE = "done"
    REFUSED = "refused"
    FAILED = "failed"
    LEASE_EXPIRED = "lease_expired"


COMMAND_TRANSITIONS: TransitionTable[CommandStatus, CommandEvent] = TransitionTable(
    CommandStatus,
    CommandEvent,
    {
        CommandStatus.PENDING: {CommandEvent.CLAIMED: CommandStatus.RUNNING},
        CommandStatus.RUNNING: {
            CommandEvent.DONE: CommandStatus.DONE,
            CommandEvent.REFUSED: CommandStatus.REFUSED,
            CommandEvent.FAILED: CommandStatus.FAILED,
            # The command's effect and its ``done`` commit together, so a worker that died
            # while running left nothing behind: running it again is safe.
            CommandEvent.LEASE_EXPIRED: CommandStatus.PENDING,
        },
    },
)
# What ``--wait`` waits for.
FINISHED_COMMAND_STATUSES: frozenset[CommandStatus] = COMMAND_TRANSITIONS.terminal


class SwitchStatus(StrEnum):
    OFF = "off"
    ON = "on"


class SwitchEvent(StrEnum):
    SWITCHED_ON = "switched_on"
    SWITCHED_OFF = "switched_off"


SWITCH_TRANSITIONS: TransitionTable[SwitchStatus, SwitchEvent] = TransitionTable(
    SwitchStatus,
    SwitchEvent,
    {
        SwitchStatus.OFF: {SwitchEvent.SWITCHED_ON: SwitchStatus.ON},
        SwitchStatus.ON: {SwitchEvent.SWITCHED_OFF: SwitchStatus.OFF},
    },
)

# Off-session charges are allowed only here: active renews, past_due runs dunning retries.
# action_required waits for the customer on-session; paused/canceled/unpaid charge nothing.
CHARGEABLE_SUBSCRIPTION_STATUSES: frozenset[SubscriptionStatus] = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE}
)
TERMINAL_SUBSCRIPTION_STATUSES: frozenset[SubscriptionStatus] = SUBSCRIPTION_TRANSITIONS.terminal
TERMINAL_RENEWAL_STATUSES: frozenset[RenewalStatus] = RENEWAL_TRANSITIONS.terminal
# Unfinished work the sweep must keep rediscovering (I3: nothing stays stuck).
OPEN_RENEWAL_STATUSES: frozenset[RenewalStatus] = (
    frozenset(RenewalStatus) - FINISHED_RENEWAL_STATUSES
)
TERMINAL_ATTEMPT_STATUSES: frozenset[AttemptStatus] = ATTEMPT_TRANSITIONS.terminal
# Attempts that may still become a charge: at most one per renewal (partial unique index),
# and no new attempt is created while one exists (re-send it or reconcile it instead).
OPEN_ATTEMPT_STATUSES: frozenset[AttemptStatus] = (
    frozenset(AttemptStatus) - TERMINAL_ATTEMPT_STATUSES
)


def subscription_transition(
    current: SubscriptionStatus, event: SubscriptionEvent
) -> SubscriptionStatus:
    """The subscription's next status; raises :class:`IllegalTransition` if not allowed."""
    return SUBSCRIPTION_TRANSITIONS.apply(current, event)


def renewal_transition(current: RenewalStatus, event: RenewalEvent) -> RenewalStatus:
    """The renewal's next status; raises :class:`IllegalTransition` if not allowed."""
    return RENEWAL_TRANSITIONS.apply(current, event)


def attempt_transition(current: AttemptStatus, event: AttemptEvent) -> AttemptStatus:
    """The attempt's next status; raises :class:`IllegalTransition` if not allowed."""
    return ATTEMPT_TRANSITIONS.apply(current, event)


def can_subscription_transition(current: SubscriptionStatus, event: SubscriptionEvent) -> bool:
    return SUBSCRIPTION_TRANSITIONS.allows(current, event)


def can_renewal_transition(current: RenewalStatus, event: RenewalEvent) -> bool:
    return RENEWAL_TRANSITIONS.allows(current, event)
