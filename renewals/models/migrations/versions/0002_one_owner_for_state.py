"""one wake-up per renewal; review and audit columns for the state owner

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 17:30:00

- renewals: ``next_attempt_at``, ``action_wakeup_at`` and ``checkout_poll_at`` become one
  ``wake`` (the next job) at ``wake_at``; existing rows keep their due time.
- payment_reviews: ``status``, ``dedupe_key`` (replaces the (kind, payment id) constraint so
  a review may concern a renewal without a payment) and ``resolution``.
- audit_events: ``entity`` and ``entity_id`` for outbox, inbox and review transitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wake", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True))
    # Carry each open renewal's due time over to its one job.
    op.execute(
        "UPDATE renewals SET wake = 'charge', wake_at = next_attempt_at "
        "WHERE status IN ('pending', 'retry_scheduled') AND next_attempt_at IS NOT NULL"
    )
    op.execute(
        "UPDATE renewals SET wake = 'recheck', wake_at = next_attempt_at "
        "WHERE status = 'unknown' AND next_attempt_at IS NOT NULL"
    )
    op.execute(
        "UPDATE renewals SET wake = 'follow_up', "
        "wake_at = COALESCE(action_wakeup_at, checkout_poll_at, updated_at) "
        "WHERE status = 'requires_action'"
    )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_index("ix_renewals_due")
        batch_op.drop_index("ix_renewals_action_wakeup")
        batch_op.drop_index("ix_renewals_checkout_poll")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("action_wakeup_at")
        batch_op.drop_column("checkout_poll_at")
        batch_op.create_index("ix_renewals_wake_at", ["wake_at"], unique=False)

    with op.batch_alter_table("payment_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("resolution", sa.Text(), nullable=True))
    op.execute(
        "UPDATE payment_reviews SET dedupe_key = kind || ':' || payment_intent_id, "
        "status = CASE WHEN resolved_at IS NULL THEN 'open' ELSE 'resolved' END"
    )
    with op.batch_alter_table("payment_reviews", schema=None) as batch_op:
        batch_op.drop_constraint("uq_payment_reviews_kind_payment_intent_id", type_="unique")
        batch_op.alter_column("dedupe_key", existing_type=sa.String(length=128), nullable=False)
        batch_op.alter_column("status", existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column(
            "payment_intent_id", existing_type=sa.String(length=64), nullable=True
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_payment_reviews_dedupe_key"), ["dedupe_key"]
        )
        batch_op.create_index(
            "ix_payment_reviews_open", ["status", "payment_intent_id"], unique=False
        )

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("entity", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("entity_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("entity_id")
        batch_op.drop_column("entity")
    with op.batch_alter_table("payment_reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_reviews_open")
        batch_op.drop_constraint(batch_op.f("uq_payment_reviews_dedupe_key"), type_="unique")
        batch_op.drop_column("resolution")
        batch_op.drop_column("status")
        batch_op.drop_column("dedupe_key")
        batch_op.create_unique_constraint(
            "uq_payment_reviews_kind_payment_intent_id", ["kind", "payment_intent_id"]
        )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_index("ix_renewals_wake_at")
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("action_wakeup_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("checkout_poll_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE renewals SET next_attempt_at = wake_at WHERE wake IN ('charge', 'recheck')")
    op.execute("UPDATE renewals SET action_wakeup_at = wake_at WHERE wake = 'follow_up'")
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_column("wake_at")
        batch_op.drop_column("wake")
        batch_op.create_index("ix_renewals_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_renewals_action_wakeup", ["status", "action_wakeup_at"], unique=False
        )
        batch_op.create_index(
            "ix_renewals_checkout_poll", ["status", "checkout_poll_at"], unique=False
        )
