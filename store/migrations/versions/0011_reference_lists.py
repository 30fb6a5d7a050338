"""The reference lists (reference.stored): the supervision catalogue, the enforcement
certificates and the supervised objects, one row per key with its change time, tombstone flag
and version; and one row per list with its version, last feeding and late changes ignored.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BOOKKEEPING: tuple[tuple[str, sa.types.TypeEngine[Any], bool], ...] = (
    ("updated_at", sa.Double(), False),
    ("deleted", sa.Boolean(), False),
    ("version", sa.BigInteger(), False),
    ("record", sa.Text(), True),
)


def _list_table(name: str, key: str, record_key: str | None, *columns: sa.Column) -> None:
    own = [sa.Column(record_key, sa.String(), nullable=False)] if record_key else []
    op.create_table(
        name,
        sa.Column(key, sa.String(), nullable=False),
        *own,
        *columns,
        *(sa.Column(column, kind, nullable=nullable) for column, kind, nullable in BOOKKEEPING),
        sa.PrimaryKeyConstraint(key, name=f"pk_{name}"),
    )
    op.create_index(f"ix_{name}_version", name, ["version"])
    if record_key:
        op.create_index(f"ix_{name}_{record_key}", name, [record_key])


def upgrade() -> None:
    _list_table(
        "reference_catalogue",
        "code",
        None,
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
    )
    _list_table(
        "reference_officer",
        "certificate_number",
        "officer_id",
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("agency", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("certificate_issued", sa.Date(), nullable=True),
        sa.Column("certificate_valid_until", sa.Date(), nullable=True),
    )
    _list_table(
        "reference_object",
        "certificate_code",
        "object_id",
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("region_code", sa.String(), nullable=True),
        sa.Column("in_random_draw", sa.Boolean(), nullable=True),
    )
    state = op.create_table(
        "reference_list",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("fed_at", sa.Double(), nullable=True),
        sa.Column("late_ignored", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_reference_list"),
    )
    # The writers lock their list's row before they write (reference.stored): it must exist.
    op.bulk_insert(
        state,
        [
            {"name": name, "version": 0, "late_ignored": 0}
            for name in ("catalogue", "officers", "objects")
        ],
    )


def downgrade() -> None:
    op.drop_table("reference_list")
    for name in ("reference_object", "reference_officer", "reference_catalogue"):
        op.drop_table(name)  # with its indexes
