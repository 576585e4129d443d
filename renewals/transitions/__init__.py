"""The one owner of state: every status change of a subscription, renewal, charge attempt,
outbox message, merchant event, inbox event, payment review, operator command and switch
passes through this package, as do the refunds and disputes recorded on a renewal.

Each function applies the transition table of :mod:`renewals.domain.states` (an illegal
move raises :class:`~renewals.domain.states.IllegalTransition`), stamps the times, sets or
clears the renewal's one next job (``wake``/``wake_at``) and its lease, and writes the audit
row (actor, reason, before and after) in the caller's transaction. Batches (the sweep's:
``create_renewals``, ``expire_charging_leases``, ``expire_sending_leases``) are set-based
statements whose audit rows are written in bulk in the next statement.

It sits below services and notifications (it needs only the models and the domain), so
both can use it and the imports keep pointing one way.

Nothing else in the package assigns a status: ``tests/test_state_owner.py`` parses every
module and fails on an assignment to ``.status`` or a ``status=`` value outside this package.
"""

from renewals.transitions._audit import note
from renewals.transitions.adjustments import record_dispute, record_refund
from renewals.transitions.billing import (
    Wake,
    create_renewals,
    create_subscription,
    expire_charging_leases,
    move_attempt,
    move_renewal,
    move_subscription,
    move_subscriptions,
    new_attempt,
    reschedule,
)
from renewals.transitions.merchant_events import (
    enable_merchant_events,
    expire_merchant_event_leases,
    insert_merchant_events,
    merchant_event_row,
    move_merchant_event,
)
from renewals.transitions.messages import (
    expire_sending_leases,
    move_inbox,
    move_outbox,
    open_review,
    queue_message,
    resolve_review,
    resolve_reviews_for_payment,
    store_inbox_event,
)
from renewals.transitions.operations import (
    create_command,
    lock_switch,
    lost_commands,
    move_command,
    move_switch,
)
from renewals.transitions.outbox_batch import (
    ClaimedMessage,
    SendOutcome,
    claim_messages,
    record_outcomes,
)
from renewals.transitions.subscriptions_bulk import (
    create_staged_subscriptions,
    create_subscriptions,
)

__all__ = [
    "ClaimedMessage",
    "SendOutcome",
    "Wake",
    "claim_messages",
    "create_command",
    "create_renewals",
    "create_staged_subscriptions",
    "create_subscription",
    "create_subscriptions",
    "enable_merchant_events",
    "expire_charging_leases",
    "expire_merchant_event_leases",
    "expire_sending_leases",
    "insert_merchant_events",
    "lock_switch",
    "lost_commands",
    "merchant_event_row",
    "move_attempt",
    "move_command",
    "move_inbox",
    "move_merchant_event",
    "move_outbox",
    "move_renewal",
    "move_subscription",
    "move_subscriptions",
    "move_switch",
    "new_attempt",
    "note",
    "open_review",
    "queue_message",
    "record_dispute",
    "record_outcomes",
    "record_refund",
    "reschedule",
    "resolve_review",
    "resolve_reviews_for_payment",
    "store_inbox_event",
]
