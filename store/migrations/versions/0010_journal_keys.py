"""The journal's search keys (monitor.journal_keys): the credit codes and linked record keys the
entries name, indexed by value; partitioned by day on PostgreSQL like the entries (the writers
make each day's partition).

Entries journalled before it named no credit codes or links (the observer did not write them),
so there is nothing to fill: they stay searchable by the keys `journal_entry` always indexed —
message id, receipt, quarantine id, record key. `journal_chain.keys_from` notes the first entry
after them, so that a search can say why an old record leads nowhere.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
# After the quarantine's 0009, merged beside this one; chained to 0008 until it lands.
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_key",
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("value", "kind", "seq", "day", name="pk_journal_key"),
        # The writers create one partition per day (monitor.journal); SQLite ignores this.
        postgresql_partition_by="RANGE (day)",
        sqlite_with_rowid=False,
    )
    op.create_index("ix_journal_key_seq", "journal_key", ["seq"])
    op.add_column("journal_chain", sa.Column("keys_from", sa.BigInteger(), nullable=True))
    # A journal opened after this starts its row with keys_from 1 (monitor.journal).
    op.execute("UPDATE journal_chain SET keys_from = seq + 1")


def downgrade() -> None:
    with op.batch_alter_table("journal_chain") as table:
        table.drop_column("keys_from")
    op.drop_table("journal_key")  # with its partitions and index
