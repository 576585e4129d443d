"""One table: each kind of work and the service that does it.

The sweep and every service hand work on as ``(kind, id)`` pairs
(:class:`~renewals.services.followups.FollowUps`); the worker runs each through the task of
that kind, and the tests run the same table in-process. A new kind of work is one row here
and one task name in ``renewals/worker/tasks.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Protocol

from sqlalchemy import Engine

from renewals.config import Settings
from renewals.domain.work import Work
from renewals.faststar import FastStarClient
from renewals.notifications.delivery import deliver
from renewals.notifications.senders import Sender
from renewals.services.charging import charge_renewal
from renewals.services.checkout import follow_up_action_required
from renewals.services.followups import FollowUps
from renewals.services.inbox import process_inbox_event
from renewals.services.janitor import recheck_unknown
from renewals.services.merchant_webhooks import deliver_merchant_event


class Deps(Protocol):
    """What a service needs of its process (``renewals.runtime.Runtime`` in a worker)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def faststar(self) -> FastStarClient: ...
    @property
    def sender(self) -> Sender: ...
    def clock(self) -> datetime: ...


Service = Callable[[Deps, int], FollowUps]


def _charge(d: Deps, renewal_id: int) -> FollowUps:
    return charge_renewal(d.engine, d.faststar, renewal_id, clock=d.clock, settings=d.settings)


def _recheck(d: Deps, renewal_id: int) -> FollowUps:
    return recheck_unknown(d.engine, d.faststar, renewal_id, clock=d.clock, settings=d.settings)


def _follow_up(d: Deps, renewal_id: int) -> FollowUps:
    return follow_up_action_required(
        d.engine, d.faststar, renewal_id, clock=d.clock, settings=d.settings
    )


def _webhook(d: Deps, inbox_id: int) -> FollowUps:
    return process_inbox_event(d.engine, inbox_id, clock=d.clock, settings=d.settings)


def _deliver(d: Deps, message_id: int) -> FollowUps:
    deliver(d.engine, message_id, clock=d.clock, settings=d.settings, sender=d.sender)
    return FollowUps()


def _merchant_event(d: Deps, row_id: int) -> FollowUps:
    return deliver_merchant_event(d.engine, row_id, clock=d.clock, settings=d.settings)


SERVICES: Mapping[Work, Service] = MappingProxyType(
    {
        Work.CHARGE: _charge,
        Work.RECHECK: _recheck,
        Work.FOLLOW_UP: _follow_up,
        Work.WEBHOOK: _webhook,
        Work.DELIVER: _deliver,
        Work.MERCHANT_EVENT: _merchant_event,
    }
)
