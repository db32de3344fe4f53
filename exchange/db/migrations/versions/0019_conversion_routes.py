"""Routes through the coalition point: the legs a quote and its conversion went by.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: a direct conversion, one leg made of the row's own columns (every row before this).
    op.add_column("quote", sa.Column("route", sa.JSON(), nullable=True))
    op.add_column("conversion", sa.Column("route", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("conversion", "route")
    op.drop_column("quote", "route")
