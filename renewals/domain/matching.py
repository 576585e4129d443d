"""Which renewal a payment FastStar reports belongs to, or why no renewal can be named.

A payment reaches us from a webhook, a polled checkout session, the janitor or an operator.
It is booked only on the one renewal it identifies: by payment id or checkout session id
first; failing those, an unknown charge attempt is identified by customer, amount, currency
and time, and only when nothing else of ours could account for the payment. Everything else
is a review for an operator, never a guess: a wrong booking marks a customer paid who was
not, or books one customer's money on another's renewal.

Pure: no clock, no I/O. The service loads what it knows (payments already booked, our
checkout sessions, the open candidates) and dispatches on the returned :data:`Decision`.

``decide(payment, ...)`` -> :data:`Decision`, rows tried top to bottom
=======================================================================

========================================================  ====================================
What we know about the reported payment                   Decision
========================================================  ====================================
its ``payment_intent_id`` is in ``booked``                ``AlreadyBooked`` (a no-op: webhooks
                                                          are redelivered, polls repeat)
names a checkout session of ours whose renewal is         ``Review(ALREADY_PAID)`` (a second
already paid                                              payment: a double charge to refund)
names a checkout session of ours, and a customer other    ``Review(CUSTOMER_MISMATCH)``
than the renewal's
names a checkout session of ours; amount before tax or    ``Review(AMOUNT_MISMATCH)``
currency differs from what the renewal asked
names a checkout session of ours; amount before tax and   ``BookOnSession``
currency equal
(a session id we do not know is ignored: the rows below apply)
--------------------------------------------------------  ------------------------------------
no customer, and an in-flight attempt with that amount    ``Wait`` (the attempt's own result
and currency could have made it                           will tell)
no customer otherwise                                     ``Review(NO_CUSTOMER)``: amount alone
                                                          never identifies a renewal
--------------------------------------------------------  ------------------------------------
a customer, and one of the *fits* is in flight            ``Wait``
a customer, no fit                                        ``Review(NO_FIT)``
a customer, fits, but no ``created`` time                 ``Review(NO_TIME)``
a customer, several fits                                  ``Review(AMBIGUOUS)``
a customer, the one fit awaits the customer on-session    ``Review(NEEDS_SESSION)``: only a
                                                          session id identifies such a payment
a customer, the one fit is an unknown attempt of a        ``Review(ALREADY_PAID)``
renewal already paid
a customer, the one fit is an unknown attempt             ``BookOnAttempt``
========================================================  ====================================

A *fit* is a candidate of the report's customer asking for the report's amount before tax in
its currency (case-insensitive), whose window admits the payment's ``created`` time (any
time, when the report has none; then nothing is booked, but an in-flight fit still waits):

==============================  ===========================================================
Candidate                       Window (inclusive at both ends)
==============================  ===========================================================
attempt (in flight, unknown)    ``[first send - slack, last send + call_bound + slack]``:
                                FastStar can only have executed the charge while one of our
                                sends was running, and ``call_bound`` (the lease) bounds a
                                call; ``slack`` (1 min) absorbs the two clocks' skew
awaiting customer               ``[first session created - slack, window_end + slack]``,
                                ``window_end`` being now or the last session's expiry
==============================  ===========================================================

The amount compared is the one before tax: a Checkout total in a tax-exclusive region is
subtotal + tax, and what the renewal asked for is the subtotal.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from renewals.domain._time import require_int, require_utc

__all__ = [
    "DEFAULT_SLACK",
    "AlreadyBooked",
    "BookOnAttempt",
    "BookOnSession",
    "Candidate",
    "CandidateKind",
    "Decision",
    "ReportedPayment",
    "Review",
    "ReviewReason",
    "SessionTarget",
    "Wait",
    "decide",
]

# How far FastStar's clock and ours may disagree when a payment's time is compared with the
# moments we sent charges or opened sessions.
DEFAULT_SLACK = timedelta(minutes=1)


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class ReportedPayment:
    """A payment FastStar reported: what it says happened, nothing inferred.

    Raises ``ValueError``/``TypeError`` on values no report can carry (negative amounts, a
    subtotal above the total, a naive ``created``): the caller's parser should have caught
    them, and matching on them would be matching on garbage.
    """

    payment_intent_id: str
    amount: int
    """What was paid in total, in minor units."""
    currency: str
    customer_id: str | None = None
    """``cus_...`` when the report names one (documented webhooks do not)."""
    checkout_session_id: str | None = None
    """``cs_...`` when the report names one (a polled session, a sandbox event)."""
    created: datetime | None = None
    """When FastStar says the payment happened (UTC)."""
    subtotal: int | None = None
    """The amount before tax, when the report gives it (checkout sessions)."""

    def __post_init__(self) -> None:
        _require_text(self.payment_intent_id, "payment_intent_id")
        _require_text(self.currency, "currency")
        require_int(self.amount, "amount", minimum=0)
        if self.subtotal is not None:
            require_int(self.subtotal, "subtotal", minimum=0)
            if self.subtotal > self.amount:
                # total = subtotal (tax-inclusive) or subtotal + tax (tax-exclusive)
                raise ValueError(f"subtotal {self.subtotal} exceeds the amount paid {self.amount}")
        if self.customer_id is not None:
            _require_text(self.customer_id, "customer_id")
        if self.checkout_session_id is not None:
            _require_text(self.checkout_session_id, "checkout_session_id")
        if self.created is not None:
            object.__setattr__(self, "created", require_utc(self.created, "created"))

    @property
    def amount_before_tax(self) -> int:
        """What a renewal's price is compared with: the subtotal when given, else the total."""
        return self.amount if self.subtotal is None else self.subtotal


