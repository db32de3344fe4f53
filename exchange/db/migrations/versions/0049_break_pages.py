"""Reconciliation breaks read by the page, whatever the filter, and open breaks counted
without counting them.

* ``reconciliation.resolved``: the breaks resolved so far, kept as each is resolved, so that
  a reconciliation's open breaks are its breaks minus this figure, one row read. Counting them
  joined every break of the reconciliation to its resolution (90 ms at 50,000 breaks).
* ``reconciliation_break.resolved``: whether the break has a resolution, with
  ``ix_reconciliation_break_open`` on ``(reconciliation_id, id)`` over the open breaks only, and
  ``ix_reconciliation_break_kind`` and ``ix_reconciliation_break_counterparty`` on
  ``(reconciliation_id, kind | counterparty, id)``: a page of breaks of one class, one
  counterparty or still open reads its own rows, where it read every break of the
  reconciliation in id order until it had found a page of those it wanted.

Both are filled from the resolutions already recorded.

Revision ID: 0049
Revises: 0046
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0049"
down_revision = "0046"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reconciliation", sa.Column("resolved", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "reconciliation_break", sa.Column("resolved", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.execute(
        "UPDATE reconciliation_break SET resolved = TRUE "
        "WHERE EXISTS (SELECT 1 FROM break_resolution WHERE break_resolution.break_id = reconciliation_break.id)"
    )
    op.execute(
        "UPDATE reconciliation SET resolved = "
        "(SELECT count(*) FROM break_resolution WHERE break_resolution.reconciliation_id = reconciliation.id)"
    )
    op.create_index("ix_reconciliation_break_kind", "reconciliation_break", ["reconciliation_id", "kind", "id"])
    op.create_index(
        "ix_reconciliation_break_counterparty", "reconciliation_break", ["reconciliation_id", "counterparty", "id"]
    )
    op.create_index(
        "ix_reconciliation_break_open",
        "reconciliation_break",
        ["reconciliation_id", "id"],
        postgresql_where=sa.text("NOT resolved"),
        sqlite_where=sa.text("NOT resolved"),
    )


def downgrade() -> None:
    op.drop_index("ix_reconciliation_break_open", table_name="reconciliation_break")
    op.drop_index("ix_reconciliation_break_counterparty", table_name="reconciliation_break")
    op.drop_index("ix_reconciliation_break_kind", table_name="reconciliation_break")
    with op.batch_alter_table("reconciliation_break") as batch:
        batch.drop_column("resolved")
    with op.batch_alter_table("reconciliation") as batch:
        batch.drop_column("resolved")
