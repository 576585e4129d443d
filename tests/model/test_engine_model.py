"""A Hypothesis stateful model of the engine (issue 11, item 3).

Hypothesis picks the steps (``tests/model/engine_model.py`` does them): time moves on by up
to 40 days, the sweep runs, workers take messages, the broker delivers a message twice or
loses it, a worker dies at a recovery point (after committing the attempt, before or after
the FastStar call), a card starts to decline, demand authentication, fail or lose its
answer, operators pause, resume, cancel, retry and reconcile, webhooks arrive (again, out of
order, or in FastStar's documented shape without a customer), customers pay on-session, and
bad input (an invalid amount, a detached card) reaches the records.

After every step (``assert_invariants``): every renewal's and subscription's audit trail is
a walk through its state machine ending in its status; no period has two executed charges
in the sandbox's ledger; every executed off-session charge is booked on its renewal with its
id and amount, or the renewal is in doubt (charging, unknown) or the payment in a review;
nothing is booked that FastStar did not charge; nothing invalid or on a detached card
reached FastStar; no unfinished renewal is left without a next job; no operator command
failed. After every sweep: no renewal still charging past its lease. At the end the engine
is run until nothing is due and every payment must be booked, unknown or under review
(``assert_settled``).

Profiles (``tests/model/profiles.py``): 30 examples of 50 steps on SQLite in ``make test``;
``make model-long`` (HYPOTHESIS_PROFILE=chaos) runs 400 of 60 on SQLite and PostgreSQL.

Whatever it found is kept in ``test_model_replays.py`` as a plain test replaying the shrunk
steps, named after what it found.
"""

from __future__ import annotations

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.model.engine_model import BEHAVIOURS, EngineModel, World, assert_settled
from tests.model.profiles import BACKENDS, MODEL_SETTINGS, TIMEOUT_S

CARDS = st.sampled_from(
    ["success", "success", "success", "sca", "declined", "lost_response", "error_after_charge"]
)
INDEX = st.integers(min_value=0, max_value=50)
CUSTOMER = st.integers(min_value=0, max_value=2)
BAD_AMOUNTS = st.sampled_from([0, -1999, 1_000_001, 50_000_000])
FATES = st.sampled_from(
    ["run", "run", "run", "run", "redeliver", "lose", "crash_before_call", "crash_after_call"]
)
OPERATOR_ACTIONS = st.sampled_from(
    ["pause", "resume", "cancel", "cancel_at_period_end", "retry", "reconcile", "reconcile"]
)


def machine_for(world: World, backend: str) -> type[RuleBasedStateMachine]:
    """The state machine over ``world``: fixtures cannot reach a machine class, so it is
    built inside the test with the world captured."""

    class EngineMachine(RuleBasedStateMachine):
        model: EngineModel | None = None

        @initialize(
            cards=st.lists(CARDS, min_size=2, max_size=3),
            shared=st.booleans(),
            final_action=st.sampled_from(["canceled", "unpaid"]),
            trust_keys=st.booleans(),
        )
        def start(
            self, cards: list[str], shared: bool, final_action: str, trust_keys: bool
        ) -> None:
            self.model = EngineModel(
                world,
                cards=cards,
                shared_customer=shared,
                final_action=final_action,
                trust_keys=trust_keys,
                backend=backend,
            )

        @property
        def m(self) -> EngineModel:
            assert self.model is not None
            return self.model

        @rule(
            days=st.integers(0, 40),
            hours=st.integers(0, 23),
            minutes=st.sampled_from([0, 1, 6, 16, 61]),
            sweep=st.booleans(),
        )
        def time_passes(self, days: int, hours: int, minutes: int, sweep: bool) -> None:
            """Time moves on (0 to 40 days), and the beat's sweep runs (mostly)."""
            self.m.advance(days=days, hours=hours, minutes=minutes)
            if sweep:
                self.m.sweep()

        @rule()
        def sweep(self) -> None:
            self.m.sweep()

        @rule(fates=st.lists(st.tuples(FATES, INDEX), min_size=1, max_size=8))
        def workers(self, fates: list[tuple[str, int]]) -> None:
            """Workers take messages from the broker: each runs to the end, runs again
            (redelivered), is lost, or its worker dies before or after the FastStar call."""
            for fate, index in fates:
                if fate == "run":
                    self.m.deliver(index)
                elif fate == "redeliver":
                    self.m.redeliver(index)
                elif fate == "lose":
                    self.m.lose(index)
                else:
                    self.m.crash(index, after_call=fate == "crash_after_call")

        @rule()
        def all_work_done(self) -> None:
            self.m.deliver_all()

        @rule(customer=CUSTOMER, behaviour=st.sampled_from(sorted(BEHAVIOURS)))
        def card_changes(self, customer: int, behaviour: str) -> None:
            self.m.set_card(customer, behaviour)

        @rule(arrivals=st.lists(st.tuples(INDEX, st.booleans()), min_size=1, max_size=4))
        def webhooks(self, arrivals: list[tuple[int, bool]]) -> None:
            """Events FastStar emitted arrive: any of them, again or out of order, in the
            sandbox's shape or the documented one (no customer)."""
            for index, documented in arrivals:
                self.m.webhook(index, documented=documented)

        @rule(customer=CUSTOMER)
        def customer_pays_on_session(self, customer: int) -> None:
            self.m.pay_checkout(customer)

        @rule(action=OPERATOR_ACTIONS, customer=CUSTOMER, index=INDEX)
        def operator(self, action: str, customer: int, index: int) -> None:
            if action == "reconcile":
                self.m.reconcile(index)
            elif action == "cancel_at_period_end":
                self.m.cancel(customer, at_period_end=True)
            else:
                getattr(self.m, action)(customer)

        @rule(customer=CUSTOMER, amount=BAD_AMOUNTS, detach=st.booleans())
        def bad_input(self, customer: int, amount: int, detach: bool) -> None:
            """A bad price or a detached card reaches our records."""
            if detach:
                self.m.detach_card(customer)
            else:
                self.m.corrupt_amount(customer, amount)

        @invariant()
        def invariants(self) -> None:
            if self.model is not None:
                self.m.check()

        def teardown(self) -> None:
            if self.model is None:
                return
            try:
                self.m.settle()
                assert_settled(self.m)
                for outcome in self.m.outcomes():
                    event(outcome)  # --hypothesis-show-statistics: what the runs reached
            finally:
                self.m.close()

    return EngineMachine


@pytest.mark.timeout(TIMEOUT_S)
@pytest.mark.parametrize("backend", BACKENDS)
def test_engine_model(model_world: World, backend: str) -> None:
    run_state_machine_as_test(machine_for(model_world, backend), settings=MODEL_SETTINGS)
