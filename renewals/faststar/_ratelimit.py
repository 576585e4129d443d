"""A thread-safe token bucket: the client's own brake, so FastStar never has to send 429.

FastStar documents no rate limit; this is off unless the client is given
``rate_limit_per_s``. Tokens refill continuously at ``rate_per_s`` up to ``burst``; each
request takes one. Waiting happens outside the lock so one slow caller never blocks the
bookkeeping of the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Token bucket limiter. ``clock`` and ``sleep`` are injectable for deterministic tests."""

    __slots__ = ("_burst", "_clock", "_lock", "_rate", "_sleep", "_tokens", "_updated")

    def __init__(
        self,
        rate_per_s: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_s > 0:  # also rejects NaN
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        # Default burst: one second's worth, at least one request.
        capacity = max(1.0, rate_per_s) if burst is None else burst
        if not capacity >= 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self._rate = float(rate_per_s)
        self._burst = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst  # start full: a fresh worker may send its burst at once
        self._updated = clock()

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _take_or_wait_time(self, tokens: float) -> float:
        """Take ``tokens`` and return 0.0, or return the seconds until they will be there."""
        with self._lock:
            now = self._clock()
            elapsed = now - self._updated
            if elapsed > 0:  # a clock that stands still or goes back adds nothing
                self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._updated = now
            if self._tokens >= tokens:
                self._tokens -= tokens
                return 0.0
            return (tokens - self._tokens) / self._rate

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if available now; never blocks."""
        self._check(tokens)
        return self._take_or_wait_time(tokens) == 0.0

    def acquire(self, tokens: float = 1.0, *, timeout: float | None = None) -> bool:
        """Block until ``tokens`` are taken (True) or ``timeout`` seconds would pass (False)."""
        self._check(tokens)
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            wait = self._take_or_wait_time(tokens)
            if wait == 0.0:
                return True
            if deadline is not None:
                remaining = deadline - self._clock()
                if wait > remaining:
                    return False
            # Another thread may take the refill first; the loop then just waits again.
            self._sleep(wait)

    def _check(self, tokens: float) -> None:
        if not 0 < tokens <= self._burst:
            raise ValueError(f"tokens must be in (0, burst={self._burst}], got {tokens!r}")
