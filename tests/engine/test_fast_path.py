"""PostgreSQL's one-statement charge writes (renewals.transitions.fast_path) against the ORM
path they replace: the same scenario runs once each way on an emptied database (ids restart
at 1, the clock is the same, FastStar's answers are given), and every row written must be the
same, column for column. Races lost during the call must fall back and book nothing twice."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from renewals import transitions
from renewals.config import Settings
from renewals.domain.states import SubscriptionEvent
from renewals.domain.work import Work
from renewals.faststar import ChargeOutcome, Declined, Paid
from renewals.models import (
    AuditEvent,
    ChargeAttempt,
    MerchantEvent,
    OutboxMessage,
    PaymentReview,
    Renewal,
    Subscription,
)
from renewals.models.db import unit_of_work
from renewals.services.charge_checks import ChargeOrder
from renewals.services.followups import FollowUps
from renewals.services.subscriptions import SavedCard
from renewals.transitions import fast_path
from renewals.transitions.merchant_events import enable_merchant_events
from tests.support.databases import truncate_all
from tests.support.factories import Clock
from tests.support.scenarios import begin, record, subscribe, sweep_only

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

CARD = SavedCard("cus_fastpath", "pm_fastpath", "visa", "4242", 12, 2030)
PAID = Paid(
    payment_intent_id="pi_fastpath_1",
    amount=1999,
    currency="USD",
    payment_method_id=CARD.payment_method_id,
)
SOFT_DECLINE = Declined(
    reason_code="insufficient_funds", message="Insufficient funds", http_status=402
)
TABLES = (
    Subscription,
    Renewal,
    ChargeAttempt,
    AuditEvent,
    OutboxMessage,
    PaymentReview,
    MerchantEvent,
)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    sent: list[str] = []

    def record_statement(*args: Any) -> None:
        sent.append(str(args[2]).split()[0].upper())

    event.listen(engine, "before_cursor_execute", record_statement)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record_statement)


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row the charge path writes, by table and id; idempotency keys are random."""
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for model in TABLES:
            table = model.__table__
            found = conn.execute(select(table).order_by(table.c.id)).mappings().all()
            rows[table.name] = [_comparable(dict(row)) for row in found]
    return rows


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    # Idempotency keys and merchant event ids are random; the rest must match exactly.
    if "idempotency_key" in row:
        row["idempotency_key"] = "<key>"
    if "event_id" in row:
        row["event_id"] = "<evt>"
        body = json.loads(row["body"])
        row["body"] = body | {"id": "<evt>"}
    return row


class Run:
    """One scenario's steps on one database, with a settable clock and given outcomes."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine, self.settings, self.clock = engine, settings, Clock()

    def subscribe(self) -> int:
        return subscribe(self.engine, self.settings, CARD, renews_at=self.clock.now)

    def claim(self) -> int:
        [renewal_id] = sweep_only(self.engine, self.settings, self.clock).ids(Work.CHARGE)
        return renewal_id

    def begin(self, renewal_id: int) -> ChargeOrder:
        return begin(self.engine, self.settings, self.clock, renewal_id)

    def record(self, order: ChargeOrder, outcome: ChargeOutcome) -> FollowUps:
        return record(self.engine, self.settings, self.clock, order, outcome)


def paid_first_period(run: Run) -> list[FollowUps]:
    run.subscribe()
    order = run.begin(run.claim())
    return [run.record(order, PAID)]


def paid_in_dunning_on_an_operators_retry(run: Run) -> list[FollowUps]:
    """past_due → active: the subscription's own audit row; the attempt is the operator's."""
    run.subscribe()
    renewal_id = run.claim()
    run.record(run.begin(renewal_id), SOFT_DECLINE)
    with unit_of_work(run.engine) as session:
        renewal = session.get_one(Renewal, renewal_id)
        renewal.retry_requested_by = "operator:ada"
        due = renewal.wake_at
    assert due is not None
    run.clock.now = due
    order = run.begin(run.claim())
    return [run.record(order, PAID)]


def paid_after_the_lease_expired(run: Run) -> list[FollowUps]:
    """The sweep gave the lease up during the call (renewal and attempt ``unknown``): the
    late "paid" is still booked, once, and a second delivery of it books nothing."""
    run.subscribe()
    order = run.begin(run.claim())
    run.clock.advance(seconds=run.settings.lease_seconds + 1)
    sweep_only(run.engine, run.settings, run.clock)
    return [run.record(order, PAID), run.record(order, PAID)]


def paid_after_an_operator_paused(run: Run) -> list[FollowUps]:
    """The payment is booked on the renewal; the operator's pause stands."""
    sub_id = run.subscribe()
    order = run.begin(run.claim())
    with unit_of_work(run.engine) as session:
        transitions.move_subscription(
            session,
            session.get_one(Subscription, sub_id),
            SubscriptionEvent.PAUSED_BY_OPERATOR,
            now=run.clock(),
            actor="operator:ada",
        )
    return [run.record(order, PAID)]


