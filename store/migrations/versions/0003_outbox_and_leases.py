"""The outbox (adapters.protocols.outbox) and the pollers' leases (adapters.protocols.poller).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("content_type", sa.String(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("dataset", sa.String(), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("deliveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_id", sa.String(), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("acked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("system", "idempotency_key", name="uq_outbox_system_idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_system_acked_at_seq", "outbox", ["system", "acked_at", "seq"])
    op.create_index("ix_outbox_lease_id", "outbox", ["lease_id"])
    op.create_table(
        "poller_lease",
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("message_type", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("system", "message_type", name="pk_poller_lease"),
    )


def downgrade() -> None:
    op.drop_table("poller_lease")
    op.drop_index("ix_outbox_lease_id", table_name="outbox")
    op.drop_index("ix_outbox_system_acked_at_seq", table_name="outbox")
    op.drop_table("outbox")
