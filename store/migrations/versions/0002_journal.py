"""The message journal: its entries (partitioned by day on PostgreSQL) and its chain head.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXED = ("message_id", "receipt", "quarantine_id", "business_key", "at", "day")


def upgrade() -> None:
    op.create_table(
        "journal_entry",
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("at", sa.String(), nullable=False),
        sa.Column("step", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("receipt", sa.String(), nullable=True),
        sa.Column("system", sa.String(), nullable=True),
        sa.Column("target", sa.String(), nullable=True),
        sa.Column("dataset", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("attempt", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("quarantine_id", sa.String(), nullable=True),
        sa.Column("business_key", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("seq", "day", name="pk_journal_entry"),
        # The writers create one partition per day (monitor.journal); SQLite ignores this.
        postgresql_partition_by="RANGE (day)",
    )
    for column in _INDEXED:
        op.create_index(f"ix_journal_entry_{column}", "journal_entry", [column])
    op.create_table(
        "journal_chain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=True),
        sa.Column("base_seq", sa.BigInteger(), nullable=False),
        sa.Column("base_hash", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_journal_chain"),
    )


def downgrade() -> None:
    op.drop_table("journal_chain")
    op.drop_table("journal_entry")  # with its partitions and indexes
