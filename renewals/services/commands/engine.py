"""Operator commands on the engine as a whole: a sweep now, the halt switch, an email sent
again."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from renewals import transitions
from renewals.domain.commands import HALT_SWITCH
from renewals.domain.states import OutboxStatus, SwitchEvent, SwitchStatus
from renewals.domain.work import Work
from renewals.models import OutboxMessage
from renewals.services.commands.base import Arguments, Context, Outcome, Refusal, reason_of
from renewals.services.halt import describe_halt
from renewals.services.sweep import sweep as sweep_once


def sweep(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    follow = sweep_once(session, now=ctx.now, settings=ctx.settings)
    counts = {kind.value: len(follow.ids(kind)) for kind in Work if follow.ids(kind)}
    handed = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing due"
    return Outcome(f"swept: {handed}", follow)


def halt(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    switch = transitions.lock_switch(session, HALT_SWITCH, now=ctx.now)
    if switch.status == SwitchStatus.ON.value:
        raise Refusal(f"charges are halted already ({describe_halt(switch)})")
    transitions.move_switch(
        session,
        switch,
        SwitchEvent.SWITCHED_ON,
        now=ctx.now,
        actor=ctx.actor,
        reason=reason_of(args, "halted by an operator"),
    )
    return Outcome(
        "charges halted: no charge starts until `renewals unhalt` (charges already in "
        "flight finish and are recorded)"
    )


def unhalt(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    switch = transitions.lock_switch(session, HALT_SWITCH, now=ctx.now)
    if switch.status != SwitchStatus.ON.value:
        raise Refusal("charges are not halted: nothing to unhalt")
    transitions.move_switch(
        session,
        switch,
        SwitchEvent.SWITCHED_OFF,
        now=ctx.now,
        actor=ctx.actor,
        reason=reason_of(args, "unhalted by an operator"),
    )
    return Outcome("charges resumed: the next sweep claims every due charge")


def resend_email(ctx: Context, session: Session, args: Arguments, _: object) -> Outcome:
    """A sent or failed email is queued again as a new outbox row.

    A new row rather than a transition back to ``pending``: the old row stays the record of
    what happened to that send (sent at, or why it failed), the outbox machine stays
    forward-only, and the new row has its own dedupe key (``…:resend-<command id>``, so a
    command run twice queues one copy) and so its own Message-ID, which a receiving server
    will not discard as a duplicate of the first."""
    message_id: int = args["message_id"]
    row = session.scalars(
        select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise Refusal(f"no email {message_id}")
    if row.status not in (OutboxStatus.SENT.value, OutboxStatus.FAILED.value):
        raise Refusal(f"email {message_id} is {row.status}: it is on its way already")
    copy_id = transitions.queue_message(
        session,
        now=ctx.now,
        dedupe_key=f"{row.dedupe_key}:resend-{ctx.command_id or 'dry-run'}",
        subscription_id=row.subscription_id,
        renewal_id=row.renewal_id,
        kind=row.kind,
        recipient=row.recipient,
        context=row.context,
    )
    if copy_id is None:
        raise Refusal(f"email {message_id} was queued again by this command already")
    transitions.note(
        session,
        now=ctx.now,
        actor=ctx.actor,
        action="email_resend_queued",
        subscription_id=row.subscription_id,
        renewal_id=row.renewal_id,
        reason=reason_of(args, "sent again by an operator"),
        details={"message_id": message_id, "copy_id": copy_id, "kind": row.kind},
    )
    outcome = Outcome(f"email {message_id} ({row.kind}, {row.status}) queued again as {copy_id}")
    outcome.follow.add(Work.DELIVER, copy_id)
    return outcome
