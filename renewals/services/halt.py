"""The emergency brake: while the ``halt`` switch is on, no charge starts.

The sweep still materialises periods and does every other job, but claims nothing to
charge, and :func:`renewals.services.charge_checks.begin_charge` refuses to start a charge, so a
message already on its way changes nothing either. Charges in flight when the switch goes
on finish and are recorded as usual. Switching it goes through the state owner
(``renewals halt`` / ``renewals unhalt``, audited).
"""

from __future__ import annotations

from sqlalchemy import ScalarSelect, select
from sqlalchemy.orm import Session

from renewals.domain.commands import HALT_SWITCH
from renewals.domain.states import SwitchStatus
from renewals.models import Switch


def halt_switch(session: Session) -> Switch | None:
    """The halt switch's row while it is on, else None (a missing row is off)."""
    switch = session.get(Switch, HALT_SWITCH)
    return switch if switch is not None and switch.status == SwitchStatus.ON.value else None


def halted_subquery() -> ScalarSelect[bool]:
    """True while halted, as a column another statement can carry (the charge path's lock
    reads it in the same round trip)."""
    return (
        select(Switch.status == SwitchStatus.ON.value)
        .where(Switch.name == HALT_SWITCH)
        .scalar_subquery()
    )


def is_halted(session: Session) -> bool:
    return (
        session.scalar(select(Switch.status).where(Switch.name == HALT_SWITCH))
        == SwitchStatus.ON.value
    )


def describe_halt(switch: Switch) -> str:
    """One line for every read command while charges are halted."""
    why = f": {switch.reason}" if switch.reason else ""
    return (
        f"HALTED: no charge starts (since {switch.changed_at.isoformat()} by "
        f"{switch.changed_by}{why}); `renewals unhalt` resumes charging"
    )
