"""Penalty cases watched (centre.penalties): each case's last stage and dates, and 双公示 seen.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "penalty_case",
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("department", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("procedure", sa.String(), nullable=True),
        sa.Column("filing_date", sa.Date(), nullable=True),
        sa.Column("decision_deadline", sa.Date(), nullable=True),
        sa.Column("decision_date", sa.Date(), nullable=True),
        sa.Column("decision_number", sa.String(), nullable=True),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", name="pk_penalty_case"),
    )
    op.create_index("ix_penalty_case_decision_number", "penalty_case", ["decision_number"])
    op.create_table(
        "penalty_published",
        sa.Column("decision_number", sa.String(), nullable=False),
        sa.Column("published_on", sa.Date(), nullable=False),
        sa.Column("system", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("decision_number", name="pk_penalty_published"),
    )


def downgrade() -> None:
    op.drop_table("penalty_published")
    op.drop_index("ix_penalty_case_decision_number", table_name="penalty_case")
    op.drop_table("penalty_case")
