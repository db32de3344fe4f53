"""The points the value cap cut from a quote's breakdown: ``quote.value_cap_points``.

Pricing rule 6 (the value cap) cuts points worth more than the points in from the tier bonus,
the promotions', the step bonus and the base; the quote now keeps how many, so a member or a
partner sees why a bonus is smaller than its percent. Quotes made before it get 0: their cut,
if any, was not kept (they expire within minutes anyway).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quote", sa.Column("value_cap_points", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    op.drop_column("quote", "value_cap_points")
