"""The kinds of work the engine does, one per task: the sweep finds due rows of each kind and
hands their ids to the task of that kind (the table lives in :mod:`renewals.services.work`).

A renewal carries exactly one next job (``Renewal.wake`` at ``Renewal.wake_at``), so no job
can starve another: whatever a renewal needs next (its charge, a look at an unknown
outcome, or, while its customer must authenticate, the follow-up that polls its Checkout
Sessions, sends reminders and applies the final action) is that one job.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RENEWAL_WORK", "Work"]


class Work(StrEnum):
    # Renewal ids: send (or re-send with the same key) the period's charge.
    CHARGE = "charge"
    # Renewal ids: the janitor's look at an unknown outcome.
    RECHECK = "recheck"
    # Renewal ids: waiting for the customer after a 402: open or refresh the Checkout
    # Session, ask FastStar about every session opened, remind, apply the final action.
    FOLLOW_UP = "follow_up"
    # Inbox ids: a stored webhook event to apply.
    WEBHOOK = "webhook"
    # Outbox ids: an email to deliver.
    DELIVER = "deliver"
    # Merchant event ids: a signed webhook to the merchant's backend.
    MERCHANT_EVENT = "merchant_event"


RENEWAL_WORK: frozenset[Work] = frozenset({Work.CHARGE, Work.RECHECK, Work.FOLLOW_UP})
