"""Waiting on a condition, never on a duration.

Asynchronous side effects (a webhook marked delivered, a worker's commit) happen "soon", and
how soon depends on the machine's load. Tests poll for the condition they assert, with a
deadline generous enough that only a real failure reaches it: on an idle machine the wait
ends within milliseconds, on a loaded one it simply takes longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE_S = 30.0
"""Far beyond any honest delay on a loaded CI machine; well inside pytest's 120 s timeout."""


def wait_for(
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    timeout: float = DEADLINE_S,
    interval: float = 0.01,
    what: str = "the condition",
) -> T:
    """Call ``probe`` until ``accept`` likes its result, and return that result.

    On timeout the AssertionError shows the last value seen, which is what a failing test's
    reader needs.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {value!r}"
            )
        time.sleep(interval)


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float = DEADLINE_S,
    interval: float = 0.1,
    what: str = "the condition",
) -> None:
    """Poll ``predicate`` until it is true; AssertionError naming ``what`` on timeout."""
    wait_for(predicate, bool, timeout=timeout, interval=interval, what=what)
