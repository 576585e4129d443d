"""a sweep that drains: the claim chain's lease, and claim indexes that skip claimed rows

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08 10:00:00

- sweep_leases: named leases (name, holder, expires_at); the follow-on claim chain holds
  ``sweep_drain`` so that at most one runs at a time.
- renewals: ``ix_renewals_wake_at`` (every renewal, finished ones included) becomes two
  partial indexes: ``ix_renewals_claimable`` (a next job and no lease, by ``wake_at``) and
  ``ix_renewals_leased`` (leased rows, by ``lease_expires_at``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIMABLE_SQL = "wake IS NOT NULL AND lease_expires_at IS NULL"
LEASED_SQL = "lease_expires_at IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "sweep_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sweep_leases")),
    )
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_index("ix_renewals_wake_at")
        batch_op.create_index(
            "ix_renewals_claimable",
            ["wake_at"],
            unique=False,
            sqlite_where=sa.text(CLAIMABLE_SQL),
            postgresql_where=sa.text(CLAIMABLE_SQL),
        )
        batch_op.create_index(
            "ix_renewals_leased",
            ["lease_expires_at"],
            unique=False,
            sqlite_where=sa.text(LEASED_SQL),
            postgresql_where=sa.text(LEASED_SQL),
        )


def downgrade() -> None:
    with op.batch_alter_table("renewals", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_renewals_leased",
            sqlite_where=sa.text(LEASED_SQL),
            postgresql_where=sa.text(LEASED_SQL),
        )
        batch_op.drop_index(
            "ix_renewals_claimable",
            sqlite_where=sa.text(CLAIMABLE_SQL),
            postgresql_where=sa.text(CLAIMABLE_SQL),
        )
        batch_op.create_index("ix_renewals_wake_at", ["wake_at"], unique=False)
    op.drop_table("sweep_leases")
