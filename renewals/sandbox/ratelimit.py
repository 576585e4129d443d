"""Optional token-bucket rate limit (Part B; FastStar documents none)."""

from __future__ import annotations

import math
import time


class TokenBucket:
    """Refills ``rate`` tokens per second up to a burst of ``max(1, rate)`` tokens."""

    def __init__(self) -> None:
        self._rate = 0.0
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def take(self, rate: float) -> float | None:
        """None if a request may pass now, else seconds until one may (for Retry-After)."""
        now = time.monotonic()
        capacity = max(1.0, rate)
        if rate != self._rate:  # reconfigured: start full at the new rate
            self._rate, self._tokens = rate, capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / rate

    def reset(self) -> None:
        self._rate = 0.0


def retry_after_header(wait_s: float) -> str:
    """Whole seconds, rounded up, at least 1 (Retry-After takes an integer)."""
    return str(max(1, math.ceil(wait_s)))
