"""The one place for the timeline of retries, reminders and final actions.

Services never compute "3 days later" themselves: they ask a policy here, store the answer
in a ``next_attempt_at``-style column, and let the sweep pick it up (long delays never live
in Celery countdowns). All delays are measured from a fixed starting instant (the first
failure, the moment authentication was required), never chained from the previous step, so
a late sweep does not push the whole schedule back.

- :class:`DunningPolicy`: after a decline, new attempts ``retry_days`` after the first
  failure, then the final action; hard declines skip straight to the final action.
- :class:`ActionRequiredPolicy`: after a 402, reminder emails on ``reminder_days`` and the
  final action ``expire_after_days`` after entering ``action_required``.
- :class:`NotSentBackoff`: re-sending an attempt that provably never reached FastStar
  (seconds to minutes, capped).
- :class:`UpcomingRenewalPolicy` and :func:`card_expires_before`: the pre-renewal notice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import pairwise
from typing import TypeAlias

from renewals.domain._time import require_int, require_utc
from renewals.domain.states import SubscriptionEvent, SubscriptionStatus

__all__ = [
    "HARD_DECLINE_CODES",
    "MAX_NOT_SENT_DELAY",
    "ActionRequiredPolicy",
    "DunningDecision",
    "DunningPolicy",
    "FinalAction",
    "FinalActionDue",
    "FinalActionReason",
    "NotSentBackoff",
    "RetryAt",
    "UpcomingRenewalPolicy",
    "card_expires_before",
    "card_valid_until",
    "decide_after_decline",
    "is_hard_decline",
    "parse_day_list",
    "parse_durations",
    "parse_final_action",
]


class FinalAction(StrEnum):
    """What happens when a timeline runs out: end the subscription, or keep it as ``unpaid``
    (no more off-session charges; the customer may still settle on-session)."""

    CANCELED = "canceled"
    UNPAID = "unpaid"

    @property
    def subscription_status(self) -> SubscriptionStatus:
        return SubscriptionStatus(self.value)

    @property
    def subscription_event(self) -> SubscriptionEvent:
        if self is FinalAction.CANCELED:
            return SubscriptionEvent.FINAL_ACTION_CANCELED
        return SubscriptionEvent.FINAL_ACTION_UNPAID


class FinalActionReason(StrEnum):
    HARD_DECLINE = "hard_decline"
    RETRIES_EXHAUSTED = "retries_exhausted"
    AUTHENTICATION_EXPIRED = "authentication_expired"


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Make a new attempt at ``at`` (``retry_number`` counts retries from 1)."""

    at: datetime
    retry_number: int


@dataclass(frozen=True, slots=True)
class FinalActionDue:
    """No more attempts: apply ``action`` now, for ``reason``."""

    action: FinalAction
    reason: FinalActionReason


DunningDecision: TypeAlias = RetryAt | FinalActionDue


def _check_day_offsets(days: object, name: str, *, allow_empty: bool) -> tuple[int, ...]:
    """Day offsets must be whole days >= 1, strictly increasing (each one a new moment)."""
    if isinstance(days, str | bytes) or not isinstance(days, tuple | list):
        raise TypeError(f"{name} must be a tuple of ints, got {type(days).__name__}")
    values = tuple(days)
    if not values and not allow_empty:
        raise ValueError(f"{name} must name at least one day")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must contain whole days (ints), got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1 day each, got {value}")
    for before, after in pairwise(values):
        if after <= before:
            raise ValueError(
                f"{name} must be strictly increasing, got {after} after {before} in {values}"
            )
    return values


