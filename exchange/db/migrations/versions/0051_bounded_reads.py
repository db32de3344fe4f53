"""Reads that grew with history: reconciliation breaks read by the page whatever the filter,
open breaks counted without counting them, the books' outstanding points kept at closing, and
a program's promotions listed a page at a time.

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

* ``outstanding_points``: each program's outstanding points at the end of each closed period,
  recorded by the closing, so that a later period's books add the entries since the latest
  record instead of every entry from the beginning. Filled for the periods closed already, as
  the books read them now: the entries up to the period and, when periods before it are
  archived, what the archived periods moved; none for a period with archived periods on both
  sides (its outstanding is not known) or itself archived.
* ``ix_promotion_program_start`` on ``promotion (program_id, starts_at, id)``: the partner
  console lists a program's promotions the latest start first, a page at a time, where it read
  and sorted every promotion the program ever ran.

Revision ID: 0051
Revises: 0050
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0051"
down_revision = "0050"
branch_labels = None
depends_on = None


ARCHIVED = "SELECT 1 FROM ledger_close_anchor x WHERE x.archived_at IS NOT NULL AND x.period {} p.period"
OUTSTANDING_SO_FAR = f"""
    INSERT INTO outstanding_points (program_id, period, points)
    SELECT a.program_id, p.period,
           coalesce((SELECT sum(e.amount) FROM ledger_entry e WHERE e.account_id = a.id AND e.period <= p.period), 0)
           + CASE WHEN EXISTS ({ARCHIVED.format("<")})
                  THEN coalesce((SELECT sum(b.balance) FROM ledger_archived_balance b WHERE b.account_id = a.id), 0)
                  ELSE 0 END
      FROM settlement_period p CROSS JOIN ledger_account a
     WHERE p.status = 'CLOSED' AND a.kind = 'member-points' AND a.program_id IS NOT NULL
       AND NOT EXISTS ({ARCHIVED.format("=")})
       AND NOT (EXISTS ({ARCHIVED.format("<")}) AND EXISTS ({ARCHIVED.format(">")}))
"""


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
    op.create_table(
        "outstanding_points",
        sa.Column("program_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("program_id", "period"),
    )
    op.execute(OUTSTANDING_SO_FAR)
    op.create_index("ix_promotion_program_start", "promotion", ["program_id", "starts_at", "id"])
    op.create_index(
        "ix_reconciliation_break_open",
        "reconciliation_break",
        ["reconciliation_id", "id"],
        postgresql_where=sa.text("NOT resolved"),
        sqlite_where=sa.text("NOT resolved"),
    )


def downgrade() -> None:
    op.drop_index("ix_promotion_program_start", table_name="promotion")
    op.drop_table("outstanding_points")
    op.drop_index("ix_reconciliation_break_open", table_name="reconciliation_break")
    op.drop_index("ix_reconciliation_break_counterparty", table_name="reconciliation_break")
    op.drop_index("ix_reconciliation_break_kind", table_name="reconciliation_break")
    with op.batch_alter_table("reconciliation_break") as batch:
        batch.drop_column("resolved")
    with op.batch_alter_table("reconciliation") as batch:
        batch.drop_column("resolved")
