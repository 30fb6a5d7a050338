"""The ledger judges each fed-back row's feedback (centre.feedback): complete or not, and what
it lacks. Rows fed back before this revision stay unjudged (NULL) until their next event.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("centre_item") as table:
        table.add_column(sa.Column("feedback_complete", sa.Boolean(), nullable=True))
        table.add_column(sa.Column("feedback_gaps", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("centre_item") as table:
        table.drop_column("feedback_gaps")
        table.drop_column("feedback_complete")
