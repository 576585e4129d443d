"""A model of the engine's world, driven step by step: the engine in-process (the services of
``renewals.services.work.SERVICES``, the sweep, the operator commands' runner), a settable
clock, the real sandbox over a socket, and a "broker" that is a plain list of messages the
model delivers, loses, delivers twice or delivers to a worker that dies halfway.

``test_engine_model.py`` lets Hypothesis choose the steps; the regression tests there replay
the steps it found by calling the same methods. :func:`assert_invariants` is checked after
every step; :meth:`EngineModel.settle` runs the engine until nothing is due, after which
:func:`assert_settled` adds what must hold once everything has been heard of.

The sandbox's clock follows the model's (``SandboxTime``): Checkout Sessions expire, and
charges carry ``created`` times, on the same timeline the engine sees.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine, select, update

from renewals.config import Settings
from renewals.domain.states import (
    ATTEMPT_TRANSITIONS,
    FINISHED_RENEWAL_STATUSES,
    RENEWAL_TRANSITIONS,
    SUBSCRIPTION_TRANSITIONS,
    IllegalTransition,
    InboxStatus,
    OutboxStatus,
    RenewalStatus,
    SubscriptionStatus,
)
from renewals.domain.work import Work
from renewals.faststar import FastStarClient, WebhookEvent
from renewals.models import (
    AuditEvent,
    ChargeAttempt,
    CheckoutSessionRecord,
    InboxEvent,
    OperatorCommand,
    OutboxMessage,
    PaymentMethod,
    PaymentReview,
    Renewal,
    Subscription,
)
from renewals.models.db import create_db_engine, unit_of_work
from renewals.sandbox import api_catalog, api_checkout, api_customers, state
from renewals.sandbox.cards import ChargeBehaviour
from renewals.sandbox.testing import RunningSandbox
from renewals.services.charge_checks import ChargeOrder, begin_charge
from renewals.services.commands import run_command, submit
from renewals.services.sweep import sweep
from renewals.services.work import SERVICES
from renewals.webhooks.inbox import store_event
from tests.support import scenarios as sc
from tests.support.databases import fresh_sqlite_url, truncate_all
from tests.support.factories import CARDS, Clock, save_sandbox_card
from tests.support.inline import deps

OPERATOR = "operator:model"
START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
# The behaviours a card can be switched to (the sandbox's test cards, by what they do).
BEHAVIOURS: dict[str, ChargeBehaviour] = {
    "success": ChargeBehaviour.SUCCEEDS,
    "sca": ChargeBehaviour.AUTHENTICATION_REQUIRED,
    "declined": ChargeBehaviour.CARD_DECLINED,
    "insufficient_funds": ChargeBehaviour.INSUFFICIENT_FUNDS,
    "error_500": ChargeBehaviour.FAILS_BEFORE_CHARGE,
    "lost_response": ChargeBehaviour.DROPS_AFTER_CHARGE,
    "error_after_charge": ChargeBehaviour.FAILS_AFTER_CHARGE,
}


class SandboxTime:
    """The sandbox's ``now()`` (its unix seconds) read from the model's clock while a model
    runs, and from the real clock otherwise."""

    def __init__(self) -> None:
        self.clock: Callable[[], datetime] | None = None

    def now(self) -> int:
        if self.clock is None:
            return int(time.time())
        return int(self.clock().timestamp())


@contextmanager
def sandbox_follows(time_source: SandboxTime) -> Iterator[None]:
    """Point the sandbox modules' ``now`` at ``time_source`` for the duration."""
    modules = (state, api_catalog, api_checkout, api_customers)
    saved = [module.now for module in modules]
    for module in modules:
        module.now = time_source.now  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.now = original  # type: ignore[assignment]


@dataclass
class World:
    """What every model instance shares: the running sandbox, a migrated SQLite template,
    a folder for databases, the sandbox's time source, and PostgreSQL if asked for."""

    sandbox: RunningSandbox
    sqlite_template: Path
    folder: Path
    time: SandboxTime
    postgres_url: str | None = None


@dataclass(frozen=True)
class Detached:
    """What had been sent on a subscription's card when our records learnt it was detached:
    sends per attempt, and charges in FastStar's ledger. Neither may grow after."""

    sends: dict[int, int]
    charges: int


@dataclass
class Customer:
    """One subscription of the model and its card."""

    subscription_id: int
    customer_id: str
    payment_method_id: str  # pm_…
    paid_sessions: set[str] = field(default_factory=set)


