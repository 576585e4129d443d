"""I4 (bad input never reaches FastStar), I1 under duplication, I3 after a crash, and the
period schedule and catch-up policy through the sweep. SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, update

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.models import AuditEvent, ChargeAttempt, PaymentMethod, Renewal, Subscription
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.charge_checks import ChargeOrder, begin_charge
from renewals.services.charging import charge_renewal
from renewals.services.sweep import sweep
from tests.support.factories import Clock
from tests.support.inline import audit_actions, run_sweep, view


def _claim(engine: Engine, settings: Settings, clock: Clock) -> list[int]:
    with unit_of_work(engine) as session:
        return sweep(session, now=clock(), settings=settings).ids(Work.CHARGE)


def _refusal(engine: Engine, sub_id: int) -> str | None:
    with unit_of_work(engine) as session:
        return session.scalar(
            select(AuditEvent.reason).where(
                AuditEvent.subscription_id == sub_id,
                AuditEvent.action.in_(["renewal_refused", "renewal_abandoned"]),
            )
        )


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("amount", 0, "amount"),
        ("amount", -500, "amount"),
        ("amount", 5_000_000, "cap"),
        ("currency", "XYZ", "currency"),
        ("currency", "usd", "currency"),
    ],
)
def test_bad_amounts_and_currencies_never_reach_faststar(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
    column: str,
    value: object,
    reason: str,
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    [renewal_id] = _claim(engine, settings, clock)
    # The renewal's price went bad after it was materialised (a bad migration, a bad edit).
    with unit_of_work(engine) as session:
        session.execute(update(Renewal).where(Renewal.id == renewal_id).values({column: value}))

    charge_renewal(engine, faststar, renewal_id, clock=clock, settings=settings)

    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "failed"
    assert renewal["attempts"] == []
    assert reason in (renewal["last_error"] or "")
    assert sandbox.charges() == []
    assert reason in (_refusal(engine, sub_id) or "")


def test_detached_card_and_canceled_subscription_are_refused_under_lock(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    detached = make_subscription("success", renews_at=clock.now)
    canceled = make_subscription("success", renews_at=clock.now)
    claimed = _claim(engine, settings, clock)
    assert len(claimed) == 2
    # Between claim and charge: the card is detached, the subscription canceled.
    with unit_of_work(engine) as session:
        card_id = session.get_one(Subscription, detached).payment_method_id
        session.execute(
            update(PaymentMethod).where(PaymentMethod.id == card_id).values(detached_at=clock())
        )
        session.get_one(Subscription, canceled).status = "canceled"  # type: ignore[assignment]

    for renewal_id in claimed:
        charge_renewal(engine, faststar, renewal_id, clock=clock, settings=settings)

    assert sandbox.charges() == []
    assert "detached" in (_refusal(engine, detached) or "")
    assert "canceled" in (_refusal(engine, canceled) or "")
    for sub_id in (detached, canceled):
        assert view(engine, sub_id)["renewals"][0]["status"] == "failed"


def test_the_same_charge_task_five_times_at_once_charges_once(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    [renewal_id] = _claim(engine, settings, clock)
    sandbox.configure(latency_ms=200)  # keep the first call in flight while the others run
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            with FastStarClient(settings.faststar_base_url, sandbox.api_key) as client:
                barrier.wait()
                charge_renewal(engine, client, renewal_id, clock=clock, settings=settings)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    sub = view(engine, sub_id)
    [renewal] = sub["renewals"]
    assert renewal["status"] == "succeeded"
    assert len(renewal["attempts"]) == 1
    assert len(sandbox.charges()) == 1


def test_two_sweeps_at_once_create_one_renewal_and_claim_it_once(
    engine: Engine, settings: Settings, clock: Clock, make_subscription: Callable[..., int]
) -> None:
    subs = [make_subscription("success", renews_at=clock.now) for _ in range(6)]
    barrier = threading.Barrier(2)
    claims: list[list[int]] = []

    def one_sweep() -> None:
        barrier.wait()
        claims.append(_claim(engine, settings, clock))

    threads = [threading.Thread(target=one_sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    claimed = [rid for claim in claims for rid in claim]
    assert sorted(claimed) == sorted(set(claimed))  # no renewal claimed by both
    with unit_of_work(engine) as session:
        counts = session.execute(
            select(Renewal.subscription_id, func.count()).group_by(Renewal.subscription_id)
        ).all()
    assert sorted(counts) == [(s, 1) for s in sorted(subs)]
    assert len(claimed) == len(subs)


def test_crash_after_the_attempt_commit_is_unknown_never_recharged(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    sub_id = make_subscription("success", renews_at=clock.now)
    [renewal_id] = _claim(engine, settings, clock)
    with unit_of_work(engine) as session:  # the worker commits its attempt, then dies
        order = begin_charge(session, renewal_id, now=clock(), settings=settings)
    assert isinstance(order, ChargeOrder)

    # Redelivered at once: the attempt is in flight, so nothing is sent.
    charge_renewal(engine, faststar, renewal_id, clock=clock, settings=settings)
    assert sandbox.charges() == []
    # The lease outlives the dead worker; then the sweep says what is true: unknown.
    clock.advance(seconds=settings.lease_seconds + 1)
    run_sweep(engine, faststar, settings, clock)
    clock.advance(hours=1)
    run_sweep(engine, faststar, settings, clock)
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "unknown"
    assert [a["status"] for a in renewal["attempts"]] == ["unknown"]
    assert sandbox.charges() == []
    assert "renewal_outcome_unknown" in audit_actions(engine, sub_id)


def test_monthly_renewals_follow_the_anchor_through_short_months(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    make_subscription: Callable[..., int],
) -> None:
    anchor = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)
    clock = Clock(anchor)
    sub_id = make_subscription("success", renews_at=anchor)
    expected = [
        datetime(2024, 1, 31, 12, tzinfo=UTC),
        datetime(2024, 2, 29, 12, tzinfo=UTC),
        datetime(2024, 3, 31, 12, tzinfo=UTC),
        datetime(2024, 4, 30, 12, tzinfo=UTC),
        datetime(2024, 5, 31, 12, tzinfo=UTC),
    ]
    for start in expected:
        clock.now = start
        run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    assert [r["period_start"] for r in sub["renewals"]] == [d.isoformat() for d in expected]
    assert all(r["status"] == "succeeded" for r in sub["renewals"])
    assert sub["next_renewal_at"] == datetime(2024, 6, 30, 12, tzinfo=UTC).isoformat()


def test_catch_up_after_downtime_charges_only_the_latest_missed_period(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    anchor = datetime(2026, 1, 15, tzinfo=UTC)
    sub_id = make_subscription("success", renews_at=anchor, interval="week")
    clock = Clock(anchor + timedelta(weeks=3, days=2))  # down for three weeks
    run_sweep(engine, faststar, settings, clock)
    run_sweep(engine, faststar, settings, clock)
    sub = view(engine, sub_id)
    [renewal] = sub["renewals"]
    assert renewal["period_index"] == 3
    assert renewal["period_start"] == (anchor + timedelta(weeks=3)).isoformat()
    assert len(sandbox.charges()) == 1
    with unit_of_work(engine) as session:
        skipped = session.scalar(
            select(AuditEvent.details).where(
                AuditEvent.subscription_id == sub_id, AuditEvent.action == "renewal_created"
            )
        )
    assert skipped is not None and skipped["skipped_periods"] == [0, 1, 2]


def test_attempt_constraints_allow_one_open_attempt_per_renewal(
    engine: Engine, settings: Settings, clock: Clock, make_subscription: Callable[..., int]
) -> None:
    from sqlalchemy.exc import IntegrityError

    make_subscription("success", renews_at=clock.now)
    [renewal_id] = _claim(engine, settings, clock)
    with unit_of_work(engine) as session:
        order = begin_charge(session, renewal_id, now=clock(), settings=settings)
    assert isinstance(order, ChargeOrder)
    with pytest.raises(IntegrityError), unit_of_work(engine) as session:
        session.add(
            ChargeAttempt(
                renewal_id=renewal_id,
                number=2,
                idempotency_key="rnw_second",
                status="in_flight",
                amount=1999,
                currency="USD",
                sends=1,
                created_at=clock(),
            )
        )
