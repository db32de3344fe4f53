"""Each program's declared monthly issue budget as a period's closing recorded it, beside its
point value (``period_point_value.monthly_issue``): a closed period's budget is the figure in
force then, whatever the program declares later.

Periods closed before this upgrade get the figure declared at the upgrade, as their point values
did (0029); from here on, none of them changes when a program declares a new budget.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from exchange.db.types import ExactNumeric

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None

DECLARED_AT_THE_UPGRADE = sa.text(
    """
    UPDATE period_point_value
       SET monthly_issue = (SELECT program.budget_monthly_issue FROM program
                             WHERE program.id = period_point_value.program_id)
    """
)


def upgrade() -> None:
    with op.batch_alter_table("period_point_value") as table:
        table.add_column(sa.Column("monthly_issue", ExactNumeric(18, 4), nullable=True))
    op.execute(DECLARED_AT_THE_UPGRADE)


def downgrade() -> None:
    with op.batch_alter_table("period_point_value") as table:
        table.drop_column("monthly_issue")
