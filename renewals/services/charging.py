"""Charging one renewal: check under lock, commit the attempt, call FastStar, record.

Three steps, and no transaction is open during the HTTP call:

1. :func:`~renewals.services.charge_checks.begin_charge` locks the renewal, re-checks
   everything, and commits a charge attempt with its idempotency key and the renewal in
   ``charging``; or it holds, skips or refuses the charge before anything reaches FastStar.
2. The charge is sent.
3. :func:`~renewals.services.charge_outcomes.record_outcome` records the classified outcome
   on the attempt, the renewal and the subscription, with any email in the outbox.

A paid renewal costs three statements on PostgreSQL (a locking read and one statement in the
first transaction, one in the second: see :mod:`renewals.transitions.fast_path`).

If the worker dies between 1 and 3 the renewal stays ``charging`` until its lease expires;
the sweep then marks it ``unknown`` (I3), since nobody can tell whether FastStar saw the call.
Every status change goes through :mod:`renewals.transitions`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import Engine

from renewals.config import Settings
from renewals.crashpoints import crash_point
from renewals.faststar import FastStarClient, FastStarConfigurationError
from renewals.models.db import unit_of_work
from renewals.services.charge_checks import Refused, Skipped, begin_charge
from renewals.services.charge_outcomes import record_configuration_error, record_outcome
from renewals.services.followups import FollowUps

log = structlog.get_logger(__name__)


def charge_renewal(
    engine: Engine,
    client: FastStarClient,
    renewal_id: int,
    *,
    clock: Callable[[], datetime],
    settings: Settings,
) -> FollowUps:
    """Steps 1 to 3 for one renewal. No transaction is open while FastStar is called."""
    with unit_of_work(engine) as session:
        order = begin_charge(session, renewal_id, now=clock(), settings=settings)
    if isinstance(order, Refused):
        return order.follow
    if isinstance(order, Skipped):
        log.debug("charge_skipped", renewal_id=renewal_id, reason=order.reason)
        return FollowUps()
    crash_point("after_attempt_commit")
    try:
        outcome = client.charge_off_session(
            order.customer_id,
            order.payment_method_id,
            order.amount,
            order.currency,
            idempotency_key=order.idempotency_key,
        )
    except FastStarConfigurationError as exc:
        with unit_of_work(engine) as session:
            record_configuration_error(session, order, str(exc), now=clock())
        raise
    with unit_of_work(engine) as session:
        return record_outcome(session, order, outcome, now=clock(), settings=settings)
