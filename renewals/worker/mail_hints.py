"""Waking the batch delivery without one message per email.

Services hand each queued email on (``Work.DELIVER``); publishing one task per email would
cost a broker message, a task and two transactions per receipt. Instead the first email
handed on in a process starts a timer, and the batch message is published when it fires,
:data:`WINDOW_S` later: every email handed on meanwhile was committed before that publish,
so the batch that runs after it claims them all. An email handed on after the timer fired
starts the next one. So a busy process sends one batch message per window, not one per
email, and an email waits up to the window plus the queue's wait.

The delay is a timer in the process rather than a countdown on the message: a worker holds
a message with a countdown reserved until it is due, and on a busy worker those reserved
messages held back the charges behind them (bench: charges received at half the rate).

If the process dies before its timer fires, or the broker does not take the message, the
emails are still ``pending`` and due: the sweep hands them out at its next tick, as it does
for any lost message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

# Short enough that nobody waits for a receipt, long enough that a burst of renewals in one
# process costs one batch message per second, not one per email.
WINDOW_S = 1.0


def _timer(delay_s: float, fire: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, fire)
    timer.daemon = True  # a process that stops does not wait for it (the sweep covers)
    timer.start()


class DeliveryHints:
    """At most one batch message per window, per process (thread-safe)."""

    def __init__(
        self,
        send: Callable[[], bool],
        *,
        window_s: float = WINDOW_S,
        schedule: Callable[[float, Callable[[], None]], None] = _timer,
    ) -> None:
        self._send = send
        self._window_s = window_s
        self._schedule = schedule
        self._lock = threading.Lock()
        self._waiting = False

    def hint(self) -> bool:
        """Make sure a batch message is published after now; True if this call started
        the timer that will publish it."""
        with self._lock:
            if self._waiting:
                return False  # the timer's publish comes after this email's commit
            self._waiting = True
        self._schedule(self._window_s, self._fire)
        return True

    def _fire(self) -> None:
        with self._lock:
            self._waiting = False  # before publishing: a later email starts the next timer
        self._send()