class EngineModel:
    """One world: a fresh database, a reset sandbox, a few subscriptions (see the module
    docstring). Every public method is one step a test may take."""

    def __init__(
        self,
        world: World,
        *,
        cards: list[str],
        shared_customer: bool = False,
        final_action: str = "canceled",
        trust_keys: bool = False,
        backend: str = "sqlite",
    ) -> None:
        self.world = world
        self.clock = Clock(START)
        world.time.clock = self.clock
        world.sandbox.reset()
        if backend == "sqlite":
            url = fresh_sqlite_url(world.sqlite_template, world.folder)
        else:
            assert world.postgres_url is not None
            url = world.postgres_url
            truncate_all(url)
        mail = world.folder / f"mail-{uuid.uuid4().hex[:8]}"
        self.settings = Settings(
            database_url=url,
            broker_url=f"sqla+sqlite:///{world.folder}/broker.db",
            faststar_base_url=world.sandbox.base_url,
            faststar_api_key=SecretStr(world.sandbox.api_key),
            mail_url=f"file://{mail}",
            final_action=final_action,  # type: ignore[arg-type]
            trust_idempotency_keys=trust_keys,
        )
        self.engine: Engine = create_db_engine(url)
        self.faststar = FastStarClient(world.sandbox.base_url, world.sandbox.api_key)
        self.deps = deps(self.engine, self.faststar, self.settings, self.clock)
        # The broker: messages not delivered yet, and every message delivered at least once.
        self.queue: list[tuple[Work, int]] = []
        self.delivered: list[tuple[Work, int]] = []
        self.delivered_events: set[str] = set()
        # Bad input the model fed in: subscriptions whose card it detached, and when.
        self.detached: dict[int, Detached] = {}
        self.customers: list[Customer] = []
        self.steps: list[str] = []
        for index, card in enumerate(cards):
            self._subscribe(card, shared=shared_customer and index == 1)

    # ------------------------------------------------------------------ set-up

    def _subscribe(self, card: str, *, shared: bool) -> None:
        if shared and self.customers:
            customer = self.customers[0].customer_id
            saved = sc.attach_card(self.settings, self.world.sandbox, customer, CARDS[card])
        else:
            saved = save_sandbox_card(self.settings, CARDS[card])
        sub_id = sc.subscribe(self.engine, self.settings, saved, renews_at=self.clock.now)
        self.customers.append(Customer(sub_id, saved.customer_id, saved.payment_method_id))

    def close(self) -> None:
        self.world.time.clock = None
        self.faststar.close()
        self.engine.dispose()

    def _log(self, step: str) -> None:
        self.steps.append(step)

    def _customer(self, index: int) -> Customer:
        return self.customers[index % len(self.customers)]

    def _run(self, kind: Work, item_id: int) -> None:
        self.delivered.append((kind, item_id))
        self.queue += SERVICES[kind](self.deps, item_id).work

    # ------------------------------------------------------------------ time and the sweep

    def advance(self, days: int = 0, hours: int = 0, minutes: int = 0) -> None:
        self._log(f"advance(days={days}, hours={hours}, minutes={minutes})")
        self.clock.advance(days=days, hours=hours, minutes=minutes)

    def sweep(self) -> None:
        self._log("sweep()")
        with unit_of_work(self.engine) as session:
            self.queue += sweep(session, now=self.clock(), settings=self.settings).work
        assert_no_expired_lease(self.engine, self.clock())

    # ------------------------------------------------------------------ the broker

    def deliver(self, index: int = 0) -> None:
        """A worker takes one message and runs it to the end."""
        self._log(f"deliver({index})")
        if self.queue:
            self._run(*self.queue.pop(index % len(self.queue)))

    def deliver_all(self) -> None:
        self._log("deliver_all()")
        while self.queue:
            self._run(*self.queue.pop(0))

    def redeliver(self, index: int = 0) -> None:
        """The broker hands a message that already ran out again (at-least-once)."""
        self._log(f"redeliver({index})")
        if self.delivered:
            self._run(*self.delivered[index % len(self.delivered)])

    def lose(self, index: int = 0) -> None:
        """The broker loses a message: the sweep finds the work again after its lease."""
        self._log(f"lose({index})")
        if self.queue:
            self.queue.pop(index % len(self.queue))

    def crash(self, index: int = 0, *, after_call: bool = False) -> None:
        """A worker takes a charge message and dies after committing the attempt: before
        the call, or after FastStar answered and before the answer was recorded."""
        self._log(f"crash({index}, after_call={after_call})")
        charges = [i for i, (kind, _) in enumerate(self.queue) if kind is Work.CHARGE]
        if not charges:
            return
        _, renewal_id = self.queue.pop(charges[index % len(charges)])
        with unit_of_work(self.engine) as session:
            order = begin_charge(session, renewal_id, now=self.clock(), settings=self.settings)
        if after_call and isinstance(order, ChargeOrder):
            self.faststar.charge_off_session(
                order.customer_id,
                order.payment_method_id,
                order.amount,
                order.currency,
                idempotency_key=order.idempotency_key,
            )

    # ------------------------------------------------------------------ FastStar's side

    def set_card(self, customer: int, behaviour: str) -> None:
        """The card starts to behave as the sandbox's test card ``behaviour`` does."""
        self._log(f"set_card({customer}, {behaviour!r})")
        pm = self._customer(customer).payment_method_id
        self.world.sandbox.app.state.payment_methods[pm].behaviour = BEHAVIOURS[behaviour]

    def webhook(self, index: int = 0, *, documented: bool = False) -> None:
        """One of the events FastStar emitted arrives (any of them: again, or out of order),
        in the sandbox's shape or exactly as documented (no customer, no session)."""
        self._log(f"webhook({index}, documented={documented})")
        events = self.world.sandbox.events()
        if events:
            self._store_event(events[index % len(events)], documented=documented)

    def _store_event(self, event: dict[str, Any], *, documented: bool) -> None:
        if documented and event["type"].startswith("payment."):
            event = sc.documented(event)
        webhook = WebhookEvent(
            id=event["id"],
            type=event["type"],
            created=event["created"],
            data=dict(event["data"]),
            livemode=event.get("livemode", False),
            api_version=event.get("api_version", "v1"),
        )
        self.delivered_events.add(event["id"])
        inbox_id = store_event(self.engine, webhook, now=self.clock())
        if inbox_id is not None:  # a duplicate is stored once; the receiver answers 200
            self.queue.append((Work.WEBHOOK, inbox_id))

    def pay_checkout(self, customer: int) -> None:
        """The customer pays the newest open Checkout Session of their subscription (once
        per renewal: a customer does not pay the same period twice on purpose)."""
        self._log(f"pay_checkout({customer})")
        who = self._customer(customer)
        with unit_of_work(self.engine) as session:
            rows = session.execute(
                select(CheckoutSessionRecord.session_id, Renewal.id)
                .join(Renewal, Renewal.id == CheckoutSessionRecord.renewal_id)
                .where(Renewal.subscription_id == who.subscription_id)
                .order_by(CheckoutSessionRecord.id.desc())
            ).all()
        paid_renewals = {
            renewal_id for session_id, renewal_id in rows if session_id in who.paid_sessions
        }
        sessions = self.world.sandbox.app.state.checkout_sessions
        for session_id, renewal_id in rows:
            found = sessions.get(session_id)
            if renewal_id in paid_renewals or found is None:
                continue
            if found.current_status(self.world.time.now()) == "open":
                self.world.sandbox.complete_checkout(session_id)
                who.paid_sessions.add(session_id)
                return

    # ------------------------------------------------------------------ operators

    def command(self, name: str, **arguments: Any) -> dict[str, Any]:
        """An operator command, sent and run by a worker at once (its follow-ups queued)."""
        self._log(f"command({name!r}, **{arguments!r})")
        command_id = submit(self.engine, name, arguments, actor=OPERATOR, now=self.clock())
        follow = run_command(self.settings, self.engine, self.faststar, self.clock, command_id)
        self.queue += follow.work
        with unit_of_work(self.engine) as session:
            row = session.get_one(OperatorCommand, command_id)
            assert row.status != "failed", f"command {name} {arguments} failed: {row.result}"
            return {"status": row.status, "result": row.result}

    def pause(self, customer: int) -> None:
        self.command("pause", subscription_id=self._customer(customer).subscription_id)

    def resume(self, customer: int) -> None:
        self.command("resume", subscription_id=self._customer(customer).subscription_id)

    def cancel(self, customer: int, *, at_period_end: bool = False) -> None:
        sub_id = self._customer(customer).subscription_id
        self.command("cancel", subscription_id=sub_id, at_period_end=at_period_end)

    def retry(self, customer: int) -> None:
        self.command("retry", subscription_id=self._customer(customer).subscription_id)

    def reconcile(self, index: int = 0) -> None:
        """An operator settles an unknown renewal from FastStar's ledger: ``--paid`` with
        the payment its attempts' keys made, ``--not-charged`` only when there is none."""
        self._log(f"reconcile({index})")
        with unit_of_work(self.engine) as session:
            unknown = list(
                session.scalars(
                    select(Renewal.id)
                    .where(Renewal.status == RenewalStatus.UNKNOWN)
                    .order_by(Renewal.id)
                )
            )
            if not unknown:
                return
            renewal_id = unknown[index % len(unknown)]
            keys = set(
                session.scalars(
                    select(ChargeAttempt.idempotency_key).where(
                        ChargeAttempt.renewal_id == renewal_id
                    )
                )
            )
        charged = [c for c in self.world.sandbox.charges() if c["idempotency_key"] in keys]
        if charged:
            self.command("reconcile", renewal_id=renewal_id, paid=charged[0]["payment_intent_id"])
        else:
            self.command(
                "reconcile", renewal_id=renewal_id, not_charged=True, reason="ledger: no charge"
            )

    # ------------------------------------------------------------------ bad input

    def corrupt_amount(self, customer: int, amount: int) -> None:
        """A bad price reaches the subscription and its open renewals (a broken import):
        nothing of it may reach FastStar."""
        self._log(f"corrupt_amount({customer}, {amount})")
        sub_id = self._customer(customer).subscription_id
        with unit_of_work(self.engine) as session:
            session.execute(
                update(Subscription).where(Subscription.id == sub_id).values(amount=amount)
            )
            session.execute(
                update(Renewal)
                .where(Renewal.subscription_id == sub_id)
                .where(Renewal.status.in_([RenewalStatus.PENDING, RenewalStatus.RETRY_SCHEDULED]))
                .values(amount=amount)
            )

    def detach_card(self, customer: int) -> None:
        """Our records learn that the card was detached; FastStar (the sandbox) would still
        charge it, so a charge sent anyway shows in its ledger."""
        self._log(f"detach_card({customer})")
        who = self._customer(customer)
        with unit_of_work(self.engine) as session:
            sub = session.get_one(Subscription, who.subscription_id)
            card = session.get_one(PaymentMethod, sub.payment_method_id)
            if card.detached_at is not None:
                return
            card.detached_at = self.clock()
            sends = dict(
                session.execute(
                    select(ChargeAttempt.id, ChargeAttempt.sends)
                    .join(Renewal, Renewal.id == ChargeAttempt.renewal_id)
                    .where(Renewal.subscription_id == sub.id)
                ).all()
            )
        charged = [
            c
            for c in self.world.sandbox.charges()
            if c["payment_method_id"] == who.payment_method_id
        ]
        self.detached[who.subscription_id] = Detached(sends, len(charged))

    # ------------------------------------------------------------------ the end

    def settle(self) -> None:
        """Run the engine until nothing is due: every event FastStar emitted arrives, every
        message is delivered, and the clock moves past leases and webhook waits, a few
        times over. Then :func:`assert_settled` may be checked."""
        self._log("settle()")
        for _ in range(4):
            for event in self.world.sandbox.events():
                if event["id"] not in self.delivered_events:
                    self._store_event(event, documented=False)
            self.deliver_all()
            self.clock.advance(minutes=20)
            self.sweep()
            self.deliver_all()
            assert_invariants(self)

    def outcomes(self) -> list[str]:
        """What the run reached, for Hypothesis' statistics: renewal statuses and actions."""
        with unit_of_work(self.engine) as session:
            actions = set(session.scalars(select(AuditEvent.action)))
        return sorted(actions)

    def check(self) -> None:
        assert_invariants(self)


