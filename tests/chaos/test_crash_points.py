"""A worker killed at each of the seven recovery points, against the real stack.

For each point the scenario arms N crashes (N token files, see ``renewals.crashpoints``),
lets N renewals fall due one after another (so the sweep's claims are N separate claims,
not one), waits until every renewal is paid, its receipt sent and every crash fired, and
then compares FastStar's ledger with our books (``tests/chaos/books.py``): no period charged
twice, every executed charge booked, nothing stuck, no email received twice.

``make test`` runs the fast subset: every point armed twice, all at once, on one worker.
``make chaos`` (``RENEWALS_CHAOS_FULL=1``) runs each point 20 times on its own renewals,
with the same long-lived worker; each scenario prints its figures.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from renewals.crashpoints import POINTS
from renewals.models import OutboxMessage, Renewal
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from tests.chaos.books import Figures
from tests.chaos.stack import LEASE_S, CrashStack, crash_stack, now, report
from tests.support.factories import make_subscription_factory
from tests.support.waiting import wait_for

FULL = os.environ.get("RENEWALS_CHAOS_FULL", "") not in ("", "0", "false")
FULL_RUNS = int(os.environ.get("RENEWALS_CHAOS_RUNS", "20"))
# Renewals fall due this far apart: a beat sweeps every second, so most claims take one.
SPACING = timedelta(seconds=0.5)


@pytest.fixture(scope="module")
def stack(
    _postgres_database: str,
    redis_url: str,
    _sandbox_server: RunningSandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrashStack]:
    with crash_stack(
        database_url=_postgres_database,
        redis_url=redis_url,
        sandbox=_sandbox_server,
        workdir=tmp_path_factory.mktemp("crash"),
    ) as running:
        yield running


def _subscribe_spaced(stack: CrashStack, count: int, spacing: timedelta) -> list[int]:
    make = make_subscription_factory(stack.engine, stack.settings)
    first = now() + timedelta(seconds=1)
    return [make("success", renews_at=first + i * spacing) for i in range(count)]


def _progress(stack: CrashStack, subs: list[int]) -> dict[str, Any]:
    with unit_of_work(stack.engine) as session:
        statuses = list(
            session.scalars(select(Renewal.status).where(Renewal.subscription_id.in_(subs)))
        )
        emails = list(
            session.scalars(
                select(OutboxMessage.status).where(OutboxMessage.subscription_id.in_(subs))
            )
        )
    return {
        "renewals": len(statuses),
        "paid": statuses.count("succeeded"),
        "statuses": sorted(set(statuses)),
        "emails": sorted(emails),
        "tokens": stack.armed(),
    }


def _quiet(subs: list[int]) -> Any:
    def accept(seen: dict[str, Any]) -> bool:
        return (
            seen["paid"] == len(subs)
            and seen["renewals"] == len(subs)
            and len(seen["emails"]) >= len(subs)
            and set(seen["emails"]) == {"sent"}
            and seen["tokens"] == 0
        )

    return accept


def run_scenario(
    stack: CrashStack,
    points: tuple[str, ...],
    runs: int,
    subs: int,
    spacing: timedelta = SPACING,
) -> Figures:
    """Arm ``runs`` crashes at each of ``points``, let ``subs`` renewals fall due, wait until
    all is paid, sent and fired, and return the figures (printed for ``make chaos``)."""
    crashes_before = stack.crashes()
    started = time.monotonic()
    for point in points:
        stack.arm(point, runs)
    try:
        ids = _subscribe_spaced(stack, subs, spacing)
        # A crash after a commit costs a lease of waiting; several may follow one another.
        wait_for(
            lambda: _progress(stack, ids),
            _quiet(ids),
            timeout=60 + runs * LEASE_S / 2,
            interval=0.5,
            what=f"renewals paid and every crash fired at {', '.join(points)}",
        )
    finally:
        stack.disarm()
    result = stack.figures(ids)
    fired = stack.crashes() - crashes_before
    report(
        {
            "scenario": points[0] if len(points) == 1 else "every point at once",
            "runs": runs,
            "crashes_fired": fired,
            **result.as_dict(),
            "seconds": round(time.monotonic() - started),
        }
    )
    assert fired == runs * len(points)
    # One worker took them all: its main process lives, billiard replaced each child.
    assert stack.worker is not None
    assert stack.worker.popen.poll() is None
    return result


def _assert_books_balance(stack: CrashStack, result: Figures, renewals: int) -> None:
    # The checker over everything this worker has done so far, then this scenario's figures.
    assert stack.check().violations == []
    assert result.problems == ()
    assert result.renewals == result.booked == result.charges_executed == renewals
    assert result.emails_received == renewals  # one receipt each
    assert (result.double_charges, result.unbooked, result.stuck, result.duplicate_emails) == (
        0,
        0,
        0,
        0,
    )


def test_every_crash_point_twice_on_one_worker(stack: CrashStack) -> None:
    # A renewal for each crash, so that the crashes (and the leases they cost) mostly fall
    # on different renewals at once rather than one after another on the same few.
    renewals = 2 * len(POINTS)
    result = run_scenario(stack, POINTS, runs=2, subs=renewals, spacing=timedelta(seconds=0.25))
    _assert_books_balance(stack, result, renewals)


@pytest.mark.skipif(not FULL, reason="the full crash scenarios run in `make chaos`")
@pytest.mark.timeout(300)
@pytest.mark.parametrize("point", POINTS)
def test_crash_point_full(stack: CrashStack, point: str) -> None:
    result = run_scenario(stack, (point,), runs=FULL_RUNS, subs=FULL_RUNS)
    _assert_books_balance(stack, result, FULL_RUNS)