SCENARIOS: dict[str, Callable[[Run], list[FollowUps]]] = {
    "first period": paid_first_period,
    "dunning, operator's retry": paid_in_dunning_on_an_operators_retry,
    "lease expired": paid_after_the_lease_expired,
    "paused meanwhile": paid_after_an_operator_paused,
}


@pytest.fixture
def row_by_row(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    def switch() -> None:
        monkeypatch.setattr(fast_path, "supported", lambda session: False)

    return switch


@pytest.mark.parametrize(
    ("scenario", "receipts", "merchant_events"),
    [(name, True, False) for name in SCENARIOS]
    + [("first period", False, False)]
    + [(name, True, True) for name in SCENARIOS],
    ids=[*SCENARIOS, "first period, no receipts", *(f"{n}, merchant events" for n in SCENARIOS)],
)
def test_one_statement_writes_the_same_rows_as_the_orm_path(
    engine: Engine,
    settings: Settings,
    database_url: str,
    row_by_row: Callable[[], None],
    scenario: str,
    receipts: bool,
    merchant_events: bool,
) -> None:
    settings = settings.model_copy(update={"send_receipts": receipts})
    enable_merchant_events(engine, merchant_events)
    with statements(engine) as sent:
        lean_follow = SCENARIOS[scenario](Run(engine, settings))
    assert "WITH" in sent  # the one-statement path really ran
    lean = snapshot(engine)

    truncate_all(database_url)
    row_by_row()
    with statements(engine) as sent:
        careful_follow = SCENARIOS[scenario](Run(engine, settings))
    assert "WITH" not in sent
    assert snapshot(engine) == lean
    assert [f.work for f in careful_follow] == [f.work for f in lean_follow]
    assert len(lean["outbox_messages"]) == (1 if receipts else 0) + (
        1 if scenario == "dunning, operator's retry" else 0
    )
    told = [e["type"] for e in lean["merchant_events"]]
    if not merchant_events:
        assert told == []
    elif scenario == "dunning, operator's retry":
        assert told == ["subscription.past_due", "subscription.renewed"]
    elif scenario == "paused meanwhile":
        # The pause stands, so the subscription makes no transition to tell of.
        assert told == ["subscription.paused"]
    else:
        assert told == ["subscription.renewed"]


def test_a_race_lost_during_the_call_writes_nothing_in_one_statement_and_books_once(
    engine: Engine, settings: Settings
) -> None:
    run = Run(engine, settings)
    run.subscribe()
    order = run.begin(run.claim())
    run.clock.advance(seconds=settings.lease_seconds + 1)
    sweep_only(engine, settings, run.clock)  # the renewal and its attempt become unknown
    before = snapshot(engine)
    with unit_of_work(engine) as session:
        assert (
            fast_path.book_paid_charge(
                session,
                renewal_id=order.renewal_id,
                attempt_id=order.attempt_id,
                payment_intent_id=PAID.payment_intent_id,
                now=run.clock(),
                actor="worker",
                receipt=None,
            )
            is None
        )
    assert snapshot(engine) == before

    first, second = paid_twice = [run.record(order, PAID), run.record(order, PAID)]
    assert second.work == [] and len(first.work) == 1, paid_twice
    rows = snapshot(engine)
    [attempt] = rows["charge_attempts"]
    assert (attempt["status"], attempt["payment_intent_id"]) == ("succeeded", "pi_fastpath_1")
    [renewal] = rows["renewals"]
    assert (renewal["status"], renewal["payment_intent_id"]) == ("succeeded", "pi_fastpath_1")
    assert [m["kind"] for m in rows["outbox_messages"]] == ["receipt"]
    actions = [a["action"] for a in rows["audit_events"] if a["renewal_id"] is not None]
    assert actions == [
        "renewal_created",
        "renewal_claimed",
        "renewal_outcome_unknown",
        "renewal_resolved_paid",
    ]


def test_a_paid_renewal_moves_the_subscription_on_in_the_same_statement(
    engine: Engine, settings: Settings
) -> None:
    run = Run(engine, settings)
    sub_id = run.subscribe()
    order = run.begin(run.claim())
    with statements(engine) as sent:
        follow = run.record(order, PAID)
    assert sent == ["WITH"]
    with unit_of_work(engine) as session:
        sub = session.get_one(Subscription, sub_id)
        renewal = session.get_one(Renewal, order.renewal_id)
        assert sub.current_period_start == renewal.period_start
        assert sub.current_period_end == renewal.period_end
        [receipt_id] = follow.ids(Work.DELIVER)
        receipt = session.get_one(OutboxMessage, receipt_id)
        assert receipt.context["payment_intent_id"] == "pi_fastpath_1"
        assert receipt.recipient == f"{CARD.customer_id}@example.com"