# ====================================================================== invariants


def _executed_charges(model: EngineModel) -> list[dict[str, Any]]:
    return model.world.sandbox.charges()


def assert_no_expired_lease(engine: Engine, now: datetime) -> None:
    """Right after a sweep at ``now``: no renewal is still charging past its lease."""
    with unit_of_work(engine) as session:
        stuck = session.scalars(
            select(Renewal.id)
            .where(Renewal.status == RenewalStatus.CHARGING)
            .where(Renewal.lease_expires_at <= now)
        ).all()
    assert not stuck, f"renewals {stuck} still charging past their lease after a sweep"


def _check_chain(name: str, table: Any, rows: list[AuditEvent], current: str, prefix: str) -> None:
    """The audit rows of one row, oldest first, are a walk through its machine that ends
    in its current status."""
    status: str | None = None
    for row in rows:
        if row.to_status is None:
            continue
        if row.from_status is None:
            assert status is None, f"{name}: second creation row {row.action}"
        else:
            assert row.from_status == status, (
                f"{name}: {row.action} from {row.from_status}, but it was {status}"
            )
            event = row.action.removeprefix(prefix)
            try:
                after = table.apply(row.from_status, event)
            except (IllegalTransition, ValueError) as exc:
                raise AssertionError(f"{name}: illegal audit row {row.action}: {exc}") from None
            assert after == row.to_status, f"{name}: {row.action} went to {row.to_status}"
        status = row.to_status
    assert status == current, f"{name}: status {current}, the audit trail ends in {status}"


