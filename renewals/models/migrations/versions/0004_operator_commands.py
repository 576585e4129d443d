"""operator commands over the task queue; the halt switch; operator retries

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 10:00:00

- operator_commands: one row per operator command (the task writes its outcome there).
- switches: named operator switches; a missing row is ``off`` (``halt`` stops charges).
- renewals.retry_requested_by / charge_attempts.requested_by: an operator's ``retry``,
  whose decline counts no dunning failure.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("arguments", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_commands")),
    )
    op.create_index("ix_operator_commands_due", "operator_commands", ["status", "lease_expires_at"])
    op.create_table(
        "switches",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_switches")),
    )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retry_requested_by", sa.String(length=64), nullable=True))
    with op.batch_alter_table("charge_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("charge_attempts", schema=None) as batch_op:
        batch_op.drop_column("requested_by")
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_column("retry_requested_by")
    op.drop_table("switches")
    op.drop_index("ix_operator_commands_due", table_name="operator_commands")
    op.drop_table("operator_commands")
