"""Waking the batch delivery without one message per email.

Services hand each queued email on (``Work.DELIVER``); publishing one task per email would
cost a broker message, a task and two transactions per receipt. Instead a process sends at
most one batch message per :data:`WINDOW_S`, delayed by that window (a countdown): every
email handed on while that message waits was committed before the batch runs, so the batch
claims it. An email handed on after the window opens a new one. Latency: up to the window
plus the queue's.

If the batch's worker runs ahead of the publisher's clock by more than the window, or the
message is lost, an email can miss its batch; it is still ``pending`` and due, and the
sweep hands it out at its next tick, as it does for any lost message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Short enough that nobody waits for a receipt, long enough that a burst of renewals in one
# process costs one batch message per second, not one per email.
WINDOW_S = 1.0


class DeliveryHints:
    """At most one delayed batch message per window, per process (thread-safe)."""

    def __init__(
        self,
        send: Callable[[float], bool],
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._covered_until = float("-inf")

    def hint(self) -> bool:
        """Make sure a batch runs after now; True if this call published its message."""
        with self._lock:
            now = self._clock()
            if now < self._covered_until:
                return False  # the pending message runs after this email's commit
            self._covered_until = now + self._window_s
        if self._send(self._window_s):
            return True
        with self._lock:  # not sent: the next email tries again (the sweep covers this one)
            self._covered_until = float("-inf")
        return False
