"""The typed Python API for a merchant's backend (docs/integration.md).

::

    from renewals.api import RenewalsAPI, RenewalsAPIError

    api = RenewalsAPI.from_settings()          # RENEWALS_* settings, as every process
    sub = api.create_subscription(
        external_id="acct-42", email="ada@example.com", customer_id="cus_…",
        payment_method_id="pm_…", amount=1999, currency="USD", interval="month",
        next_renewal_at="2026-12-01T09:00:00Z",
    )
    api.change_amount("acct-42", amount=2499)  # from the next period
    api.cancel("acct-42", at_period_end=True)

A subscription is named by our id (an ``int``) or by your ``external_id`` (a ``str``). Every
refusal is one exception, :class:`RenewalsAPIError`, whose ``code`` says what kind
(``invalid``, ``conflict``, ``not_found``, ``refused``) and whose message says why.

The same operations run as Celery tasks (``renewals.api.<operation>``,
:mod:`renewals.worker.integration_tasks`) and, for create, as ``renewals subscriptions
import``: all three go through :mod:`renewals.domain.subscription_input` and the same
services, so they accept and refuse exactly the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine

from renewals.config import Settings, load_settings
from renewals.domain.commands import CommandName
from renewals.domain.subscription_input import SubscriptionInputError, new_subscription
from renewals.faststar import FastStarClient
from renewals.models import Subscription
from renewals.models.db import get_engine, unit_of_work
from renewals.runtime import utcnow
from renewals.services import imports, integration
from renewals.services.commands import InvalidCommand, command_view, run_command, submit
from renewals.services.followups import FollowUps
from renewals.services.integration import NotFound, Refused, SubscriptionRef

__all__ = [
    "CommandResult",
    "ErrorCode",
    "RenewalsAPI",
    "RenewalsAPIError",
    "SubscriptionInfo",
    "SubscriptionRef",
]

ErrorCode = Literal["invalid", "conflict", "not_found", "refused"]


class RenewalsAPIError(Exception):
    """Why the API did not do what was asked. ``code``: ``invalid`` (an argument failed its
    check; ``field`` names it), ``conflict`` (the external id or card exists with other
    data), ``not_found``, ``refused`` (not possible in the subscription's state). Nothing
    was changed."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "code": self.code, "field": self.field, "error": self.message}


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A subscription as stored. ``pending_amount`` is a change that applies from period
    ``pending_from_index`` on; ``created`` is False when a create found it already there."""

    id: int
    external_id: str | None
    # The subscription's status (active, past_due, paused, canceled …).
    state: str
    amount: int
    currency: str
    interval: str
    interval_count: int
    price_id: str | None
    next_renewal_at: str
    next_period_index: int
    pending_amount: int | None
    pending_price_id: str | None
    pending_from_index: int | None
    cancel_at_period_end: bool
    created: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, **asdict(self)}


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of a pause, resume or cancel: the operator command that carried it out
    (``renewals command ID`` shows it) and what it did."""

    command_id: int
    subscription_id: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"ok": True, **asdict(self)}


def _info(sub: Subscription, *, created: bool = False) -> SubscriptionInfo:
    return SubscriptionInfo(
        id=sub.id,
        external_id=sub.external_id,
        state=str(sub.status),
        amount=sub.amount,
        currency=sub.currency,
        interval=str(sub.interval),
        interval_count=sub.interval_count,
        price_id=sub.price_id,
        next_renewal_at=sub.next_renewal_at.isoformat(),
        next_period_index=sub.next_period_index,
        pending_amount=sub.pending_amount,
        pending_price_id=sub.pending_price_id,
        pending_from_index=sub.pending_from_index,
        cancel_at_period_end=sub.cancel_at_period_end,
        created=created,
    )


def _translate(exc: Exception) -> RenewalsAPIError | None:
    if isinstance(exc, SubscriptionInputError):
        return RenewalsAPIError("invalid", exc.reason, field=exc.field)
    if isinstance(exc, NotFound):
        return RenewalsAPIError("not_found", str(exc), field="subscription")
    if isinstance(exc, Refused):
        return RenewalsAPIError("refused", str(exc))
    if isinstance(exc, InvalidCommand):
        return RenewalsAPIError("invalid", str(exc))
    return None


