"""Which billing period to materialise now, after normal operation or after downtime.

A period is *due* once its start is ``<= now``; ``last_settled_index`` is the newest period
already materialised as a renewal (whatever its outcome). When the service was down across
several period starts, more than one period is due at once and the policy decides:

- ``latest`` (default): charge only the newest due period and skip the older missed ones.
  A customer whose renewal was delayed by our outage is not hit with a burst of back-dated
  charges for service periods that are already over; the skipped indices are reported by
  :func:`skipped_period_indices` so the caller can log them.
- ``all``: materialise every missed period, oldest first, one per call (the caller loops:
  each call returns ``last_settled_index + 1`` until it catches up with ``now``).

Either way the answer is ``None`` when nothing is due (the next period starts in the future).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from renewals.domain._time import require_int
from renewals.domain.periods import Interval, period_index_at

__all__ = ["CatchUpPolicy", "next_period_to_charge", "skipped_period_indices"]


class CatchUpPolicy(StrEnum):
    LATEST = "latest"
    ALL = "all"


def next_period_to_charge(
    anchor: datetime,
    interval: Interval,
    count: int,
    *,
    now: datetime,
    last_settled_index: int | None,
    policy: CatchUpPolicy = CatchUpPolicy.LATEST,
) -> int | None:
    """The index of the period to materialise now, or ``None`` if none is due.

    Periods start at the anchor (period 0 is due at the anchor). ``last_settled_index`` is
    the newest period already materialised (``None``: none yet). With
    ``CatchUpPolicy.LATEST`` the newest due period is returned and older missed ones are
    skipped; with ``CatchUpPolicy.ALL`` the oldest not-yet-materialised period is returned,
    so repeated calls walk through every missed period in order.
    """
    policy = CatchUpPolicy(policy)
    if last_settled_index is not None:
        require_int(last_settled_index, "last_settled_index", minimum=0)
    current = period_index_at(anchor, interval, count, now)
    first_open = 0 if last_settled_index is None else last_settled_index + 1
    # current < first_open also covers "now is before the anchor" (current == -1) and a
    # period materialised ahead of time: nothing more is due yet.
    if current < first_open:
        return None
    if policy is CatchUpPolicy.ALL:
        return first_open
    return current


def skipped_period_indices(last_settled_index: int | None, chosen_index: int) -> range:
    """The periods that choosing ``chosen_index`` skips (empty under the ``all`` policy)."""
    first_open = 0 if last_settled_index is None else last_settled_index + 1
    return range(first_open, chosen_index)
