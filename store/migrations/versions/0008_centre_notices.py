"""The centre's notices (centre.notices): each reminder and escalation claimed, sent once; the
times a ledger row was reminded and escalated.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "centre_notice",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("department", sa.String(), nullable=False),
        sa.Column("notice_type", sa.String(), nullable=False),
        sa.Column("notice_id", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("sent_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint(
            "kind", "item_id", "department", "notice_type", name="pk_centre_notice"
        ),
    )
    op.create_index("ix_centre_notice_state", "centre_notice", ["state"])
    with op.batch_alter_table("centre_item") as table:
        table.add_column(sa.Column("reminded_at", sa.Double(), nullable=True))
        table.add_column(sa.Column("escalated_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("centre_item") as table:
        table.drop_column("escalated_at")
        table.drop_column("reminded_at")
    op.drop_index("ix_centre_notice_state", table_name="centre_notice")
    op.drop_table("centre_notice")
