"""Unknown outcomes: when to look again and whether a same-key retry is allowed. Pure: no
clock, no I/O; callers pass ``now``.

- :class:`UnknownRecheckPolicy`: the janitor's backoff (5 min, 1 h, then daily by default)
  and the same-key retry horizon. A retry re-sends the attempt's own idempotency key, which
  is only safe while FastStar still remembers the key: keys are undocumented, so retries are
  allowed only when the operator trusts them (``RENEWALS_TRUST_IDEMPOTENCY_KEYS``) and only
  while the first send is younger than the horizon (default 20 h); after that an operator
  decides.

Which reported payment settles which attempt is :mod:`renewals.domain.matching`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import pairwise

from renewals.domain._time import require_int, require_utc

__all__ = [
    "RecheckDecision",
    "UnknownRecheckPolicy",
]


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
