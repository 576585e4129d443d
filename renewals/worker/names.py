"""The tasks' stable names: what other tools (and operators) send messages to. Kept apart
from the Celery app so that naming a task imports no Celery configuration."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from renewals.domain.commands import CommandName
from renewals.domain.work import Work

# The one queue every task goes to (the SQLite broker pre-creates its row: sqlite_broker).
TASK_QUEUE = "renewals"

SWEEP_TASK = "renewals.sweep"
# The sweep's follow-on claim chain (renewals.services.drain).
SWEEP_DRAIN_TASK = "renewals.sweep_drain"
# Every due email, in batches (renewals.notifications.batch); no argument.
DELIVER_BATCH_TASK = "renewals.deliver_emails"

TASK_NAMES: Mapping[Work, str] = MappingProxyType(
    {
        Work.CHARGE: "renewals.charge_renewal",
        Work.RECHECK: "renewals.recheck_unknown",
        Work.FOLLOW_UP: "renewals.action_required_follow_up",
        Work.WEBHOOK: "renewals.process_webhook",
        Work.DELIVER: "renewals.deliver_email",
        Work.MERCHANT_EVENT: "renewals.merchant_events.deliver",
    }
)

# Operator commands: each message carries one argument, the id of the command's
# ``operator_commands`` row (which holds its JSON arguments); see the README's table.
COMMAND_TASK_NAMES: Mapping[CommandName, str] = MappingProxyType(
    {name: f"renewals.ops.{name.value}" for name in CommandName}
)

# Card details of imported cards, fetched in batches (renewals.services.cards).
CARD_DETAILS_TASK = "renewals.cards.fetch_details"

# The integration API as tasks (docs/integration.md): JSON keyword arguments, ids only.
API_OPERATIONS = (
    "create_subscription",
    "change_amount",
    "change_plan",
    "change_card",
    "pause",
    "resume",
    "cancel",
)
API_TASK_NAMES: Mapping[str, str] = MappingProxyType(
    {operation: f"renewals.api.{operation}" for operation in API_OPERATIONS}
)
