"""The quarantine (monitor.quarantine): rejected inbound payloads with their reasons, states and
who released or discarded them, bounded by size and age.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine_entry",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("at", sa.Double(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("message_type", sa.String(), nullable=True),
        sa.Column("receipt", sa.String(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(), nullable=False),
        sa.Column("charset", sa.String(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("published_records", sa.Text(), nullable=False),
        sa.Column("claimed_until", sa.Double(), nullable=True),
        sa.Column("released_by", sa.String(), nullable=True),
        sa.Column("released_why", sa.Text(), nullable=True),
        sa.Column("released_at", sa.Double(), nullable=True),
        sa.Column("discarded_by", sa.String(), nullable=True),
        sa.Column("discarded_why", sa.Text(), nullable=True),
        sa.Column("discarded_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine_entry"),
    )
    op.create_index("ix_quarantine_entry_state_at", "quarantine_entry", ["state", "at"])
    op.create_index("ix_quarantine_entry_system", "quarantine_entry", ["system"])


def downgrade() -> None:
    op.drop_index("ix_quarantine_entry_system", table_name="quarantine_entry")
    op.drop_index("ix_quarantine_entry_state_at", table_name="quarantine_entry")
    op.drop_table("quarantine_entry")
