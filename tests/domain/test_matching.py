"""Matching reported payments to renewals: one example per row of the rule, window edges,
and the property that a payment is booked at most once, only where it identifies one renewal,
and never on another customer's."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from renewals.domain.matching import (
    DEFAULT_SLACK,
    AlreadyBooked,
    BookOnAttempt,
    BookOnSession,
    Candidate,
    CandidateKind,
    Decision,
    ReportedPayment,
    Review,
    ReviewReason,
    SessionTarget,
    Wait,
    decide,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
TICK = timedelta(microseconds=1)
BOUND = timedelta(minutes=5)  # the lease: how long one charge call can run

UNKNOWN = CandidateKind.UNKNOWN
IN_FLIGHT = CandidateKind.IN_FLIGHT
AWAITING = CandidateKind.AWAITING_CUSTOMER


def attempt(
    renewal_id: int = 1,
    attempt_id: int = 10,
    *,
    kind: CandidateKind = UNKNOWN,
    customer: str = "cus_a",
    amount: int = 2000,
    currency: str = "EUR",
    start: datetime = T0,
    end: datetime = T0,
) -> Candidate:
    return Candidate(renewal_id, attempt_id, kind, customer, amount, currency, start, end)


def awaiting(
    renewal_id: int = 2,
    *,
    customer: str = "cus_a",
    amount: int = 2000,
    currency: str = "EUR",
    start: datetime = T0,
    end: datetime = T0 + timedelta(hours=24),
) -> Candidate:
    return Candidate(renewal_id, None, AWAITING, customer, amount, currency, start, end)


def payment(
    *,
    pi: str = "pi_1",
    amount: int = 2000,
    currency: str = "EUR",
    customer: str | None = "cus_a",
    session: str | None = None,
    created: datetime | None = T0 + MINUTE,
    subtotal: int | None = None,
) -> ReportedPayment:
    return ReportedPayment(pi, amount, currency, customer, session, created, subtotal)


def run(
    reported: ReportedPayment,
    candidates: Sequence[Candidate] = (),
    *,
    booked: Mapping[str, int | None] | None = None,
    paid: Collection[int] = (),
    sessions: Mapping[str, SessionTarget] | None = None,
) -> Decision:
    return decide(
        reported,
        booked=booked or {},
        paid_renewals=paid,
        sessions=sessions or {},
        candidates=candidates,
        call_bound=BOUND,
    )


SESSION = {"cs_7": SessionTarget(renewal_id=7, amount=2000, currency="EUR", customer_id="cus_a")}


# --- by payment id --------------------------------------------------------------------------


def test_a_payment_already_booked_is_a_no_op_whatever_else_it_names() -> None:
    reported = payment(session="cs_7")
    booked = {"pi_1": 7}
    assert run(reported, [attempt()], booked=booked, sessions=SESSION) == AlreadyBooked(7)
    assert run(reported, booked={"pi_1": None}) == AlreadyBooked(None)


# --- by checkout session --------------------------------------------------------------------


def test_a_session_of_ours_paid_in_full_books_on_its_renewal() -> None:
    decision = run(payment(session="cs_7"), [attempt(renewal_id=1)], sessions=SESSION)
    assert decision == BookOnSession(7, "cs_7")


def test_tax_exclusive_checkout_matches_on_the_subtotal() -> None:
    # total = subtotal + tax: 2000 asked, 380 VAT on top, 2380 paid
    taxed = payment(session="cs_7", amount=2380, subtotal=2000)
    assert taxed.amount_before_tax == 2000
    assert run(taxed, sessions=SESSION) == BookOnSession(7, "cs_7")
    # the same total without a subtotal is not what the renewal asked
    untaxed = run(payment(session="cs_7", amount=2380), sessions=SESSION)
    assert isinstance(untaxed, Review)
    assert untaxed.reason is ReviewReason.AMOUNT_MISMATCH


def test_tax_inclusive_checkout_total_equals_subtotal() -> None:
    inclusive = payment(session="cs_7", amount=2000, subtotal=2000)
    assert run(inclusive, sessions=SESSION) == BookOnSession(7, "cs_7")


@pytest.mark.parametrize(
    ("amount", "currency"), [(1999, "EUR"), (2001, "EUR"), (2000, "USD")], ids=str
)
def test_a_session_paid_with_other_money_is_a_review_on_its_renewal(
    amount: int, currency: str
) -> None:
    decision = run(payment(session="cs_7", amount=amount, currency=currency), sessions=SESSION)
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id, decision.candidates) == (
        ReviewReason.AMOUNT_MISMATCH,
        7,
        (7,),
    )


def test_currency_compares_case_insensitively() -> None:
    assert run(payment(session="cs_7", currency="eur"), sessions=SESSION) == BookOnSession(
        7, "cs_7"
    )
    assert run(payment(currency="eur"), [attempt(currency="EUR")]) == BookOnAttempt(1, 10)


def test_a_session_of_a_renewal_already_paid_is_a_double_charge_review() -> None:
    decision = run(payment(pi="pi_2", session="cs_7"), paid={7}, sessions=SESSION)
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id) == (ReviewReason.ALREADY_PAID, 7)


def test_a_session_paid_by_another_customer_is_a_review() -> None:
    decision = run(payment(session="cs_7", customer="cus_b"), sessions=SESSION)
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id) == (ReviewReason.CUSTOMER_MISMATCH, 7)
    # a report naming no customer is identified by the session alone
    assert run(payment(session="cs_7", customer=None), sessions=SESSION) == BookOnSession(7, "cs_7")


def test_a_session_we_do_not_know_falls_through_to_attempt_matching() -> None:
    assert run(payment(session="cs_other"), [attempt()], sessions=SESSION) == BookOnAttempt(1, 10)


# --- without a customer ---------------------------------------------------------------------


def test_no_customer_never_books_by_amount() -> None:
    decision = run(payment(customer=None), [attempt(renewal_id=1)])
    assert decision == Review(
        ReviewReason.NO_CUSTOMER, "no customer on the report: cannot match by amount", None, (1,)
    )


def test_no_customer_waits_for_an_in_flight_attempt_of_that_amount() -> None:
    candidates = [attempt(renewal_id=1), attempt(renewal_id=3, attempt_id=30, kind=IN_FLIGHT)]
    decision = run(payment(customer=None), candidates)
    assert isinstance(decision, Wait)
    assert decision.attempt_ids == (30,)


def test_no_customer_does_not_wait_for_an_in_flight_attempt_it_cannot_be() -> None:
    other_amount = attempt(kind=IN_FLIGHT, amount=1000)
    too_late = attempt(kind=IN_FLIGHT, end=T0)
    for candidate, created in ((other_amount, T0), (too_late, T0 + BOUND + 2 * MINUTE)):
        decision = run(payment(customer=None, created=created), [candidate])
        assert isinstance(decision, Review)
        assert decision.reason is ReviewReason.NO_CUSTOMER


# --- by customer, amount, currency and time --------------------------------------------------


def test_the_one_fitting_unknown_attempt_is_booked() -> None:
    decision = run(payment(), [attempt(renewal_id=1, attempt_id=10)])
    assert decision == BookOnAttempt(1, 10)


def test_an_in_flight_fit_waits_even_beside_an_unknown_one() -> None:
    candidates = [attempt(renewal_id=1), attempt(renewal_id=2, attempt_id=20, kind=IN_FLIGHT)]
    decision = run(payment(), candidates)
    assert isinstance(decision, Wait)
    assert decision.attempt_ids == (20,)


def test_two_fitting_unknown_attempts_are_ambiguous() -> None:
    candidates = [attempt(renewal_id=1, attempt_id=10), attempt(renewal_id=2, attempt_id=20)]
    decision = run(payment(), candidates)
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id, decision.candidates) == (
        ReviewReason.AMBIGUOUS,
        None,
        (1, 2),
    )


def test_a_renewal_awaiting_its_customer_makes_amount_matching_ambiguous() -> None:
    decision = run(payment(), [attempt(renewal_id=1), awaiting(renewal_id=2)])
    assert isinstance(decision, Review)
    assert (decision.reason, decision.candidates) == (ReviewReason.AMBIGUOUS, (1, 2))


def test_a_renewal_awaiting_its_customer_is_identified_only_by_a_session() -> None:
    decision = run(payment(), [awaiting(renewal_id=2)])
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id) == (ReviewReason.NEEDS_SESSION, 2)


def test_never_books_on_another_customers_renewal() -> None:
    decision = run(payment(customer="cus_b"), [attempt(customer="cus_a")])
    assert isinstance(decision, Review)
    assert (decision.reason, decision.candidates) == (ReviewReason.NO_FIT, ())


def test_another_customers_attempt_does_not_make_a_match_ambiguous() -> None:
    candidates = [attempt(renewal_id=1), attempt(renewal_id=2, attempt_id=20, customer="cus_b")]
    assert run(payment(), candidates) == BookOnAttempt(1, 10)


@pytest.mark.parametrize(
    "reported",
    [payment(amount=1999), payment(currency="USD"), payment(amount=2380, subtotal=2380)],
    ids=["amount", "currency", "subtotal"],
)
def test_other_money_does_not_fit(reported: ReportedPayment) -> None:
    decision = run(reported, [attempt()])
    assert isinstance(decision, Review)
    assert decision.reason is ReviewReason.NO_FIT


def test_a_report_without_a_time_is_never_booked_by_amount() -> None:
    decision = run(payment(created=None), [attempt()])
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id) == (ReviewReason.NO_TIME, 1)
    # but an in-flight attempt that could have made it still gets to report first
    assert isinstance(run(payment(created=None), [attempt(kind=IN_FLIGHT)]), Wait)


def test_an_unknown_attempt_of_a_paid_renewal_is_a_double_charge_review() -> None:
    decision = run(payment(), [attempt(renewal_id=1)], paid={1})
    assert isinstance(decision, Review)
    assert (decision.reason, decision.renewal_id) == (ReviewReason.ALREADY_PAID, 1)


# --- window edges ---------------------------------------------------------------------------

START, LAST_SEND = T0, T0 + 3 * MINUTE


@pytest.mark.parametrize(
    ("created", "fits"),
    [
        (START - MINUTE, True),
        (START - MINUTE - TICK, False),
        (LAST_SEND + BOUND + MINUTE, True),
        (LAST_SEND + BOUND + MINUTE + TICK, False),
    ],
    ids=["start-1min", "just-before", "end+bound+1min", "just-after"],
)
def test_attempt_window_is_inclusive_at_exactly_one_minute_of_slack(
    created: datetime, fits: bool
) -> None:
    decision = run(payment(created=created), [attempt(start=START, end=LAST_SEND)])
    if fits:
        assert decision == BookOnAttempt(1, 10)
    else:
        assert isinstance(decision, Review)
        assert decision.reason is ReviewReason.NO_FIT


@pytest.mark.parametrize(
    ("created", "fits"),
    [
        (START - MINUTE, True),
        (START - MINUTE - TICK, False),
        (LAST_SEND + MINUTE, True),
        (LAST_SEND + MINUTE + TICK, False),  # no call bound: no call of ours is running
    ],
    ids=["start-1min", "just-before", "end+1min", "just-after"],
)
def test_awaiting_window_has_slack_but_no_call_bound(created: datetime, fits: bool) -> None:
    decision = run(payment(created=created), [awaiting(start=START, end=LAST_SEND)])
    assert isinstance(decision, Review)
    assert decision.reason is (ReviewReason.NEEDS_SESSION if fits else ReviewReason.NO_FIT)


def test_default_slack_is_one_minute() -> None:
    assert DEFAULT_SLACK == MINUTE


# --- refusing values no report or row can carry --------------------------------------------


def test_invalid_reports_and_candidates_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        payment(created=datetime(2024, 5, 1, 12, 0))  # naive: the point of the test
    with pytest.raises(ValueError, match="subtotal"):
        payment(amount=100, subtotal=101)
    with pytest.raises(TypeError):
        payment(amount=True)
    with pytest.raises(ValueError, match="window_end"):
        attempt(start=T0, end=T0 - TICK)
    with pytest.raises(ValueError, match="attempt_id"):
        Candidate(1, None, UNKNOWN, "cus_a", 1, "EUR", T0, T0)
    with pytest.raises(ValueError, match="attempt_id"):
        Candidate(1, 5, AWAITING, "cus_a", 1, "EUR", T0, T0)
    with pytest.raises(ValueError, match="call_bound"):
        decide(
            payment(),
            booked={},
            paid_renewals=(),
            sessions={},
            candidates=(),
            call_bound=-MINUTE,
        )


# --- property: booked at most once, uniquely, on the payer's own renewal -------------------

CUSTOMERS = ("cus_a", "cus_b")
AMOUNTS = (1000, 2000)
CURRENCIES = ("EUR", "USD")


@dataclass(frozen=True)
class Renewal:
    id: int
    customer: str
    amount: int
    currency: str


@dataclass(frozen=True)
class World:
    renewals: tuple[Renewal, ...]
    candidates: tuple[Candidate, ...]
    sessions: dict[str, SessionTarget]
    reports: tuple[ReportedPayment, ...]  # in arrival order; a pi may arrive several times


@st.composite
def reports(
    draw: st.DrawFn, pi: str, candidates: Sequence[Candidate], session_ids: Sequence[str | None]
) -> ReportedPayment:
    """Mostly a payment one of the candidates made (its customer, money and time, perhaps
    with tax on top, or the customer or time left out), else an arbitrary one."""
    if candidates and draw(st.integers(0, 3)) < 3:
        maker = draw(st.sampled_from(candidates))
        base = maker.amount
        currency = draw(st.sampled_from((maker.currency, maker.currency.lower())))
        customer = draw(st.sampled_from((maker.customer_id, maker.customer_id, None)))
        span = int((maker.window_end - maker.window_start) / MINUTE) + 7  # past bound + slack
        offset = None if draw(st.integers(0, 5)) == 5 else draw(st.integers(-2, span))
        # off-session charges name no session; an on-session payment names its renewal's
        session = draw(st.sampled_from((None, None, f"cs_{maker.renewal_id}")))
    else:
        base = draw(st.sampled_from(AMOUNTS))
        currency = draw(st.sampled_from((*CURRENCIES, "eur", "usd")))
        customer = draw(st.sampled_from((*CUSTOMERS, None)))
        offset = draw(st.one_of(st.integers(-5, 60), st.none()))
        session = draw(st.sampled_from(session_ids))
    created = None if offset is None else T0 + offset * MINUTE
    tax = draw(st.sampled_from((0, 0, 190)))
    # a report with tax on top usually says so with a subtotal; one that does not mismatches
    subtotal = base if tax == 0 or draw(st.integers(0, 3)) > 0 else None
    if tax == 0 and draw(st.booleans()):
        subtotal = None
    return ReportedPayment(pi, base + tax, currency, customer, session, created, subtotal)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    renewals = tuple(
        Renewal(index + 1, customer, amount, currency)
        for index, (customer, amount, currency) in enumerate(
            draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(CUSTOMERS),
                        st.sampled_from(AMOUNTS),
                        st.sampled_from(CURRENCIES),
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
        )
    )
    candidates = []
    for attempt_id, (renewal, kind, start, length) in enumerate(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(renewals),
                    st.sampled_from((UNKNOWN, UNKNOWN, IN_FLIGHT, AWAITING)),
                    st.integers(0, 30),
                    st.integers(0, 10),
                ),
                min_size=1,
                max_size=6,
            )
        ),
        start=100,
    ):
        candidates.append(
            Candidate(
                renewal.id,
                None if kind is AWAITING else attempt_id,
                kind,
                renewal.customer,
                renewal.amount,
                renewal.currency,
                T0 + start * MINUTE,
                T0 + (start + length) * MINUTE,
            )
        )
    sessions = {
        f"cs_{r.id}": SessionTarget(r.id, r.amount, r.currency, r.customer)
        for r in renewals
        if draw(st.booleans())
    }
    session_ids = (None, "cs_unknown", *(f"cs_{r.id}" for r in renewals))
    payments = [
        draw(reports(f"pi_{n}", candidates, session_ids)) for n in range(draw(st.integers(1, 6)))
    ]
    # every payment arrives, in any order, some of them more than once
    order = draw(st.permutations(payments)) + draw(st.lists(st.sampled_from(payments), max_size=6))
    return World(renewals, tuple(candidates), sessions, tuple(order))


def oracle_fits(reported: ReportedPayment, candidates: Sequence[Candidate]) -> list[Candidate]:
    """Candidates of the payer asking that money whose window admits the payment's time,
    written out again independently of the module."""
    if reported.customer_id is None or reported.created is None:
        return []
    fits = []
    for c in candidates:
        reach = BOUND if c.kind is not AWAITING else timedelta(0)
        if (
            c.customer_id == reported.customer_id
            and c.amount
            == (reported.subtotal if reported.subtotal is not None else reported.amount)
            and c.currency.upper() == reported.currency.upper()
            and c.window_start - MINUTE <= reported.created <= c.window_end + reach + MINUTE
        ):
            fits.append(c)
    return fits


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_a_payment_is_booked_at_most_once_on_the_one_renewal_it_identifies(world: World) -> None:
    by_id = {r.id: r for r in world.renewals}
    booked: dict[str, int | None] = {}
    bookings_per_renewal: Counter[int] = Counter()
    open_candidates = list(world.candidates)

    def book(reported: ReportedPayment) -> None:
        nonlocal open_candidates
        decision = decide(
            reported,
            booked=booked,
            paid_renewals=set(bookings_per_renewal),
            sessions=world.sessions,
            candidates=open_candidates,
            call_bound=BOUND,
        )
        event(type(decision).__name__)
        pi = reported.payment_intent_id
        if pi in booked:
            assert decision == AlreadyBooked(booked[pi])
            return
        match decision:
            case BookOnSession(renewal_id, session_id):
                target = world.sessions[session_id]
                assert session_id == reported.checkout_session_id
                assert renewal_id == target.renewal_id
                assert reported.amount_before_tax == target.amount
                assert reported.currency.upper() == target.currency.upper()
                assert reported.customer_id in (None, by_id[renewal_id].customer)
                # the renewal no longer awaits its customer
                open_candidates = [
                    c
                    for c in open_candidates
                    if not (c.renewal_id == renewal_id and c.kind is AWAITING)
                ]
            case BookOnAttempt(renewal_id, attempt_id):
                assert reported.checkout_session_id not in world.sessions
                [fit] = oracle_fits(reported, open_candidates)  # the only one that could
                assert (fit.renewal_id, fit.attempt_id, fit.kind) == (
                    renewal_id,
                    attempt_id,
                    UNKNOWN,
                )
                assert reported.customer_id == by_id[renewal_id].customer
                open_candidates.remove(fit)
            case Wait():
                assert any(
                    c.kind is IN_FLIGHT
                    and c.amount == reported.amount_before_tax
                    and c.currency.upper() == reported.currency.upper()
                    and reported.customer_id in (None, c.customer_id)
                    for c in open_candidates
                )
                return
            case AlreadyBooked():
                raise AssertionError(f"{pi} is not booked yet: {decision}")
            case Review():
                return
        # a booking: the pi is new and the renewal had none
        assert bookings_per_renewal[decision.renewal_id] == 0, decision
        booked[pi] = decision.renewal_id
        bookings_per_renewal[decision.renewal_id] += 1

    # Every report arrives; then the calls still in flight are declared unknown and every
    # report arrives again (redelivery, the janitor's second look).
    for second_look in (False, True):
        if second_look:
            open_candidates = [
                replace(c, kind=UNKNOWN) if c.kind is IN_FLIGHT else c for c in open_candidates
            ]
        for reported in world.reports:
            book(reported)

    assert all(count == 1 for count in bookings_per_renewal.values())


@settings(max_examples=80, deadline=None)
@given(worlds())
def test_the_decision_does_not_depend_on_candidate_order(world: World) -> None:
    for reported in world.reports:
        decisions = {
            decide(
                reported,
                booked={},
                paid_renewals=(),
                sessions=world.sessions,
                candidates=candidates,
                call_bound=BOUND,
            )
            for candidates in (world.candidates, world.candidates[::-1])
        }
        assert len(decisions) == 1
