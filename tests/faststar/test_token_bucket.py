"""The client-side token bucket, on a fake clock."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from renewals.faststar import TokenBucket
from tests.faststar.fakes import client, envelope, respond


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_burst_then_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token at 2/s
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    clock.now += 100  # refill is capped at the burst
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]


def test_acquire_waits_exactly_as_long_as_needed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire()
    assert bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.25)]


def test_acquire_gives_up_after_timeout() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire()
    assert not bucket.acquire(timeout=0.5)
    assert clock.sleeps == []


def test_clock_going_backwards_adds_no_tokens() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1.0, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire()
    clock.now -= 50
    assert not bucket.try_acquire()


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (float("nan"), None), (1, 0.5)])
def test_invalid_configuration(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst=burst)


def test_default_burst_is_one_second_worth() -> None:
    assert TokenBucket(10).burst == 10
    assert TokenBucket(0.2).burst == 1


def test_thread_safe_under_contention() -> None:
    bucket = TokenBucket(1.0, burst=50)  # real clock: ~no refill during the test
    taken: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(20):
            ok = bucket.try_acquire()
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 50 <= sum(taken) <= 51  # at most one refilled token in the test's lifetime


def test_client_throttles_when_configured() -> None:
    body = envelope([])
    with client(respond(200, body), rate_limit_per_s=20.0, rate_limit_burst=1) as c:
        started = time.monotonic()
        for _ in range(5):
            c.list_products()
        elapsed = time.monotonic() - started
    assert elapsed >= 4 / 20 * 0.9


def test_client_is_unthrottled_by_default() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json=envelope([]))

    with client(handler) as c:
        started = time.monotonic()
        for _ in range(200):
            c.list_prices()
    assert calls == 200
    assert time.monotonic() - started < 2
