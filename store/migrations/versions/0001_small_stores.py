"""The small stores: replay cache, accepted changes, warning addressees, complaints, cursors.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "used_signature",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_used_signature"),
    )
    op.create_index("ix_used_signature_expires_at", "used_signature", ["expires_at"])
    op.create_table(
        "accepted_change",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_accepted_change"),
    )
    op.create_index("ix_accepted_change_at", "accepted_change", ["at"])
    op.create_table(
        "warning_addressee",
        sa.Column("warning_id", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("warning_id", name="pk_warning_addressee"),
    )
    op.create_table(
        "centre_complaint",
        sa.Column("centre", sa.String(), nullable=False),
        sa.Column("task_id", sa.String(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("assigned_system", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("centre", "task_id", name="pk_centre_complaint"),
    )
    op.create_table(
        "poller_cursor",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("message_type", sa.String(), nullable=False),
        sa.Column("time", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("system", "message_type", name="pk_poller_cursor"),
    )


def downgrade() -> None:
    for table in (
        "poller_cursor",
        "centre_complaint",
        "warning_addressee",
        "accepted_change",
        "used_signature",
    ):
        op.drop_table(table)