@dataclass(frozen=True, slots=True)
class DunningPolicy:
    """New attempts ``retry_days`` days after the FIRST failure, then ``final_action``.

    With the default ``(3, 5, 7)``: decline on day 0, retries on days 3, 5 and 7, and if the
    day-7 retry is declined too the final action applies: four attempts in all. An empty
    tuple means no retries: the first decline triggers the final action.
    """

    retry_days: tuple[int, ...] = (3, 5, 7)
    final_action: FinalAction = FinalAction.CANCELED

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ (lists from config become tuples).
        days = _check_day_offsets(self.retry_days, "retry_days", allow_empty=True)
        object.__setattr__(self, "retry_days", days)
        object.__setattr__(self, "final_action", FinalAction(self.final_action))

    @property
    def max_attempts(self) -> int:
        """Attempts per period: the original charge plus every retry."""
        return 1 + len(self.retry_days)

    def next_retry_at(self, first_failure_at: datetime, failures_so_far: int) -> datetime | None:
        """When to try again after ``failures_so_far`` declines (counting the latest one);
        ``None`` once the retries are exhausted and the final action is due.

        A retry whose moment has already passed (the service was down) is still returned:
        the sweep treats it as due immediately rather than silently dropping it.
        """
        first_failure_at = require_utc(first_failure_at, "first_failure_at")
        require_int(failures_so_far, "failures_so_far", minimum=1)
        if failures_so_far > len(self.retry_days):
            return None
        return first_failure_at + timedelta(days=self.retry_days[failures_so_far - 1])


# Declines that no retry of the same card can fix: the card is gone, blocked, wrong or
# unusable for this merchant. Visa and Mastercard also forbid (and fine) re-attempting
# "never approve" declines, so retrying them is both useless and costly. Deliberately NOT
# here: ``do_not_honor`` and ``generic_decline``/``card_declined`` (the issuer gives no
# reason, and these are often temporary risk or velocity blocks that later approve; the
# networks treat them as retryable within limits), ``insufficient_funds``,
# ``processing_error``, ``try_again_later``, velocity/limit codes, and
# ``transaction_not_allowed`` (can clear once the customer calls the issuer). The bounded
# dunning schedule caps how often those are retried.
HARD_DECLINE_CODES: frozenset[str] = frozenset(
    {
        "expired_card",
        "stolen_card",
        "lost_card",
        "pickup_card",
        "restricted_card",
        "invalid_account",
        "incorrect_number",
        "invalid_number",
        "card_not_supported",
        "currency_not_supported",
        "fraudulent",
        "new_account_information_available",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "stop_payment_order",
    }
)


def is_hard_decline(code: str | None) -> bool:
    """True for a decline no retry can fix. ``None`` (no code found in the response, which
    FastStar does not document) counts as soft: the bounded schedule is the safe default."""
    if code is None:
        return False
    return code.strip().lower() in HARD_DECLINE_CODES


def decide_after_decline(
    policy: DunningPolicy,
    *,
    first_failure_at: datetime,
    failures_so_far: int,
    decline_code: str | None,
) -> DunningDecision:
    """After a decline (``failures_so_far`` counts it): retry at a moment, or the final action.

    A hard decline ends the timeline at once; otherwise the policy's schedule decides.
    """
    require_int(failures_so_far, "failures_so_far", minimum=1)
    first_failure_at = require_utc(first_failure_at, "first_failure_at")
    if is_hard_decline(decline_code):
        return FinalActionDue(policy.final_action, FinalActionReason.HARD_DECLINE)
    at = policy.next_retry_at(first_failure_at, failures_so_far)
    if at is None:
        return FinalActionDue(policy.final_action, FinalActionReason.RETRIES_EXHAUSTED)
    return RetryAt(at=at, retry_number=failures_so_far)