class RenewalsAPI:
    """The API over one database; cheap to keep for the life of the process."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        faststar: FastStarClient | None = None,
        clock: Callable[[], datetime] = utcnow,
        actor: str = "api",
        hand_out: Callable[[FollowUps], None] | None = None,
        cards_waiting: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self._faststar = faststar
        self.clock = clock
        self.actor = actor
        # What a pause/resume/cancel hands on (a charge, an email) and the hint that cards
        # wait for their details: messages to the workers, best effort (the sweep and the
        # beat find both again). Tests pass their own.
        self._hand_out = hand_out
        self._cards_waiting = cards_waiting

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> RenewalsAPI:
        settings = settings or load_settings()
        return cls(get_engine(settings.database_url), settings, **kwargs)

    @property
    def faststar(self) -> FastStarClient:
        if self._faststar is None:
            self._faststar = FastStarClient(
                self.settings.faststar_base_url,
                self.settings.faststar_api_key.get_secret_value(),
                rate_limit_per_s=self.settings.faststar_rate_limit_per_s,
            )
        return self._faststar

    # ----------------------------------------------------------------- reads

    def get(self, subscription: SubscriptionRef) -> SubscriptionInfo:
        try:
            with unit_of_work(self.engine) as session:
                sub_id = integration.find_id(session, subscription)
                return _info(session.get_one(Subscription, sub_id))
        except Exception as exc:
            raise _translate(exc) or exc from None

    # ---------------------------------------------------------------- create

    def create_subscription(
        self,
        *,
        external_id: str,
        email: str,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        interval: str,
        next_renewal_at: str | datetime,
        interval_count: int = 1,
        price_id: str | None = None,
        name: str | None = None,
    ) -> SubscriptionInfo:
        """Create a subscription for a card saved at FastStar (by its ``cus_``/``pm_`` ids).
        Idempotent on ``external_id``: the same call again returns the stored subscription
        (``created=False``); a call with other terms is a ``conflict``."""
        raw: dict[str, object] = {
            "external_id": external_id,
            "email": email,
            "customer_id": customer_id,
            "payment_method_id": payment_method_id,
            "amount": amount,
            "currency": currency,
            "interval": interval,
            "next_renewal_at": next_renewal_at,
            "interval_count": interval_count,
            "price_id": price_id,
            "name": name,
        }
        try:
            new = new_subscription(raw, max_amount=self.settings.max_charge_amount)
            rows = [(1, new)]
            with unit_of_work(self.engine) as session:
                compared = imports.compare(session, rows)
            if compared.conflicts:
                conflict = compared.conflicts[0]
                raise RenewalsAPIError("conflict", conflict.reason, field=conflict.field)
            created = False
            if compared.new:
                with unit_of_work(self.engine) as session:
                    created = bool(
                        imports.write_chunk(session, rows, now=self.clock(), actor=self.actor)
                    )
            if created and self._cards_waiting is not None:
                self._cards_waiting()
            with unit_of_work(self.engine) as session:
                sub_id = integration.find_id(session, external_id)
                return _info(session.get_one(Subscription, sub_id), created=created)
        except RenewalsAPIError:
            raise
        except Exception as exc:
            raise _translate(exc) or exc from None

    # --------------------------------------------------------------- changes

    def change_amount(self, subscription: SubscriptionRef, *, amount: int) -> SubscriptionInfo:
        """Charge ``amount`` (minor units, the subscription's currency) for every period that
        starts after now; periods already started keep their price."""
        return self._change_price(subscription, amount=amount, price_id=None)

    def change_plan(
        self, subscription: SubscriptionRef, *, price_id: str, amount: int
    ) -> SubscriptionInfo:
        """Move to catalog price ``price_id`` costing ``amount``, from the next period."""
        if price_id is None:
            raise RenewalsAPIError("invalid", "price_id is missing", field="price_id")
        return self._change_price(subscription, amount=amount, price_id=price_id)

    def _change_price(
        self, subscription: SubscriptionRef, *, amount: int, price_id: str | None
    ) -> SubscriptionInfo:
        try:
            with unit_of_work(self.engine) as session:
                done = integration.change_price(
                    session,
                    subscription,
                    amount=amount,
                    price_id=price_id,
                    settings=self.settings,
                    now=self.clock(),
                    actor=self.actor,
                )
                return _info(session.get_one(Subscription, done.subscription_id))
        except Exception as exc:
            raise _translate(exc) or exc from None

    def change_card(
        self, subscription: SubscriptionRef, *, payment_method_id: str
    ) -> SubscriptionInfo:
        """Charge another card saved at FastStar for the same customer, from the next
        charge attempt on (a retry of a declined period included)."""
        try:
            with unit_of_work(self.engine) as session:
                sub_id, new = integration.change_card(
                    session,
                    subscription,
                    payment_method_id=payment_method_id,
                    now=self.clock(),
                    actor=self.actor,
                )
                info = _info(session.get_one(Subscription, sub_id))
        except Exception as exc:
            raise _translate(exc) or exc from None
        if new and self._cards_waiting is not None:
            self._cards_waiting()
        return info

    # ------------------------------------------- pause, resume, cancel (commands)

    def pause(self, subscription: SubscriptionRef, *, reason: str | None = None) -> CommandResult:
        return self._command(CommandName.PAUSE, subscription, reason=reason)

    def resume(self, subscription: SubscriptionRef, *, reason: str | None = None) -> CommandResult:
        return self._command(CommandName.RESUME, subscription, reason=reason)

    def cancel(
        self,
        subscription: SubscriptionRef,
        *,
        at_period_end: bool = False,
        reason: str | None = None,
    ) -> CommandResult:
        """End the subscription now (a period waiting for its customer is checked with
        FastStar first), or at the end of the period running."""
        return self._command(
            CommandName.CANCEL, subscription, reason=reason, at_period_end=at_period_end
        )

    def _command(
        self, name: CommandName, subscription: SubscriptionRef, **extra: object
    ) -> CommandResult:
        """The operator command of that name, run here and now: the same code, locks, audit
        and ``operator_commands`` row as ``renewals pause|resume|cancel``."""
        try:
            with unit_of_work(self.engine) as session:
                sub_id = integration.find_id(session, subscription)
            arguments = {"subscription_id": sub_id, **{k: v for k, v in extra.items() if v}}
            command_id = submit(
                self.engine, name.value, arguments, actor=self.actor, now=self.clock()
            )
        except Exception as exc:
            raise _translate(exc) or exc from None
        follow = run_command(
            self.settings, self.engine, self.faststar, self.clock, command_id, expected=name.value
        )
        if self._hand_out is not None:
            self._hand_out(follow)
        with unit_of_work(self.engine) as session:
            view = command_view(session, command_id) or {}
        text = str(view.get("result") or "")
        if view.get("status") != "done":
            raise RenewalsAPIError("refused", text or f"command {command_id} did not finish")
        return CommandResult(command_id, sub_id, text)
