"""The centre's ledger (centre.ledger): one row per warning or task and assignee, and its events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "centre_item",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("department", sa.String(), nullable=False),
        sa.Column("department_name", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("dispatched_at", sa.Double(), nullable=True),
        sa.Column("due_at", sa.Double(), nullable=True),
        sa.Column("due_rule", sa.String(), nullable=True),
        sa.Column("due_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.Double(), nullable=True),
        sa.Column("fed_back_at", sa.Double(), nullable=True),
        sa.Column("closed_at", sa.Double(), nullable=True),
        sa.Column("source_dataset", sa.String(), nullable=True),
        sa.Column("source_record_id", sa.String(), nullable=True),
        sa.Column("flags", sa.Text(), server_default="[]", nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "item_id", "department", name="pk_centre_item"),
    )
    op.create_index("ix_centre_item_state_due_at", "centre_item", ["state", "due_at"])
    op.create_index("ix_centre_item_item_id", "centre_item", ["item_id"])
    op.create_table(
        "centre_event",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(), nullable=False),
        sa.Column("department", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("recorded_at", sa.Double(), nullable=False),
        sa.Column("detail", sa.Text(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint(
            "kind", "item_id", "department", "event", "message_id", name="pk_centre_event"
        ),
    )


def downgrade() -> None:
    op.drop_table("centre_event")
    op.drop_index("ix_centre_item_item_id", table_name="centre_item")
    op.drop_index("ix_centre_item_state_due_at", table_name="centre_item")
    op.drop_table("centre_item")
