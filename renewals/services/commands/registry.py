"""The one table of operator commands: name -> JSON arguments and the code that runs it.

The README documents the same table (task name and arguments); a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from renewals.domain.commands import CommandName
from renewals.services.commands import engine, payments, subscriptions
from renewals.services.commands.base import Command, Field

_REASON = {"reason": Field(str)}
_SUB = {"subscription_id": Field(int, required=True), **_REASON}

COMMANDS: Mapping[CommandName, Command] = MappingProxyType(
    {
        CommandName.SWEEP: Command(fields={}, run=engine.sweep, dry_run=False),
        CommandName.RETRY: Command(fields=_SUB, run=subscriptions.retry),
        CommandName.PAUSE: Command(fields=_SUB, run=subscriptions.pause),
        CommandName.RESUME: Command(fields=_SUB, run=subscriptions.resume),
        CommandName.CANCEL: Command(
            fields={**_SUB, "at_period_end": Field(bool)},
            run=subscriptions.cancel,
            prepare=subscriptions.prepare_cancel,
        ),
        CommandName.RESEND_EMAIL: Command(
            fields={"message_id": Field(int, required=True), **_REASON}, run=engine.resend_email
        ),
        CommandName.RECONCILE: Command(
            fields={
                "renewal_id": Field(int, required=True),
                "paid": Field(str),
                "not_charged": Field(bool),
                **_REASON,
            },
            run=payments.reconcile,
            check=payments.check_reconcile,
        ),
        CommandName.RESOLVE_REVIEW: Command(
            fields={
                "review_id": Field(int, required=True),
                "resolution": Field(str, required=True),
                "renewal_id": Field(int),
                "reason": Field(str, required=True),
            },
            run=payments.resolve_review,
            check=payments.check_resolve_review,
        ),
        CommandName.HALT: Command(fields=_REASON, run=engine.halt),
        CommandName.UNHALT: Command(fields=_REASON, run=engine.unhalt),
    }
)
