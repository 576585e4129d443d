"""The outbox delivered in batches (:mod:`renewals.notifications.batch`) for the worker's
batch task: each email handed on by a service is sent by whichever batch claims it first."""

from __future__ import annotations

from renewals.notifications.batch import Batch, deliver_batch
from renewals.services.work import Deps


def deliver_due_emails(d: Deps) -> Batch:
    """One batch of due emails; ``.full`` when more may be due."""
    return deliver_batch(d.engine, clock=d.clock, settings=d.settings, sender=d.sender)