@dataclass(frozen=True, slots=True)
class ActionRequiredPolicy:
    """After a 402 the customer must authenticate on-session (checkout link by email).

    Reminders go out ``reminder_days`` after entering ``action_required``; if the customer
    never pays, the final action is due ``expire_after_days`` after entering it. Reminders
    must fall before the expiry: one sent at or after it would point at a dead end. A
    reminder carries a fresh checkout link when the current one expires within
    ``link_margin`` (the customer needs time to use it).
    """

    reminder_days: tuple[int, ...] = (3, 6)
    expire_after_days: int = 7
    final_action: FinalAction = FinalAction.CANCELED
    link_margin: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        days = _check_day_offsets(self.reminder_days, "reminder_days", allow_empty=True)
        require_int(self.expire_after_days, "expire_after_days", minimum=1)
        if days and days[-1] >= self.expire_after_days:
            raise ValueError(
                f"reminder_days {days} must all come before expire_after_days "
                f"({self.expire_after_days})"
            )
        if not isinstance(self.link_margin, timedelta) or self.link_margin < timedelta(0):
            raise ValueError(f"link_margin must be a timedelta >= 0, got {self.link_margin!r}")
        object.__setattr__(self, "reminder_days", days)
        object.__setattr__(self, "final_action", FinalAction(self.final_action))

    def final_action_at(self, entered_at: datetime) -> datetime:
        entered_at = require_utc(entered_at, "entered_at")
        return entered_at + timedelta(days=self.expire_after_days)

    def is_expired(self, entered_at: datetime, now: datetime) -> bool:
        return require_utc(now, "now") >= self.final_action_at(entered_at)

    def reminder_at(self, entered_at: datetime, number: int) -> datetime:
        """When reminder ``number`` (1-based) is due."""
        entered_at = require_utc(entered_at, "entered_at")
        require_int(number, "number", minimum=1)
        if number > len(self.reminder_days):
            raise ValueError(f"there are only {len(self.reminder_days)} reminders, got {number}")
        return entered_at + timedelta(days=self.reminder_days[number - 1])

    def reminders_due(
        self, entered_at: datetime, now: datetime, already_sent: int
    ) -> tuple[int, ...]:
        """The 1-based numbers of the reminders due at ``now`` and not yet sent.

        Empty once the final action is due (it supersedes reminders). After downtime more
        than one may be due: send a single email and record them all as sent, so the
        customer is not flooded.
        """
        now = require_utc(now, "now")
        require_int(already_sent, "already_sent", minimum=0)
        if self.is_expired(entered_at, now):
            return ()
        return tuple(
            number
            for number in range(already_sent + 1, len(self.reminder_days) + 1)
            if self.reminder_at(entered_at, number) <= now
        )

    def next_reminder_at(self, entered_at: datetime, already_sent: int) -> datetime | None:
        require_int(already_sent, "already_sent", minimum=0)
        if already_sent >= len(self.reminder_days):
            return None
        return self.reminder_at(entered_at, already_sent + 1)

    def link_needs_refresh(self, link_expires_at: datetime | None, now: datetime) -> bool:
        """Whether a reminder sent at ``now`` needs a new link: the current one has expired,
        will within ``link_margin``, or its expiry is unknown."""
        if link_expires_at is None:
            return True
        return (
            require_utc(link_expires_at, "link_expires_at") - require_utc(now, "now")
            < self.link_margin
        )

    def next_wakeup_at(self, entered_at: datetime, already_sent: int) -> datetime:
        """The next moment the sweep must look at this renewal: a reminder or the expiry."""
        reminder = self.next_reminder_at(entered_at, already_sent)
        expiry = self.final_action_at(entered_at)
        return expiry if reminder is None else min(reminder, expiry)


# Not-sent retries must stay short: the attempt row is open and blocks the period; anything
# that needs hours is an outage for operators to see, not a backoff to hide in.
MAX_NOT_SENT_DELAY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class NotSentBackoff:
    """Delays before re-sending an attempt that never reached FastStar (connect error, 429).

    ``delay(1)`` is the wait before the first re-send; past the end of ``delays`` the last
    one repeats (the cap). Deterministic on purpose: no clock, no randomness in the domain.
    """

    delays: tuple[timedelta, ...] = (
        timedelta(seconds=10),
        timedelta(seconds=30),
        timedelta(minutes=2),
        timedelta(minutes=10),
    )

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
        if delays[-1] > MAX_NOT_SENT_DELAY:
            raise ValueError(f"delays must stay within {MAX_NOT_SENT_DELAY}, got {delays[-1]}")
        object.__setattr__(self, "delays", delays)

    @property
    def cap(self) -> timedelta:
        return self.delays[-1]

    def delay(
        self, attempt_number: int, *, retry_after: timedelta | float | None = None
    ) -> timedelta:
        """Wait before re-send ``attempt_number`` (1-based).

        A server ``Retry-After`` (seconds or timedelta) lengthens the wait, but never beyond
        :attr:`cap`: a retry that comes back 429 again only costs one more short wait.
        """
        require_int(attempt_number, "attempt_number", minimum=1)
        base = self.delays[min(attempt_number, len(self.delays)) - 1]
        if retry_after is None:
            return base
        if not isinstance(retry_after, timedelta):
            retry_after = timedelta(seconds=float(retry_after))
        return min(max(base, retry_after), self.cap)

    def retry_at(
        self, now: datetime, attempt_number: int, *, retry_after: timedelta | float | None = None
    ) -> datetime:
        return require_utc(now, "now") + self.delay(attempt_number, retry_after=retry_after)


