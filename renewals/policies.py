"""The settings that shape the money paths, parsed once into the domain's typed policies.

Services ask :func:`policies` rather than re-parsing strings from the settings on every
call; the result is cached per (immutable) settings object.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

from renewals.config import Settings
from renewals.domain.dunning import (
    ActionRequiredPolicy,
    DunningPolicy,
    FinalAction,
    NotSentBackoff,
    parse_day_list,
)
from renewals.domain.reconciliation import UnknownRecheckPolicy

# An event naming a payment we have not recorded yet is looked at again this often, for
# this long, before it becomes a review: the worker recording its own call is usually the
# one that settles it.
EVENT_RETRY_DELAY = timedelta(seconds=60)
EVENT_WAIT_LIMIT = timedelta(minutes=15)
# How long the final action after a 402 may wait for FastStar to answer about the renewal's
# Checkout Sessions before operators are asked to look; it keeps waiting all the same.
FINAL_ACTION_ANSWER_LIMIT = timedelta(hours=24)
# After the final action, an open Checkout Session is asked about once more this long after
# it expires (a payment at its last moment is then reported as complete).
LATE_WATCH_MARGIN = timedelta(minutes=1)
# A paid session that went to a review (an operator must decide) is looked at again this
# often, so the renewal neither expires around the payment nor is asked about every lease.
REVIEW_RECHECK = timedelta(hours=1)
# How soon a follow-up that could not reach FastStar tries again.
FOLLOW_UP_RETRY_DELAY = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Policies:
    dunning: DunningPolicy
    action_required: ActionRequiredPolicy
    unknown_recheck: UnknownRecheckPolicy
    not_sent: NotSentBackoff
    final_action: FinalAction
    # Polling of open Checkout Sessions for deployments without webhooks (None: off).
    checkout_poll: timedelta | None
    lease: timedelta


@functools.cache
def policies(settings: Settings) -> Policies:
    final_action = FinalAction(settings.final_action)
    return Policies(
        dunning=DunningPolicy(retry_days=settings.dunning_days, final_action=final_action),
        action_required=ActionRequiredPolicy(
            reminder_days=parse_day_list(settings.action_reminder_days, name="reminder days"),
            expire_after_days=settings.action_expire_days,
            final_action=final_action,
        ),
        unknown_recheck=settings.unknown_recheck_policy,
        not_sent=NotSentBackoff(),
        final_action=final_action,
        checkout_poll=(
            timedelta(seconds=settings.checkout_poll_interval)
            if settings.checkout_poll_interval
            else None
        ),
        lease=timedelta(seconds=settings.lease_seconds),
    )
