"""A reconciliation's resolutions indexed in the order its trail shows them:
``break_resolution.reconciliation_id`` and ``ix_break_resolution_trail`` on
``(reconciliation_id, resolved_at, break_id)``.

A reconciliation's page shows its latest resolutions. A resolution named only its break, so
finding them joined every break of the reconciliation to every resolution and sorted the lot
for each page view (a month's 50,000 breaks, and every resolution of every month). Kept with
its reconciliation's id, a resolution is found by index, the latest first, and a trail stops
at its length. Resolutions made before take their break's reconciliation.

Revision ID: 0045
Revises: 0044
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("break_resolution", sa.Column("reconciliation_id", sa.String(36), nullable=True))
    op.execute(
        "UPDATE break_resolution SET reconciliation_id = ("
        "SELECT reconciliation_id FROM reconciliation_break WHERE reconciliation_break.id = break_resolution.break_id)"
    )
    with op.batch_alter_table("break_resolution") as batch:
        batch.alter_column("reconciliation_id", existing_type=sa.String(36), nullable=False)
        batch.create_foreign_key(
            "break_resolution_reconciliation_id_fkey", "reconciliation", ["reconciliation_id"], ["id"]
        )
    op.create_index("ix_break_resolution_trail", "break_resolution", ["reconciliation_id", "resolved_at", "break_id"])


def downgrade() -> None:
    op.drop_index("ix_break_resolution_trail", table_name="break_resolution")
    with op.batch_alter_table("break_resolution") as batch:
        batch.drop_constraint("break_resolution_reconciliation_id_fkey", type_="foreignkey")
        batch.drop_column("reconciliation_id")
