"""What several points of a program are called (``program.point_name_plural``): pages print
``12,000 Miles``, not ``12,000 Mile``.

Programs loaded before this upgrade get their ``point_name`` with an ``s``; the next
``exchange partners load`` writes the declared plural (or the regular English one).

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("program", sa.Column("point_name_plural", sa.String(40), nullable=True))
    op.execute(sa.text("UPDATE program SET point_name_plural = substr(point_name, 1, 39) || 's'"))
    with op.batch_alter_table("program") as program:
        program.alter_column("point_name_plural", existing_type=sa.String(40), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("program") as program:
        program.drop_column("point_name_plural")
