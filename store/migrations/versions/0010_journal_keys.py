"""The journal's search keys (monitor.journal_keys): every key an entry names, indexed by value;
partitioned by day on PostgreSQL like the entries, with a partition for each day already kept.

Entries journalled before this table existed have no keys until `jghub search --reindex` reads
them (batch by batch, newest first); the table is not filled here, so that migrating a large
journal does not hold every hub's start.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0010"
# After the quarantine's 0009, merged beside this one; chained to 0008 until it lands.
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_key",
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("field", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("value", "kind", "seq", "day", name="pk_journal_key"),
        # The writers create one partition per day (monitor.journal); SQLite ignores this.
        postgresql_partition_by="RANGE (day)",
        sqlite_with_rowid=False,
    )
    op.create_index("ix_journal_key_seq", "journal_key", ["seq"])
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    # A partition for every day the journal holds, so that the reindex can fill old days.
    days = bind.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'journal_entry'::regclass"
        )
    ).scalars()
    for name in sorted(days):
        day = datetime.strptime(name.removeprefix("journal_entry_"), "%Y%m%d").date()
        bind.execute(
            sa.text(
                f"CREATE TABLE journal_key_{day:%Y%m%d} PARTITION OF journal_key FOR VALUES "
                f"FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')"
            )
        )


def downgrade() -> None:
    op.drop_table("journal_key")  # with its partitions and index
