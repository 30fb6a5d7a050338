"""The collaboration centre's loop state per task (centre.collaboration): the last step told to
the platform a task came from, and when the task was returned.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("centre_complaint") as table:
        table.add_column(sa.Column("loop", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("centre_complaint") as table:
        table.drop_column("loop")