def card_valid_until(exp_month: int, exp_year: int) -> datetime:
    """The first instant (UTC) the card is no longer valid: cards are valid through the
    last day of their expiry month, so this is midnight starting the following month."""
    require_int(exp_month, "exp_month", minimum=1)
    if exp_month > 12:
        raise ValueError(f"exp_month must be 1..12, got {exp_month}")
    require_int(exp_year, "exp_year", minimum=0)
    if not 1000 <= exp_year <= 9998:
        # A 2-digit year ("30") would otherwise mean year 30 and look long expired.
        raise ValueError(f"exp_year must be a 4-digit year, got {exp_year}")
    if exp_month == 12:
        return datetime(exp_year + 1, 1, 1, tzinfo=UTC)
    return datetime(exp_year, exp_month + 1, 1, tzinfo=UTC)


def card_expires_before(exp_month: int, exp_year: int, at: datetime) -> bool:
    """True when a card expiring ``exp_month/exp_year`` is no longer valid at ``at``."""
    return require_utc(at, "at") >= card_valid_until(exp_month, exp_year)


@dataclass(frozen=True, slots=True)
class UpcomingRenewalPolicy:
    """A notice ``notice_days`` before each renewal, warning when the saved card will have
    expired by then (so the customer can update it before an avoidable decline)."""

    notice_days: int = 7

    def __post_init__(self) -> None:
        require_int(self.notice_days, "notice_days", minimum=1)

    def notice_at(self, renewal_at: datetime) -> datetime:
        return require_utc(renewal_at, "renewal_at") - timedelta(days=self.notice_days)

    def notice_due(self, renewal_at: datetime, now: datetime) -> bool:
        """Inside the notice window: late enough to send, and the renewal is still ahead."""
        now = require_utc(now, "now")
        return self.notice_at(renewal_at) <= now < require_utc(renewal_at, "renewal_at")

    def card_warning(self, exp_month: int, exp_year: int, renewal_at: datetime) -> bool:
        return card_expires_before(exp_month, exp_year, renewal_at)


_INT_ITEM = re.compile(r"[+-]?\d+")
_DURATION_ITEM = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)?")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _split_items(text: str, name: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a string, got {type(text).__name__}")
    if not text.strip():
        return []
    items = [item.strip() for item in text.split(",")]
    for position, item in enumerate(items, start=1):
        if not item:
            raise ValueError(f"{name}: item {position} of {text!r} is empty (stray comma?)")
    return items


def parse_day_list(text: str, *, name: str = "days") -> tuple[int, ...]:
    """Parse a config value like ``"3,5,7"``: whole days >= 1, strictly increasing.

    Blank text gives ``()`` (no retries / no reminders). Errors name the setting (``name``)
    and say what was wrong.
    """
    values: list[int] = []
    for item in _split_items(text, name):
        if not _INT_ITEM.fullmatch(item):
            raise ValueError(f"{name}: {item!r} is not a whole number of days (in {text!r})")
        values.append(int(item))
    try:
        return _check_day_offsets(values, name, allow_empty=True)
    except ValueError as exc:
        raise ValueError(f"{exc} (parsed from {text!r})") from None


def parse_durations(text: str, *, name: str = "delays") -> tuple[timedelta, ...]:
    """Parse ``"10s,30s,2m,10m"`` (units ms, s, m, h; a bare number is seconds)."""
    values: list[timedelta] = []
    for item in _split_items(text, name):
        match = _DURATION_ITEM.fullmatch(item)
        if match is None:
            raise ValueError(
                f"{name}: {item!r} is not a duration such as '10s', '2m' or '1h' (in {text!r})"
            )
        number, unit = match.groups()
        values.append(timedelta(seconds=float(number) * _DURATION_UNITS[unit or "s"]))
    return tuple(values)


def parse_final_action(text: str) -> FinalAction:
    """``"canceled"`` or ``"unpaid"`` (case and surrounding spaces ignored)."""
    try:
        return FinalAction(text.strip().lower())
    except ValueError:
        options = ", ".join(action.value for action in FinalAction)
        raise ValueError(f"final action must be one of {options}, got {text!r}") from None