def _attempt_edges() -> set[tuple[str, str]]:
    return {(str(a), str(b)) for a, _, b in ATTEMPT_TRANSITIONS.items()}


def assert_invariants(model: EngineModel) -> None:
    """What holds after every step (the module docstring of the test lists them)."""
    cap = model.settings.max_charge_amount
    charges = _executed_charges(model)
    with unit_of_work(model.engine) as session:
        subs = {s.id: s for s in session.scalars(select(Subscription))}
        renewals = {r.id: r for r in session.scalars(select(Renewal))}
        attempts = list(session.scalars(select(ChargeAttempt)))
        audit = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        sessions = dict(
            session.execute(
                select(CheckoutSessionRecord.session_id, CheckoutSessionRecord.renewal_id)
            ).all()
        )
        reviews = list(session.scalars(select(PaymentReview)))
        commands = list(session.scalars(select(OperatorCommand)))

    # Legal transitions: each renewal's and subscription's audit trail is a walk through
    # its machine ending in its status; every attempt change named is an edge of its own.
    for renewal in renewals.values():
        rows = [r for r in audit if r.renewal_id == renewal.id and r.action.startswith("renewal_")]
        _check_chain(f"renewal {renewal.id}", RENEWAL_TRANSITIONS, rows, renewal.status, "renewal_")
    for sub in subs.values():
        rows = [
            r
            for r in audit
            if r.subscription_id == sub.id
            and r.renewal_id is None
            and r.action.startswith("subscription_")
        ]
        _check_chain(
            f"subscription {sub.id}", SUBSCRIPTION_TRANSITIONS, rows, sub.status, "subscription_"
        )
    edges = _attempt_edges()
    for row in audit:
        change = (row.details or {}).get("attempt")
        if isinstance(change, list):
            assert tuple(change) in edges, f"audit {row.id}: attempt {change} is no transition"

    # Which renewal each executed charge was for: by its idempotency key (off-session) or
    # its Checkout Session (on-session). A charge of none of ours is a bug.
    attempt_by_key = {a.idempotency_key: a for a in attempts}
    by_renewal: dict[int, list[dict[str, Any]]] = {}
    for charge in charges:
        key, cs = charge["idempotency_key"], charge["checkout_session_id"]
        if key is not None:
            assert key in attempt_by_key, f"charge {charge['payment_intent_id']} of no attempt"
            renewal_id = attempt_by_key[key].renewal_id
        else:
            assert cs in sessions, f"charge {charge['payment_intent_id']} of no session"
            renewal_id = sessions[cs]
        by_renewal.setdefault(renewal_id, []).append(charge)
        # Bad input never reaches FastStar (I4).
        assert 0 < charge["amount"] <= cap, f"an invalid amount was charged: {charge}"

    # No period charged twice (I1).
    for renewal_id, executed in by_renewal.items():
        assert len(executed) == 1, (
            f"renewal {renewal_id} (period {renewals[renewal_id].period_index} of subscription "
            f"{renewals[renewal_id].subscription_id}) was charged {len(executed)} times: "
            f"{[c['payment_intent_id'] for c in executed]}"
        )

    # Every executed off-session charge is booked on its renewal with its id and amount, or
    # the renewal is still in doubt (charging: a worker died; unknown), or the payment is in
    # an open review. On-session payments may still be on their way (asserted once settled).
    open_reviews = {r.payment_intent_id for r in reviews if r.status == "open"}
    for renewal_id, executed in by_renewal.items():
        renewal = renewals[renewal_id]
        for charge in executed:
            pi = charge["payment_intent_id"]
            if renewal.payment_intent_id == pi:
                assert charge["amount"] == renewal.amount, f"renewal {renewal_id}: amount"
                assert renewal.status == RenewalStatus.SUCCEEDED, (
                    f"renewal {renewal_id} booked with {pi} but {renewal.status}"
                )
                continue
            if charge["idempotency_key"] is not None:
                assert renewal.status in (RenewalStatus.UNKNOWN, RenewalStatus.CHARGING) or (
                    pi in open_reviews
                ), f"renewal {renewal_id} is {renewal.status}; its charge {pi} is not booked"

    # Nothing booked that FastStar did not charge.
    ledger = {c["payment_intent_id"]: c for c in charges}
    for renewal in renewals.values():
        if renewal.status == RenewalStatus.SUCCEEDED:
            assert renewal.payment_intent_id in ledger, (
                f"renewal {renewal.id} succeeded with {renewal.payment_intent_id}, "
                "which FastStar never charged"
            )

    # Bad input refused before any call: no attempt carries an invalid amount, and nothing
    # was sent on a card after our records knew it was detached.
    for attempt in attempts:
        assert 0 < attempt.amount <= cap, f"attempt {attempt.id} has amount {attempt.amount}"
        detached = model.detached.get(renewals[attempt.renewal_id].subscription_id)
        if detached is not None:
            assert attempt.sends <= detached.sends.get(attempt.id, 0), (
                f"attempt {attempt.id} was sent after its card was detached"
            )
    for customer in model.customers:
        detached = model.detached.get(customer.subscription_id)
        if detached is not None:
            on_card = [c for c in charges if c["payment_method_id"] == customer.payment_method_id]
            assert len(on_card) <= detached.charges, "a detached card was charged"

    # Nothing stuck: every unfinished renewal has a next job or a live lease, except one a
    # pause holds (its charge comes back with resume).
    for renewal in renewals.values():
        if renewal.status in FINISHED_RENEWAL_STATUSES:
            continue
        if renewal.status == RenewalStatus.CHARGING:
            assert renewal.lease_expires_at is not None, f"renewal {renewal.id} charging, no lease"
            continue
        held = subs[renewal.subscription_id].status == SubscriptionStatus.PAUSED and (
            renewal.status in (RenewalStatus.PENDING, RenewalStatus.RETRY_SCHEDULED)
        )
        assert renewal.wake is not None or held, (
            f"renewal {renewal.id} is {renewal.status} with no next job"
        )
    for command in commands:
        assert command.status != "failed", f"command {command.name} failed: {command.result}"