class CandidateKind(StrEnum):
    IN_FLIGHT = "in_flight"
    """A charge attempt whose call may still be running: its own result will arrive."""
    UNKNOWN = "unknown"
    """A charge attempt whose outcome was lost: only a reported payment can settle it."""
    AWAITING_CUSTOMER = "awaiting_customer"
    """A renewal waiting for its customer on-session, its checkout sessions open."""


_ATTEMPT_KINDS = frozenset({CandidateKind.IN_FLIGHT, CandidateKind.UNKNOWN})


@dataclass(frozen=True, slots=True)
class Candidate:
    """Something of ours that could account for a payment: an open charge attempt (in
    flight or unknown) or a renewal waiting for its customer on-session."""

    renewal_id: int
    attempt_id: int | None
    """The attempt's id; None for ``AWAITING_CUSTOMER`` (a renewal, not an attempt)."""
    kind: CandidateKind
    customer_id: str
    amount: int
    """What the renewal asked for, before tax."""
    currency: str
    window_start: datetime
    """Attempts: the first send. Awaiting customer: the first session's creation."""
    window_end: datetime
    """Attempts: the last send. Awaiting customer: when the window closes (now, or the last
    session's expiry)."""

    def __post_init__(self) -> None:
        kind = CandidateKind(self.kind)
        if kind in _ATTEMPT_KINDS and self.attempt_id is None:
            raise ValueError(f"a {kind} candidate needs its attempt_id")
        if kind is CandidateKind.AWAITING_CUSTOMER and self.attempt_id is not None:
            raise ValueError("an awaiting_customer candidate is a renewal: attempt_id is None")
        _require_text(self.customer_id, "customer_id")
        _require_text(self.currency, "currency")
        require_int(self.amount, "amount", minimum=0)
        start = require_utc(self.window_start, "window_start")
        end = require_utc(self.window_end, "window_end")
        if end < start:
            raise ValueError(f"window_end {end} is before window_start {start}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "window_start", start)
        object.__setattr__(self, "window_end", end)

    def window(self, *, call_bound: timedelta, slack: timedelta) -> tuple[datetime, datetime]:
        """The inclusive span in which this candidate could have produced a payment."""
        reach = call_bound if self.kind in _ATTEMPT_KINDS else timedelta(0)
        return self.window_start - slack, self.window_end + reach + slack


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """A checkout session of ours: the renewal it was opened for and what it asked."""

    renewal_id: int
    amount: int
    """What the renewal asked for, before tax."""
    currency: str
    customer_id: str
    """The renewal's customer."""


class ReviewReason(StrEnum):
    """Why no renewal can be named; services key operator reviews on it."""

    ALREADY_PAID = "already_paid"
    CUSTOMER_MISMATCH = "customer_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    NO_CUSTOMER = "no_customer"
    NO_TIME = "no_time"
    NO_FIT = "no_fit"
    AMBIGUOUS = "ambiguous"
    NEEDS_SESSION = "needs_session"


@dataclass(frozen=True, slots=True)
class AlreadyBooked:
    """The payment is already in our books: nothing to do."""

    renewal_id: int | None


@dataclass(frozen=True, slots=True)
class BookOnSession:
    """The payment names a session of ours and pays what its renewal asked."""

    renewal_id: int
    checkout_session_id: str


@dataclass(frozen=True, slots=True)
class BookOnAttempt:
    """Exactly one unknown attempt fits the payment, and nothing else of ours could."""

    renewal_id: int
    attempt_id: int


@dataclass(frozen=True, slots=True)
class Wait:
    """An attempt still in flight could have made the payment: its own result will say.

    Look again later: by then the payment is booked (``AlreadyBooked``) or the attempt has
    closed and the rows below ``Wait`` decide.
    """

    reason: str
    attempt_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Review:
    """No renewal can be named without a guess: an operator decides."""

    reason: ReviewReason
    detail: str
    renewal_id: int | None
    """The renewal the report points at, when it points at one."""
    candidates: tuple[int, ...]
    """Renewals that could account for the payment, ascending."""


Decision = AlreadyBooked | BookOnSession | BookOnAttempt | Wait | Review


def decide(
    payment: ReportedPayment,
    *,
    booked: Mapping[str, int | None],
    paid_renewals: Collection[int],
    sessions: Mapping[str, SessionTarget],
    candidates: Sequence[Candidate],
    call_bound: timedelta,
    slack: timedelta = DEFAULT_SLACK,
) -> Decision:
    """What to do with ``payment`` (the module docstring's table).

    ``booked``: payment ids already in our books, each with the renewal it was booked on
    (None: recorded without one). ``paid_renewals``: renewals that already have a payment
    booked; a second payment for one is a double charge, never a second booking.
    ``sessions``: our checkout sessions by id. ``candidates``: every open attempt (in flight
    or unknown) and every renewal awaiting its customer, of any customer (filtering by
    customer is this function's job). ``call_bound``: how long a charge call can run (the
    lease). ``slack``: clock skew allowed around every window.
    """
    if call_bound < timedelta(0) or slack < timedelta(0):
        raise ValueError(f"call_bound and slack must be >= 0, got {call_bound} and {slack}")
    if payment.payment_intent_id in booked:
        return AlreadyBooked(booked[payment.payment_intent_id])
    session_id = payment.checkout_session_id
    if session_id is not None and session_id in sessions:
        return _by_session(payment, session_id, sessions[session_id], paid_renewals)
    if payment.customer_id is None:
        return _without_customer(payment, candidates, call_bound=call_bound, slack=slack)
    return _by_customer(
        payment, payment.customer_id, candidates, paid_renewals, call_bound=call_bound, slack=slack
    )


def _same_money(payment: ReportedPayment, amount: int, currency: str) -> bool:
    return payment.amount_before_tax == amount and payment.currency.upper() == currency.upper()


def _admits(
    candidate: Candidate, payment: ReportedPayment, *, call_bound: timedelta, slack: timedelta
) -> bool:
    """Amount, currency and time (when the report has one); the customer is checked apart."""
    if not _same_money(payment, candidate.amount, candidate.currency):
        return False
    if payment.created is None:
        return True
    start, end = candidate.window(call_bound=call_bound, slack=slack)
    return start <= payment.created <= end


def _renewals(candidates: Sequence[Candidate]) -> tuple[int, ...]:
    return tuple(sorted({c.renewal_id for c in candidates}))


def _wait(in_flight: Sequence[Candidate], why: str) -> Wait:
    attempts = tuple(sorted(c.attempt_id for c in in_flight if c.attempt_id is not None))
    return Wait(f"{why}: attempt(s) {', '.join(map(str, attempts))} still in flight", attempts)


def _by_session(
    payment: ReportedPayment,
    session_id: str,
    target: SessionTarget,
    paid_renewals: Collection[int],
) -> Decision:
    renewal = target.renewal_id
    if renewal in paid_renewals:
        return Review(
            ReviewReason.ALREADY_PAID,
            f"session {session_id} paid for renewal {renewal}, which another payment already"
            " paid: a double charge",
            renewal,
            (renewal,),
        )
    if payment.customer_id is not None and payment.customer_id != target.customer_id:
        return Review(
            ReviewReason.CUSTOMER_MISMATCH,
            f"session {session_id} belongs to {target.customer_id}, the payment names"
            f" {payment.customer_id}",
            renewal,
            (renewal,),
        )
    if not _same_money(payment, target.amount, target.currency):
        return Review(
            ReviewReason.AMOUNT_MISMATCH,
            f"session {session_id} asked {target.amount} {target.currency} before tax, the"
            f" payment is {payment.amount_before_tax} {payment.currency} before tax",
            renewal,
            (renewal,),
        )
    return BookOnSession(renewal, session_id)


def _without_customer(
    payment: ReportedPayment,
    candidates: Sequence[Candidate],
    *,
    call_bound: timedelta,
    slack: timedelta,
) -> Decision:
    """No customer: amount alone never identifies a renewal, but an in-flight attempt may
    still book this very payment when its own response arrives."""
    could = [c for c in candidates if _admits(c, payment, call_bound=call_bound, slack=slack)]
    in_flight = [c for c in could if c.kind is CandidateKind.IN_FLIGHT]
    if in_flight:
        return _wait(in_flight, "no customer on the report")
    return Review(
        ReviewReason.NO_CUSTOMER,
        "no customer on the report: cannot match by amount",
        None,
        _renewals(could),
    )


def _by_customer(
    payment: ReportedPayment,
    customer_id: str,
    candidates: Sequence[Candidate],
    paid_renewals: Collection[int],
    *,
    call_bound: timedelta,
    slack: timedelta,
) -> Decision:
    fits = [
        c
        for c in candidates
        if c.customer_id == customer_id and _admits(c, payment, call_bound=call_bound, slack=slack)
    ]
    in_flight = [c for c in fits if c.kind is CandidateKind.IN_FLIGHT]
    if in_flight:
        return _wait(in_flight, f"{customer_id} has a fitting attempt")
    renewals = _renewals(fits)
    if payment.created is None and fits:
        return Review(
            ReviewReason.NO_TIME,
            "no time on the report: cannot tell which attempt or session made it",
            renewals[0] if len(renewals) == 1 else None,
            renewals,
        )
    if not fits:
        return Review(
            ReviewReason.NO_FIT,
            f"nothing of {customer_id} asked {payment.amount_before_tax} {payment.currency}"
            " at that time",
            None,
            (),
        )
    if len(fits) > 1:
        return Review(
            ReviewReason.AMBIGUOUS,
            f"{len(fits)} candidates of {customer_id} fit the payment",
            renewals[0] if len(renewals) == 1 else None,
            renewals,
        )
    [fit] = fits
    if fit.kind is CandidateKind.AWAITING_CUSTOMER:
        return Review(
            ReviewReason.NEEDS_SESSION,
            f"renewal {fit.renewal_id} awaits its customer on-session: only a checkout"
            " session id identifies its payment",
            fit.renewal_id,
            renewals,
        )
    if fit.attempt_id is None:  # pragma: no cover - Candidate refuses an attempt without id
        raise AssertionError(f"unknown attempt of renewal {fit.renewal_id} has no id")
    if fit.renewal_id in paid_renewals:
        return Review(
            ReviewReason.ALREADY_PAID,
            f"unknown attempt {fit.attempt_id} fits, but renewal {fit.renewal_id} is already"
            " paid: a double charge",
            fit.renewal_id,
            renewals,
        )
    return BookOnAttempt(fit.renewal_id, fit.attempt_id)
