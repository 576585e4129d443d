"""The one owner of state: every status change of a subscription, renewal, charge attempt,
outbox message, inbox event and payment review passes through this package.

Each function applies the transition table of :mod:`renewals.domain.states` (an illegal
move raises :class:`~renewals.domain.states.IllegalTransition`), stamps the times, sets or
clears the renewal's one next job (``wake``/``wake_at``) and its lease, and writes the audit
row (actor, reason, before and after) in the caller's transaction. Batches (the sweep's)
go through the ``*_many`` functions, which write their audit rows in bulk.

Nothing else in the package assigns a status: ``tests/test_state_owner.py`` parses every
module and fails on an assignment to ``.status`` or a ``status=`` value outside this package.
"""

from renewals.services.transitions._audit import note
from renewals.services.transitions.billing import (
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
from renewals.services.transitions.messages import (
    expire_sending_leases,
    move_inbox,
    move_outbox,
    open_review,
    queue_message,
    resolve_review,
    resolve_reviews_for_payment,
    store_inbox_event,
)

__all__ = [
    "Wake",
    "create_renewals",
    "create_subscription",
    "expire_charging_leases",
    "expire_sending_leases",
    "move_attempt",
    "move_inbox",
    "move_outbox",
    "move_renewal",
    "move_subscription",
    "move_subscriptions",
    "new_attempt",
    "note",
    "open_review",
    "queue_message",
    "reschedule",
    "resolve_review",
    "resolve_reviews_for_payment",
    "store_inbox_event",
]