def assert_settled(model: EngineModel) -> None:
    """Once every event has arrived and nothing is due: every executed charge is booked on
    its renewal, or that renewal is unknown, or the payment is under review; no webhook is
    left pending and no email unsent."""
    assert_invariants(model)
    charges = _executed_charges(model)
    with unit_of_work(model.engine) as session:
        booked = dict(
            session.execute(
                select(Renewal.payment_intent_id, Renewal.status).where(
                    Renewal.payment_intent_id.is_not(None)
                )
            ).all()
        )
        reviewed = set(
            session.scalars(
                select(PaymentReview.payment_intent_id).where(PaymentReview.status == "open")
            )
        )
        attempts = {a.idempotency_key: a for a in session.scalars(select(ChargeAttempt))}
        renewal_status = dict(session.execute(select(Renewal.id, Renewal.status)).all())
        pending_inbox = session.scalars(
            select(InboxEvent.event_id).where(InboxEvent.status == InboxStatus.PENDING)
        ).all()
        unsent = session.scalars(
            select(OutboxMessage.id).where(
                OutboxMessage.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING])
            )
        ).all()
    for charge in charges:
        pi = charge["payment_intent_id"]
        if pi in booked or pi in reviewed:
            continue
        attempt = attempts.get(charge["idempotency_key"])
        assert (
            attempt is not None and renewal_status[attempt.renewal_id] == RenewalStatus.UNKNOWN
        ), f"payment {pi} ({charge['source']}) is neither booked nor under review"
    assert not pending_inbox, f"webhook events still pending: {pending_inbox}"
    assert not unsent, f"emails never sent: {unsent}"
