"""Unknown outcomes: when to look again, whether a same-key retry is allowed, and which
reported payment settles which attempt. Pure: no clock, no I/O; callers pass ``now``.

- :class:`UnknownRecheckPolicy`: the janitor's backoff (5 min, 1 h, then daily by default)
  and the same-key retry horizon. A retry re-sends the attempt's own idempotency key, which
  is only safe while FastStar still remembers the key: keys are undocumented, so retries are
  allowed only when the operator trusts them (``RENEWALS_TRUST_IDEMPOTENCY_KEYS``) and only
  while the first send is younger than the horizon (default 20 h); after that an operator
  decides.
- :func:`match_payment`: which open attempt (in flight or unknown) a payment FastStar
  reports belongs to, when the payment id is not known to us (a lost response tells us no
  id). Amount and currency must be equal, the customer too where the event names one, and
  the payment must fall in the attempt's time window. Anything ambiguous is no match: an
  operator decides rather than a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from renewals.domain._time import require_int, require_utc

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "AttemptWindow",
    "RecheckDecision",
    "ReportedPayment",
    "UnknownRecheckPolicy",
    "match_payment",
]

# How far FastStar's clock and ours may disagree when a payment's time is compared with the
# moment we sent the charge.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)


class RecheckDecision(StrEnum):
    """What the janitor does with an unknown attempt nothing has settled yet."""

    RESEND_SAME_KEY = "resend_same_key"
    ESCALATE = "escalate"


@dataclass(frozen=True, slots=True)
class UnknownRecheckPolicy:
    """Backoff between re-examinations of an unknown attempt, and the same-key horizon.

    ``delays[n]`` is the wait after the ``n``-th look (0: the moment the outcome became
    unknown); past the end the last delay repeats. With the defaults: 5 min after the
    outcome became unknown, then 1 h, then every 24 h.
    """

    delays: tuple[timedelta, ...] = (
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(hours=24),
    )
    retry_horizon: timedelta = timedelta(hours=20)

    def __post_init__(self) -> None:
        delays = tuple(self.delays)
        if not delays:
            raise ValueError("delays must name at least one delay")
        for delay in delays:
            if not isinstance(delay, timedelta) or delay <= timedelta(0):
                raise ValueError(f"delays must be positive timedeltas, got {delay!r}")
        for before, after in pairwise(delays):
            if after < before:
                raise ValueError(f"delays must not decrease, got {after} after {before}")
        if not isinstance(self.retry_horizon, timedelta) or self.retry_horizon <= timedelta(0):
            raise ValueError(
                f"retry_horizon must be a positive timedelta, got {self.retry_horizon}"
            )
        object.__setattr__(self, "delays", delays)

    def delay(self, checks_done: int) -> timedelta:
        """The wait after ``checks_done`` looks (0: since the outcome became unknown)."""
        require_int(checks_done, "checks_done", minimum=0)
        return self.delays[min(checks_done, len(self.delays) - 1)]

    def next_check_at(self, now: datetime, checks_done: int) -> datetime:
        return require_utc(now, "now") + self.delay(checks_done)

    def within_horizon(self, first_sent_at: datetime, now: datetime) -> bool:
        """True while the attempt's first send is younger than the horizon."""
        age = require_utc(now, "now") - require_utc(first_sent_at, "first_sent_at")
        return age < self.retry_horizon

    def decide(
        self, *, first_sent_at: datetime, now: datetime, trust_keys: bool
    ) -> RecheckDecision:
        """Nothing matched the attempt: re-send its own key, or hand it to an operator."""
        if trust_keys and self.within_horizon(first_sent_at, now):
            return RecheckDecision.RESEND_SAME_KEY
        return RecheckDecision.ESCALATE


@dataclass(frozen=True, slots=True)
class ReportedPayment:
    """A payment FastStar reported (webhook, polled session or operator)."""

    payment_intent_id: str
    amount: int
    currency: str
    customer_id: str | None
    paid_at: datetime | None  # the event's ``created``; None when not known


@dataclass(frozen=True, slots=True)
class AttemptWindow:
    """An attempt that may have charged: what it asked for, and when it could have run.

    FastStar can only have executed the charge between the first send and the end of the
    last send's call; ``call_bound`` bounds a call (our lease: a call still running after it
    was declared unknown).
    """

    attempt_id: int
    customer_id: str
    amount: int
    currency: str
    first_sent_at: datetime
    last_sent_at: datetime
    call_bound: timedelta

    def admits(self, payment: ReportedPayment, *, skew: timedelta = DEFAULT_CLOCK_SKEW) -> bool:
        if (payment.amount, payment.currency.upper()) != (self.amount, self.currency.upper()):
            return False
        if payment.customer_id is not None and payment.customer_id != self.customer_id:
            return False
        if payment.paid_at is None:
            # Only a customer-named payment may match without a time (an operator's record);
            # amount and currency alone are not enough.
            return payment.customer_id is not None
        paid_at = require_utc(payment.paid_at, "paid_at")
        start = require_utc(self.first_sent_at, "first_sent_at") - skew
        end = require_utc(self.last_sent_at, "last_sent_at") + self.call_bound + skew
        return start <= paid_at <= end


def match_payment(
    payment: ReportedPayment,
    attempts: Sequence[AttemptWindow],
    *,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> AttemptWindow | None:
    """The one attempt ``payment`` belongs to, or None when none or several fit.

    ``attempts`` are the open attempts (in flight or unknown) that could have charged; a
    payment that fits two of them is ambiguous and left to an operator.
    """
    fits = [a for a in attempts if a.admits(payment, skew=skew)]
    return fits[0] if len(fits) == 1 else None
