"""Each program's point value as a period's closing fixed it (``period_point_value``): the books
of a closed period are valued at those ever after (``exchange.programs.valuation``).

Periods closed before this upgrade get the values declared at the upgrade, except the
coalition point's, which their closing recorded already (``coalition_liability``): from here
on, none of them changes when a program declares a new value.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from exchange.db.types import ExactNumeric, UTCDateTime

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

PERIOD_POINT_VALUE = sa.table(
    "period_point_value",
    sa.column("period", sa.String(7)),
    sa.column("program_id", sa.String(64)),
    sa.column("point_value", ExactNumeric(18, 6)),
    sa.column("fixed_at", UTCDateTime()),
)

CLOSED_PERIODS_VALUES = sa.text(
    """
    SELECT settlement_period.period, program.id, coalesce(coalition_liability.point_value, program.point_value)
    FROM settlement_period
    CROSS JOIN program
    LEFT JOIN coalition_liability
      ON coalition_liability.period = settlement_period.period AND coalition_liability.program_id = program.id
    WHERE settlement_period.status = 'CLOSED'
    """
)


def upgrade() -> None:
    op.create_table(
        "period_point_value",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("program_id", sa.String(64), sa.ForeignKey("program.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("point_value", ExactNumeric(18, 6), nullable=False),
        sa.Column("fixed_at", UTCDateTime(), nullable=False),
    )
    now = datetime.now(UTC)
    rows = op.get_bind().execute(CLOSED_PERIODS_VALUES).all()
    if rows:
        op.bulk_insert(
            PERIOD_POINT_VALUE,
            [
                {"period": period, "program_id": program, "point_value": Decimal(str(value)), "fixed_at": now}
                for period, program, value in rows
            ],
        )


def downgrade() -> None:
    op.drop_table("period_point_value")
