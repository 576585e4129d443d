"""A sweep that drains: a due set of many batches is claimed by one beat tick's work, each
renewal once, at most ``depth`` ahead of the workers, by at most one chain at a time.

Small batches (20) and 130 due subscriptions inserted directly keep this fast; the limits
are the same code path as production's 500 and 2000. SQLite and PostgreSQL alike, except
where threads race on PostgreSQL's row locks.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.models import AuditEvent
from renewals.models.db import unit_of_work
from renewals.services import leases
from renewals.services import sweep as sweep_module
from renewals.services.charge_checks import ChargeOrder, begin_charge
from renewals.services.drain import CHAIN, CHAIN_LEASE, Outcome, drain
from renewals.services.followups import FollowUps
from renewals.services.sweep import (
    Limits,
    drain_step,
    materialise_due,
    sweep_once,
    unstarted_claims,
)
from renewals.worker import tasks
from renewals.worker.names import SWEEP_DRAIN_TASK, SWEEP_TASK
from tests.support.due import insert_due_subscriptions, leased_renewals, renewal_ids
from tests.support.factories import Clock
from tests.support.waiting import wait_for, wait_until

DUE = 130
SMALL = Limits(batch=20, depth=None)
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@dataclass
class Broker:
    """What the tasks published, in order; drain messages run here like a worker would."""

    messages: deque[tuple[str, tuple[Any, ...]]]

    def publish(self, task: Any, *args: Any) -> bool:
        self.messages.append((task.name, args))
        return True


@pytest.fixture
def broker(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, settings: Settings, clock: Clock
) -> Iterator[Broker]:
    """The sweep and drain tasks' own code, with this test's database, clock and limits,
    publishing into a list instead of a real broker."""
    fake = Broker(deque())
    runtime = SimpleNamespace(engine=engine, settings=settings, clock=clock)
    monkeypatch.setattr(tasks, "get_runtime", lambda: runtime)
    monkeypatch.setattr(tasks, "publish", fake.publish)
    monkeypatch.setattr(sweep_module, "LIMITS", SMALL)
    yield fake


def test_one_tick_claims_a_due_set_of_many_batches_without_waiting_for_the_next(
    engine: Engine, clock: Clock, broker: Broker
) -> None:
    insert_due_subscriptions(engine, DUE, now=clock())
    tasks.run_sweep()  # the beat's tick: one batch, then the drain's first message
    charged: list[int] = []
    drains = 0
    while broker.messages:  # the worker, taking messages in order; the clock stands still
        name, args = broker.messages.popleft()
        if name == SWEEP_DRAIN_TASK:
            drains += 1
            tasks.run_drain(*args)
        else:
            assert name == tasks.TASKS[Work.CHARGE].name
            charged += args
    assert drains == 1  # one chain, one task: no later tick needed
    assert len(renewal_ids(engine)) == DUE
    assert sorted(charged) == renewal_ids(engine)  # every renewal handed out, once
    assert leased_renewals(engine, clock()) == DUE
    with unit_of_work(engine) as session:  # the chain let its lease go
        assert leases.holder_of(session, CHAIN, now=clock()) is None


def test_materialising_a_batch_is_a_handful_of_statements_whatever_its_size(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    insert_due_subscriptions(engine, DUE, now=clock())
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(str(args[2]).split()[0].upper())

    from sqlalchemy import event

    event.listen(engine, "before_cursor_execute", record)
    try:
        with unit_of_work(engine) as session:
            done = materialise_due(session, now=clock(), settings=settings, limit=500)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert (done.subscriptions, len(done.created)) == (DUE, DUE)
    # SELECT the due rows, INSERT the renewals, INSERT their audit rows, UPDATE the
    # subscriptions (SQLite's BEGIN IMMEDIATE left out): not one statement per row.
    assert [s for s in statements if s != "BEGIN"] == ["SELECT", "INSERT", "INSERT", "UPDATE"]
    with unit_of_work(engine) as session:
        created = session.scalar(select(func.count()).where(AuditEvent.action == "renewal_created"))
    assert created == DUE


@POSTGRES_ONLY
def test_concurrent_sweeps_and_chains_claim_each_renewal_once(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    """Two beats' sweeps and two drain loops at once (the chain lease left out, so that they
    really race): row locks split the work, nothing is claimed or materialised twice."""
    insert_due_subscriptions(engine, DUE, now=clock())
    start = threading.Barrier(4)

    def one_sweep() -> list[int]:
        start.wait()
        with unit_of_work(engine) as session:
            return sweep_once(session, now=clock(), settings=settings, limits=SMALL).follow.ids(
                Work.CHARGE
            )

    def a_chain() -> list[int]:
        start.wait()
        claimed: list[int] = []
        while True:
            with unit_of_work(engine) as session:
                step = drain_step(session, now=clock(), settings=settings, limits=SMALL)
            claimed += step.follow.ids(Work.CHARGE)
            if step.drained:
                return claimed

    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(f) for f in (one_sweep, one_sweep, a_chain, a_chain)]
        claimed = [renewal_id for run in runs for renewal_id in run.result(timeout=60)]
    # A chain stops once it sees nothing due; rows a racing transaction held are the others'.
    assert Counter(claimed).most_common(1)[0][1] == 1
    assert sorted(claimed) == renewal_ids(engine)
    assert len(claimed) == DUE


def _start(engine: Engine, settings: Settings, clock: Clock, renewal_ids: list[int]) -> None:
    """Workers begin these charges (step 1: the attempt committed, the renewal charging)."""
    for renewal_id in renewal_ids:
        with unit_of_work(engine) as session:
            assert isinstance(
                begin_charge(session, renewal_id, now=clock(), settings=settings), ChargeOrder
            )


def test_backpressure_stops_claiming_at_the_depth_and_resumes_when_rows_start(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    insert_due_subscriptions(engine, DUE, now=clock())
    limits = Limits(batch=20, depth=40)
    handed: list[int] = []
    steps: list[int] = []  # claimed per step, every step (an empty one too)
    lock = threading.Lock()

    def hand_out(follow: FollowUps) -> None:
        with lock:
            handed.extend(follow.ids(Work.CHARGE))
            steps.append(len(follow.work))
        # Never more claimed-but-unstarted than the depth, after any commit.
        with unit_of_work(engine) as session:
            assert unstarted_claims(session, now=clock(), limit=1000) <= limits.depth

    def claimed() -> list[int]:
        with lock:
            return list(handed)

    def steps_so_far() -> int:
        with lock:
            return len(steps)

    with ThreadPoolExecutor(1) as pool:
        chain = pool.submit(
            drain,
            engine,
            settings=settings,
            clock=clock,
            hand_out=hand_out,
            limits=limits,
            full_wait_s=60.0,  # keep polling: the test, not a timer, frees room
            poll_s=0.01,
        )
        first = wait_for(claimed, lambda ids: len(ids) >= 40, what="the depth to be claimed")
        assert len(first) == 40
        # Full: the chain keeps looking and claims nothing more.
        polled_from = steps_so_far()
        wait_until(lambda: steps_so_far() >= polled_from + 5, what="the chain to poll")
        assert len(claimed()) == 40
        with unit_of_work(engine) as session:
            assert unstarted_claims(session, now=clock(), limit=1000) == 40
        # Workers start 25 charges: exactly that much room comes back, no more.
        _start(engine, settings, clock, first[:25])
        wait_for(claimed, lambda ids: len(ids) >= 65, what="claims to resume")
        polled_from = steps_so_far()
        wait_until(lambda: steps_so_far() >= polled_from + 5, what="the chain to poll")
        assert len(claimed()) == 65
        # Then workers keep up with everything: the chain drains and ends.
        started = set(first[:25])
        while not chain.done():
            todo = [r for r in claimed() if r not in started]
            _start(engine, settings, clock, todo)
            started.update(todo)
            wait_until(
                lambda seen=frozenset(started): (
                    chain.done() or any(r not in seen for r in claimed())
                ),
                what="the chain to claim more or finish",
            )
        result = chain.result()
    assert result.outcome is Outcome.DRAINED
    assert sorted(claimed()) == renewal_ids(engine)
    assert len(claimed()) == DUE


def test_at_most_one_chain_holds_the_lease(engine: Engine, clock: Clock) -> None:
    with unit_of_work(engine) as session:
        assert leases.hold(session, CHAIN, "a", now=clock(), ttl=CHAIN_LEASE)
    with unit_of_work(engine) as session:
        assert not leases.hold(session, CHAIN, "b", now=clock(), ttl=CHAIN_LEASE)
        assert leases.hold(session, CHAIN, "a", now=clock(), ttl=CHAIN_LEASE)  # extended
    later = clock() + CHAIN_LEASE + timedelta(seconds=1)  # "a" died: its lease expired
    with unit_of_work(engine) as session:
        assert leases.hold(session, CHAIN, "b", now=later, ttl=CHAIN_LEASE)
    with unit_of_work(engine) as session:
        assert not leases.hold(session, CHAIN, "a", now=later, ttl=CHAIN_LEASE)  # lost
        assert leases.holder_of(session, CHAIN, now=later) == "b"
        leases.release(session, CHAIN, "a")  # not its lease: nothing happens
        assert leases.holder_of(session, CHAIN, now=later) == "b"
        leases.release(session, CHAIN, "b")
        assert leases.holder_of(session, CHAIN, now=later) is None


def test_a_chain_that_hands_on_keeps_its_lease_and_a_second_chain_stays_out(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    insert_due_subscriptions(engine, DUE, now=clock())
    limits = Limits(batch=20, depth=40)
    out: list[int] = []

    def run(holder: str | None = None) -> Any:
        return drain(
            engine,
            settings=settings,
            clock=clock,
            hand_out=lambda f: out.extend(f.ids(Work.CHARGE)),
            holder=holder,
            limits=limits,
            full_wait_s=0.0,  # hand on as soon as backpressure is full
        )

    first = run()
    assert (first.outcome, first.hand_on, len(out)) == (Outcome.FULL, True, 40)
    assert run().outcome is Outcome.HELD  # a second chain (a beat's) stays out
    assert len(out) == 40
    again = run(first.holder)  # the chain's next message: still full, hands on again
    assert (again.outcome, len(out)) == (Outcome.FULL, 40)
    _start(engine, settings, clock, out)
    assert run(first.holder).outcome is Outcome.FULL
    assert len(out) == 80


@POSTGRES_ONLY
def test_chains_started_at_once_run_one_at_a_time(
    engine: Engine, settings: Settings, clock: Clock
) -> None:
    insert_due_subscriptions(engine, DUE, now=clock())
    others_done = threading.Event()
    start = threading.Barrier(4)

    def hold_on(follow: FollowUps) -> None:
        others_done.wait(30)  # the lease holder stays inside its chain meanwhile

    def chain() -> Outcome:
        start.wait()
        return drain(engine, settings=settings, clock=clock, hand_out=hold_on, limits=SMALL).outcome

    with ThreadPoolExecutor(4) as pool:
        runs = [pool.submit(chain) for _ in range(4)]
        held = wait_for(
            lambda: [r.result() for r in runs if r.done()],
            lambda done: len(done) == 3,
            what="three chains to find the lease held",
        )
        others_done.set()
        outcomes = sorted(r.result(timeout=60) for r in runs)
    assert held == [Outcome.HELD] * 3
    assert outcomes == sorted([Outcome.DRAINED, Outcome.HELD, Outcome.HELD, Outcome.HELD])
    assert len(renewal_ids(engine)) == DUE


def test_the_sweep_task_starts_the_chain_only_when_a_batch_ran_full(
    engine: Engine, clock: Clock, broker: Broker
) -> None:
    insert_due_subscriptions(engine, 5, now=clock())
    tasks.run_sweep()
    assert [name for name, _ in broker.messages].count(SWEEP_DRAIN_TASK) == 0
    insert_due_subscriptions(engine, 25, now=clock())
    broker.messages.clear()
    tasks.run_sweep()
    assert [name for name, _ in broker.messages].count(SWEEP_DRAIN_TASK) == 1
    assert SWEEP_TASK != SWEEP_DRAIN_TASK
