"""A charge message delivered again while its charge is in flight (the visibility-timeout
scenario of tests/chaos, in-process): nothing is sent, and the audit trail says so."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.charge_checks import ChargeOrder, Skipped, begin_charge
from renewals.services.charging import charge_renewal
from renewals.services.redelivery import REASON, REFUSED
from renewals.services.sweep import sweep
from tests.support.factories import Clock
from tests.support.inline import audit_actions


def test_a_charge_redelivered_by_the_visibility_timeout_is_refused_in_the_audit(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    with unit_of_work(engine) as session:
        [renewal_id] = sweep(session, now=clock(), settings=settings).ids(Work.CHARGE)
    with unit_of_work(engine) as session:  # the first delivery, now waiting for FastStar
        assert isinstance(
            begin_charge(session, renewal_id, now=clock(), settings=settings), ChargeOrder
        )

    with unit_of_work(engine) as session:
        assert begin_charge(session, renewal_id, now=clock(), settings=settings) == Skipped(REASON)
    charge_renewal(engine, faststar, renewal_id, clock=clock, settings=settings)

    assert sandbox.charges() == []
    actions = audit_actions(engine, sub_id)
    assert actions.count("renewal_claimed") == 1
    assert actions.count(REFUSED) == 2
